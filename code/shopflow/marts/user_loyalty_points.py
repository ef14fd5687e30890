"""mart_user_loyalty_points: every user with the sum of their loyalty points (0 when they have none)."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from postgresdb.models import LOYALTY_STATUSES
from shopflow.quality.rules import (Source, accepted_values, keyed_total_equals, not_empty_when, row_count_equals,
                                    same_values, total_equals)

from .spec import Mart, MartColumn, conform, varchar_of

COLUMNS = (
    MartColumn("user_id", "BIGINT"),
    MartColumn("first_name", varchar_of("users", "first_name")),
    MartColumn("last_name", varchar_of("users", "last_name")),
    MartColumn("loyalty_status", varchar_of("users", "loyalty_status")),
    MartColumn("total_loyalty_points", "BIGINT"),  # points may be negative (a correction): no range rule
)


def user_loyalty_points(users: DataFrame, loyalty_points: DataFrame) -> DataFrame:
    per_user = loyalty_points.groupBy("user_id").agg(F.sum("points").alias("total_loyalty_points"))
    return (users.join(per_user, "user_id", "left")
            .withColumn("total_loyalty_points", F.coalesce("total_loyalty_points", F.lit(0)))
            .transform(conform(COLUMNS)))


MART = Mart(
    name="mart_user_loyalty_points",
    build=user_loyalty_points,
    reads={"users": ("user_id", "first_name", "last_name", "loyalty_status"),
           "loyalty_points": ("user_id", "points")},
    columns=COLUMNS,
    key=("user_id",),
    rules=(
        accepted_values("loyalty_status", LOYALTY_STATUSES),
        row_count_equals("users"),
        total_equals("total_loyalty_points", Source("loyalty_points", "SUM(points)")),
        # under the right user: the totals above pass one user's points, name or tier under another
        keyed_total_equals("user_id", "total_loyalty_points", Source("loyalty_points", "points")),
        same_values("users", ("user_id", "first_name", "last_name", "loyalty_status")),
        not_empty_when("users"),
    ),
    reference_sql="""
        SELECT u.user_id, u.first_name, u.last_name, u.loyalty_status,
               COALESCE(SUM(lp.points), 0) AS total_loyalty_points
        FROM users u LEFT JOIN loyalty_points lp ON lp.user_id = u.user_id
        GROUP BY u.user_id, u.first_name, u.last_name, u.loyalty_status""",
)
