"""mart_user_activity: per user and order status (only statuses the user has orders in), how many orders and
how much they add up to."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from postgresdb.models import ORDER_STATUSES
from shopflow.quality.rules import Source, accepted_values, in_range, not_empty_when, reconciles, total_equals

from .spec import Mart, MartColumn, conform, varchar_of

COLUMNS = (
    MartColumn("user_id", "BIGINT"),
    MartColumn("first_name", varchar_of("users", "first_name")),
    MartColumn("last_name", varchar_of("users", "last_name")),
    MartColumn("status", varchar_of("orders", "status")),
    MartColumn("order_count", "BIGINT"),
    MartColumn("total_spent", "DECIMAL(22,2)"),  # SUM of DECIMAL(12,2): Spark's exact type, no overflow
)


def user_activity(orders: DataFrame, users: DataFrame) -> DataFrame:
    per_status = orders.groupBy("user_id", "status").agg(F.count(F.lit(1)).alias("order_count"),
                                                          F.sum("total_amount").alias("total_spent"))
    return per_status.join(users, "user_id").transform(conform(COLUMNS))


MART = Mart(
    name="mart_user_activity",
    build=user_activity,
    reads={"orders": ("user_id", "status", "total_amount"), "users": ("user_id", "first_name", "last_name")},
    columns=COLUMNS,
    key=("user_id", "status"),
    rules=(
        accepted_values("status", ORDER_STATUSES),
        in_range("order_count", low=1),
        in_range("total_spent", low=0),
        total_equals("order_count", Source("orders", "COUNT(*)")),
        total_equals("total_spent", Source("orders", "SUM(total_amount)")),
        # a row for every (user, status) of the orders and every user who ordered: the totals alone passed a mart
        # that put one user's orders under another
        reconciles("COUNT(*)", Source("orders", "COUNT(DISTINCT user_id, status)")),
        reconciles("COUNT(DISTINCT `user_id`)", Source("orders", "COUNT(DISTINCT user_id)")),
        not_empty_when("orders"),
    ),
    reference_sql="""
        SELECT u.user_id, u.first_name, u.last_name, o.status, COUNT(*) AS order_count,
               SUM(o.total_amount) AS total_spent
        FROM orders o JOIN users u ON u.user_id = o.user_id
        GROUP BY u.user_id, u.first_name, u.last_name, o.status""",
)
