"""mart_average_check: the average order value (2 decimals, HALF_UP) per order status and user loyalty status,
for the pairs present in the data, and how many orders it averages (beyond the brief's columns, as the ratings'
review_count: the gate adds the averages back up to the orders' total with it)."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from postgresdb.models import LOYALTY_STATUSES, ORDER_STATUSES
from shopflow.quality.rules import (Source, accepted_values, in_range, not_empty_when, reconciles,
                                    rounded_means_add_up, total_equals)

from .spec import Mart, MartColumn, conform, rounded_mean, varchar_of

COLUMNS = (
    MartColumn("status", varchar_of("orders", "status")),
    MartColumn("loyalty_status", varchar_of("users", "loyalty_status")),
    MartColumn("average_check", "DECIMAL(12,2)"),
    MartColumn("order_count", "BIGINT"),
)


def average_check(orders: DataFrame, users: DataFrame) -> DataFrame:
    segments = (orders.join(users, "user_id").groupBy("status", "loyalty_status")
                .agg(F.sum("total_amount").alias("amount_sum"), F.count(F.lit(1)).alias("order_count")))
    return segments.withColumn("average_check", rounded_mean("amount_sum", "order_count")).transform(
        conform(COLUMNS))


MART = Mart(
    name="mart_average_check",
    build=average_check,
    reads={"orders": ("user_id", "status", "total_amount"), "users": ("user_id", "loyalty_status")},
    columns=COLUMNS,
    key=("status", "loyalty_status"),
    rules=(
        accepted_values("status", ORDER_STATUSES),
        accepted_values("loyalty_status", LOYALTY_STATUSES),
        in_range("average_check", low=0),
        in_range("order_count", low=1),
        # every order averaged once (the join to users drops none), over the right count
        total_equals("order_count", Source("orders", "COUNT(*)")),
        *rounded_means_add_up("average_check", "order_count", "orders", "total_amount"),
        # An average lies between the smallest and the largest value averaged (both on the cent grid).
        reconciles("MIN(`average_check`)", Source("orders", "MIN(total_amount)"), ">="),
        reconciles("MAX(`average_check`)", Source("orders", "MAX(total_amount)"), "<="),
        not_empty_when("orders"),
    ),
    reference_sql="""
        SELECT o.status, u.loyalty_status, ROUND(AVG(o.total_amount), 2) AS average_check, COUNT(*) AS order_count
        FROM orders o JOIN users u ON u.user_id = o.user_id
        GROUP BY o.status, u.loyalty_status""",
)
