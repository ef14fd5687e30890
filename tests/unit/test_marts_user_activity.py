"""mart_user_activity on tiny inline frames."""
from decimal import Decimal

from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from shopflow.marts.user_activity import MART, user_activity


def test_one_row_per_user_and_status_with_exact_sums_and_no_row_for_a_user_without_orders(spark):
    users = spark.createDataFrame([(1, "Zoë", "Ñúñez"), (2, "Bob", "Ng"), (3, "Cy", "Never Ordered")],
                                  MART.input_schema("users"))
    orders = spark.createDataFrame([
        (1, "Completed", Decimal("0.10")), (1, "Completed", Decimal("0.20")), (1, "Pending", Decimal("5.00")),
        (2, "Completed", Decimal("0.30")),  # ties with user 1's Completed total
        (2, "Cancelled", Decimal("0.00")),
    ], MART.input_schema("orders"))
    expected = spark.createDataFrame([
        (1, "Zoë", "Ñúñez", "Completed", 2, Decimal("0.30")),
        (1, "Zoë", "Ñúñez", "Pending", 1, Decimal("5.00")),
        (2, "Bob", "Ng", "Completed", 1, Decimal("0.30")),
        (2, "Bob", "Ng", "Cancelled", 1, Decimal("0.00")),
    ], MART.schema)
    actual = user_activity(orders, users)
    assertSchemaEqual(actual.schema, MART.schema)
    assertDataFrameEqual(actual, expected, rtol=0, atol=0)  # exact: the default rtol let 1e-5 of a value pass


def test_large_amounts_stay_exact(spark):
    users = spark.createDataFrame([(1, "Big", "Spender")], MART.input_schema("users"))
    orders = spark.createDataFrame([(1, "Completed", Decimal("9999999999.99"))] * 3, MART.input_schema("orders"))
    [row] = user_activity(orders, users).collect()
    assert (row.order_count, row.total_spent) == (3, Decimal("29999999999.97"))
