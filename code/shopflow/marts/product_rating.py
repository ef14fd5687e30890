"""mart_product_rating: every product with its average review rating (2 decimals, HALF_UP; NULL without reviews)
and how many reviews it has."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopflow.quality.rules import (Source, in_range, keyed_total_equals, not_empty_when, rounded_means_add_up,
                                    row_count_equals, rows_where, same_values, total_equals)

from .spec import Mart, MartColumn, conform, rounded_mean, varchar_of

COLUMNS = (
    MartColumn("product_id", "BIGINT"),
    MartColumn("name", varchar_of("products", "name")),
    MartColumn("rating", "DECIMAL(3,2)", nullable=True),
    MartColumn("review_count", "BIGINT"),
)


def product_rating(products: DataFrame, reviews: DataFrame) -> DataFrame:
    per_product = reviews.groupBy("product_id").agg(F.sum("rating").alias("rating_sum"),
                                                    F.count(F.lit(1)).alias("review_count"))
    return (products.join(per_product, "product_id", "left")
            .withColumn("review_count", F.coalesce("review_count", F.lit(0)))
            .withColumn("rating", rounded_mean("rating_sum", "review_count"))
            .transform(conform(COLUMNS)))


MART = Mart(
    name="mart_product_rating",
    build=product_rating,
    reads={"products": ("product_id", "name"), "reviews": ("product_id", "rating")},
    columns=COLUMNS,
    key=("product_id",),
    rules=(
        in_range("rating", low=1, high=5),
        in_range("review_count", low=0),
        rows_where("rating_null_exactly_without_reviews", "(`rating` IS NULL) <> (`review_count` = 0)"),
        row_count_equals("products"),
        total_equals("review_count", Source("reviews", "COUNT(*)")),
        # under the right product: the totals pass one product's reviews or name under another
        keyed_total_equals("product_id", "review_count", Source("reviews", "1")),
        same_values("products", ("product_id", "name")),
        *rounded_means_add_up("rating", "review_count", "reviews", "rating"),
        not_empty_when("products"),
    ),
    reference_sql="""
        SELECT p.product_id, p.name, ROUND(AVG(r.rating), 2) AS rating, COUNT(r.review_id) AS review_count
        FROM products p LEFT JOIN reviews r ON r.product_id = p.product_id
        GROUP BY p.product_id, p.name""",
)
