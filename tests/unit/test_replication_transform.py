"""Type mapping and validation of the replication transform, on tiny inline frames."""
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from postgresdb.models import ORDER_DETAILS, REVIEWS, USERS
from postgresdb.spark_schemas import spark_schema as declared_schema
from shopflow.replication.transform import (REJECT_REASON, accepted_rows, rejected_rows, to_mysql_types,
                                            with_reject_reason)

UTC = timezone.utc


def spark_schema(name: str) -> T.StructType:
    """The declared schema as Spark's JDBC reader delivers it: every column nullable."""
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in declared_schema(name).fields])


def _utc(*parts) -> datetime:
    """A timestamp as Spark holds it: an instant (the session time zone is UTC)."""
    return datetime(*parts, tzinfo=UTC)


def _users(spark, rows):
    return spark.createDataFrame(rows, spark_schema("users"))


def _user(user_id, first="Zoë", email=None, status="Gold", registered=_utc(2024, 1, 1, 23, 59, 59, 999999),
          phone=None, last="Ñúñez 🎉"):
    return (user_id, first, last, email or f"u{user_id}@example.com", phone, registered, status,
            _utc(2024, 1, 2, 0, 0, 0, 1))


def test_to_mysql_types_renders_utc_microseconds_and_keeps_nulls_and_unicode(spark):
    source = _users(spark, [_user(1), _user(2, phone="+1 555", registered=_utc(2024, 2, 29, 0, 0, 0))])
    expected_schema = T.StructType([
        T.StructField("user_id", T.LongType()), T.StructField("first_name", T.StringType()),
        T.StructField("last_name", T.StringType()), T.StructField("email", T.StringType()),
        T.StructField("phone", T.StringType()), T.StructField("registration_date", T.StringType()),
        T.StructField("loyalty_status", T.StringType()), T.StructField("updated_at", T.StringType())])
    expected = spark.createDataFrame([
        (1, "Zoë", "Ñúñez 🎉", "u1@example.com", None, "2024-01-01 23:59:59.999999", "Gold",
         "2024-01-02 00:00:00.000001"),
        (2, "Zoë", "Ñúñez 🎉", "u2@example.com", "+1 555", "2024-02-29 00:00:00.000000", "Gold",
         "2024-01-02 00:00:00.000001"),
    ], expected_schema)
    assertDataFrameEqual(to_mysql_types(source, USERS), expected, checkRowOrder=False)


def test_to_mysql_types_keeps_money_exact(spark):
    rows = [(1, 10, 20, 3, Decimal("0.10"), Decimal("9999999999.99"), _utc(2024, 5, 5)),
            (2, 10, 21, 1, Decimal("12.35"), Decimal("12.35"), _utc(2024, 5, 5))]
    out = to_mysql_types(spark.createDataFrame(rows, spark_schema("order_details")), ORDER_DETAILS)
    assert dict(out.dtypes)["total_price"] == "decimal(12,2)"
    assert {r.order_detail_id: r.total_price for r in out.collect()} == {1: Decimal("9999999999.99"),
                                                                         2: Decimal("12.35")}


def test_valid_rows_have_no_reject_reason(spark):
    long_name = "é" * 99 + "🎉"  # 100 characters (more bytes): fits VARCHAR(100), which counts characters
    checked = with_reject_reason(_users(spark, [_user(1, first=long_name), _user(2, phone=None)]), USERS)
    assert [r[REJECT_REASON] for r in checked.collect()] == [None, None]


@pytest.mark.parametrize("row, reason", [
    (_user(1, first="x" * 101), "first_name: 101 characters > VARCHAR(100)"),
    (_user(2, status="Platinum"), "loyalty_status: 'Platinum' not one of Gold, Silver, Bronze"),
    (_user(3, first=None), "first_name: NULL in a NOT NULL column"),
    (_user(4, registered=_utc(999, 12, 31, 23, 0)), "registration_date: 0999-12-31 23:00:00 outside DATETIME"),
    (_user(5, registered=_utc(9999, 12, 31, 23, 59, 59, 999000)), "outside DATETIME (or infinity)"),
])
def test_rejects_name_the_column_and_reason(spark, row, reason):
    checked = with_reject_reason(_users(spark, [row]), USERS)
    assert reason in checked.first()[REJECT_REASON]


def test_several_problems_in_one_row_are_all_reported(spark):
    checked = with_reject_reason(_users(spark, [_user(7, first="y" * 150, status="Zinc")]), USERS)
    assert checked.first()[REJECT_REASON] == ("first_name: 150 characters > VARCHAR(100); "
                                              "loyalty_status: 'Zinc' not one of Gold, Silver, Bronze")


def test_rejected_and_accepted_rows_split_without_loss(spark):
    reviews = spark.createDataFrame([
        (1, 1, 1, 5, None, _utc(2024, 1, 1), _utc(2024, 1, 1)),
        (2, 1, 1, 6, "too good", _utc(2024, 1, 1), _utc(2024, 1, 1)),
        (3, 1, 1, 0, "x" * 100_000, _utc(2024, 1, 1), _utc(2024, 1, 1)),
        (4, 1, 1, 1, "ok", _utc(2024, 1, 1), _utc(2024, 1, 1)),
    ], spark_schema("reviews"))
    checked = with_reject_reason(reviews, REVIEWS)
    expected = spark.createDataFrame([("2", "rating: 6 > 5"), ("3", "rating: 0 < 1")], "row_key string, reason string")
    assertDataFrameEqual(rejected_rows(checked, REVIEWS), expected, checkRowOrder=False)
    assert sorted(r.review_id for r in accepted_rows(checked).collect()) == [1, 4]
    assert accepted_rows(checked).columns == reviews.columns


def test_money_out_of_decimal_range_and_negative_quantity_are_rejected(spark):
    schema = T.StructType([f if f.name != "total_price" else T.StructField("total_price", T.DecimalType(20, 3))
                           for f in spark_schema("order_details").fields])
    rows = [(1, 1, 1, 0, Decimal("1.00"), Decimal("10000000000.000"), _utc(2024, 1, 1)),
            (2, 1, 1, 1, Decimal("-0.01"), Decimal("1.005"), _utc(2024, 1, 1))]
    reasons = {r.order_detail_id: r[REJECT_REASON]
               for r in with_reject_reason(spark.createDataFrame(rows, schema), ORDER_DETAILS).collect()}
    assert reasons == {
        1: "quantity: 0 < 1; total_price: 10000000000.000 outside DECIMAL(12,2)",
        2: "price_per_unit: -0.01 < 0; total_price: 1.005 has more than 2 decimals",
    }
