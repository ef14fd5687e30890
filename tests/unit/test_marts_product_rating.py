"""mart_product_rating on tiny inline frames: HALF_UP at .005, exact where AVG would round twice, no reviews."""
from decimal import Decimal

from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from shopflow.marts.product_rating import MART, product_rating


def _reviews(product_id, *ratings):
    return [(product_id, rating) for rating in ratings]


def test_average_rating_rounded_half_up_null_without_reviews(spark):
    products = spark.createDataFrame([(1, "Kettle"), (2, "Lamp"), (3, "Mug"), (4, "Vase"), (5, "Desk"),
                                      (6, "Chair")], MART.input_schema("products"))
    reviews = spark.createDataFrame(
        _reviews(1, 4, 5) + _reviews(6, 5, 4)  # a tie: 4.50 both
        + _reviews(3, 5, 4, 4, 4, 4, 4, 4, 4)  # 33 / 8 = 4.125 -> 4.13 (HALF_EVEN would give 4.12)
        + _reviews(4, 1)
        # 805 / 201 = 4.00497...: exactly 4.00; AVG's 4-decimal result 4.0050 rounded again would give 4.01
        + _reviews(5, *([4] * 196 + [5] * 4 + [1])),
        MART.input_schema("reviews"))
    expected = spark.createDataFrame([
        (1, "Kettle", Decimal("4.50"), 2), (2, "Lamp", None, 0), (3, "Mug", Decimal("4.13"), 8),
        (4, "Vase", Decimal("1.00"), 1), (5, "Desk", Decimal("4.00"), 201), (6, "Chair", Decimal("4.50"), 2),
    ], MART.schema)
    actual = product_rating(products, reviews)
    assertSchemaEqual(actual.schema, MART.schema)
    assertDataFrameEqual(actual, expected, rtol=0, atol=0)  # exact: the default rtol let 1e-5 of a value pass


def test_no_reviews_at_all(spark):
    products = spark.createDataFrame([(1, "Kettle")], MART.input_schema("products"))
    reviews = spark.createDataFrame([], MART.input_schema("reviews"))
    assert [tuple(r) for r in product_rating(products, reviews).collect()] == [(1, "Kettle", None, 0)]
