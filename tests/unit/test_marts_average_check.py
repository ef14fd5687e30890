"""mart_average_check on tiny inline frames."""
from decimal import Decimal

from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from shopflow.marts.average_check import MART, average_check


def test_average_per_order_status_and_loyalty_status_present_in_the_data(spark):
    users = spark.createDataFrame([(1, "Gold"), (2, "Silver"), (3, "Bronze"), (4, "Gold")],
                                  MART.input_schema("users"))
    orders = spark.createDataFrame([
        (1, "Completed", Decimal("10.00")), (4, "Completed", Decimal("10.01")),  # 10.005 -> 10.01
        (1, "Pending", Decimal("1.00")), (1, "Pending", Decimal("2.00")), (4, "Pending", Decimal("2.00")),  # 1.67
        (2, "Completed", Decimal("3.00")), (2, "Pending", Decimal("0.00")),
        (2, "Shipped", Decimal("9999999999.99")), (2, "Shipped", Decimal("9999999999.98")),
    ], MART.input_schema("orders"))  # user 3 (Bronze) has no order: no Bronze row
    expected = spark.createDataFrame([
        ("Completed", "Gold", Decimal("10.01"), 2), ("Pending", "Gold", Decimal("1.67"), 3),
        ("Completed", "Silver", Decimal("3.00"), 1), ("Pending", "Silver", Decimal("0.00"), 1),
        ("Shipped", "Silver", Decimal("9999999999.99"), 2),  # .985 rounds up
    ], MART.schema)
    actual = average_check(orders, users)
    assertSchemaEqual(actual.schema, MART.schema)
    assertDataFrameEqual(actual, expected, rtol=0, atol=0)  # exact: the default rtol let 1e-5 of a value pass
