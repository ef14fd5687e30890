"""mart_weekly_activity: per ISO week (Monday start, UTC), from the week of the first registration or order to the
week of the last: new users, orders, revenue and users who ordered; weeks without activity hold zeros."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopflow.quality.rules import (TABLE, Check, Source, in_range, not_empty_when, reconciles, rows_where,
                                    total_equals)

from .spec import Mart, MartColumn, conform

COLUMNS = (
    MartColumn("week_start", "DATE"),
    MartColumn("new_users", "BIGINT"),
    MartColumn("orders", "BIGINT"),
    MartColumn("revenue", "DECIMAL(22,2)"),
    MartColumn("active_users", "BIGINT"),  # distinct users with an order that week
)
COUNTS = ("new_users", "orders", "active_users")


def _week_start(timestamp: str):
    return F.date_trunc("week", F.col(timestamp)).cast("date").alias("week_start")  # Monday 00:00, session TZ


def _every_week(*weekly: DataFrame) -> DataFrame:
    """One row per week from the earliest to the latest week_start of the frames (none when they are empty)."""
    starts = weekly[0].select("week_start")
    for frame in weekly[1:]:
        starts = starts.unionByName(frame.select("week_start"))
    bounds = starts.agg(F.min("week_start").alias("first"), F.max("week_start").alias("last"))
    return bounds.select(F.explode(F.sequence("first", "last", F.expr("INTERVAL 1 WEEK"))).alias("week_start"))


def weekly_activity(users: DataFrame, orders: DataFrame) -> DataFrame:
    signups = users.groupBy(_week_start("registration_date")).agg(F.count(F.lit(1)).alias("new_users"))
    sales = orders.groupBy(_week_start("order_date")).agg(F.count(F.lit(1)).alias("orders"),
                                                          F.sum("total_amount").alias("revenue"),
                                                          F.countDistinct("user_id").alias("active_users"))
    weeks = _every_week(signups, sales).join(signups, "week_start", "left").join(sales, "week_start", "left")
    return weeks.fillna(0, subset=[*COUNTS, "revenue"]).transform(conform(COLUMNS))


def _week_of(table: str, aggregate: str) -> Source:
    return Source(table, f"CAST(date_trunc('WEEK', {aggregate}) AS DATE)")


MART = Mart(
    name="mart_weekly_activity",
    build=weekly_activity,
    reads={"users": ("registration_date",), "orders": ("user_id", "order_date", "total_amount")},
    columns=COLUMNS,
    key=("week_start",),
    rules=(
        *(in_range(column, low=0) for column in (*COUNTS, "revenue")),
        rows_where("active_users_at_most_orders", "`active_users` > `orders`"),
        rows_where("week_start_is_a_monday", "WEEKDAY(`week_start`) <> 0"),
        Check("no_week_missing", f"SELECT COUNT(*) - COALESCE(DATEDIFF(MAX(`week_start`), MIN(`week_start`)) "
                                 f"DIV 7 + 1, 0) FROM {TABLE}", 0),
        # the bounds below only say the calendar covers every activity; this says it ends at activity both ways
        Check("calendar_ends_at_activity", f"SELECT COUNT(*) FROM {TABLE} WHERE `new_users` = 0 AND `orders` = 0 "
                                           f"AND `week_start` IN ((SELECT MIN(`week_start`) FROM {TABLE}), "
                                           f"(SELECT MAX(`week_start`) FROM {TABLE}))", 0),
        reconciles("MIN(`week_start`)", _week_of("users", "MIN(registration_date)"), "<="),
        # users without any order yet (a new shop, users streamed in): the weeks are the registrations' alone
        reconciles("MIN(`week_start`)", _week_of("orders", "MIN(order_date)"), "<=", bound_may_be_empty=True),
        reconciles("MAX(`week_start`)", _week_of("users", "MAX(registration_date)"), ">="),
        reconciles("MAX(`week_start`)", _week_of("orders", "MAX(order_date)"), ">=", bound_may_be_empty=True),
        total_equals("new_users", Source("users", "COUNT(*)")),
        total_equals("orders", Source("orders", "COUNT(*)")),
        total_equals("revenue", Source("orders", "SUM(total_amount)")),
        # distinct users per week, added up (0 <= active_users <= orders alone passed a count of orders)
        total_equals("active_users", Source("orders", "COUNT(DISTINCT user_id, date_trunc('WEEK', order_date))")),
        not_empty_when("users"),
    ),
    reference_sql="""
        WITH RECURSIVE
            signups AS (SELECT DATE(registration_date) - INTERVAL WEEKDAY(registration_date) DAY AS week_start,
                               COUNT(*) AS new_users
                        FROM users GROUP BY 1),
            sales AS (SELECT DATE(order_date) - INTERVAL WEEKDAY(order_date) DAY AS week_start,
                             COUNT(*) AS orders, SUM(total_amount) AS revenue, COUNT(DISTINCT user_id) AS active_users
                      FROM orders GROUP BY 1),
            bounds AS (SELECT MIN(week_start) AS first_week, MAX(week_start) AS last_week
                       FROM (SELECT week_start FROM signups UNION SELECT week_start FROM sales) starts),
            weeks AS (SELECT first_week AS week_start, last_week FROM bounds WHERE first_week IS NOT NULL
                      UNION ALL
                      SELECT week_start + INTERVAL 7 DAY, last_week FROM weeks WHERE week_start < last_week)
        SELECT w.week_start, COALESCE(s.new_users, 0) AS new_users, COALESCE(o.orders, 0) AS orders,
               COALESCE(o.revenue, 0) AS revenue, COALESCE(o.active_users, 0) AS active_users
        FROM weeks w
        LEFT JOIN signups s ON s.week_start = w.week_start
        LEFT JOIN sales o ON o.week_start = w.week_start""",
)
