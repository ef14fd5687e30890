"""mart_weekly_activity on tiny inline frames: ISO weeks in UTC, a week without activity, week edges."""
from datetime import date, datetime, timezone
from decimal import Decimal

from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from shopflow.marts.weekly_activity import MART, weekly_activity


def _utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def test_every_week_from_the_first_to_the_last_activity_with_zeros_for_quiet_weeks(spark):
    users = spark.createDataFrame([
        (_utc(2024, 1, 1, 0, 0, 0),),  # Monday 00:00: week of Jan 1
        (_utc(2024, 1, 7, 23, 59, 59, 999999),),  # Sunday, last microsecond: still week of Jan 1
        (_utc(2024, 1, 22, 10, 0, 0),),
    ], MART.input_schema("users"))
    orders = spark.createDataFrame([
        (1, _utc(2024, 1, 8, 0, 0, 0), Decimal("10.00")), (1, _utc(2024, 1, 9, 12, 0, 0), Decimal("5.50")),
        (2, _utc(2024, 1, 14, 23, 59, 59), Decimal("12.00")),
        (3, _utc(2024, 1, 29, 0, 0, 1), Decimal("0.01")),
    ], MART.input_schema("orders"))
    expected = spark.createDataFrame([
        (date(2024, 1, 1), 2, 0, Decimal("0.00"), 0),
        (date(2024, 1, 8), 0, 3, Decimal("27.50"), 2),
        (date(2024, 1, 15), 0, 0, Decimal("0.00"), 0),  # nothing happened that week
        (date(2024, 1, 22), 1, 0, Decimal("0.00"), 0),
        (date(2024, 1, 29), 0, 1, Decimal("0.01"), 1),
    ], MART.schema)
    actual = weekly_activity(users, orders)
    assertSchemaEqual(actual.schema, MART.schema)
    assertDataFrameEqual(actual, expected, rtol=0, atol=0)  # exact: the default rtol let 1e-5 of a value pass


def test_a_year_boundary_week_and_no_rows_without_activity(spark):
    users = spark.createDataFrame([(_utc(2025, 1, 1, 8, 0, 0),)], MART.input_schema("users"))  # a Wednesday
    no_orders = spark.createDataFrame([], MART.input_schema("orders"))
    assert [tuple(r) for r in weekly_activity(users, no_orders).collect()] == [
        (date(2024, 12, 30), 1, 0, Decimal("0.00"), 0)]
    nobody = spark.createDataFrame([], MART.input_schema("users"))
    assert weekly_activity(nobody, no_orders).count() == 0
