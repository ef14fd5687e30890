"""mart_user_loyalty_points on tiny inline frames."""
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from shopflow.marts.user_loyalty_points import MART, user_loyalty_points


def test_every_user_once_with_points_summed_and_zero_without_points(spark):
    users = spark.createDataFrame([(1, "Zoë", "Ñúñez", "Gold"), (2, "Bob", "Ng", "Silver"),
                                   (3, "Cy", "Lee", "Bronze"), (4, "Di", "Ro", "Bronze")],
                                  MART.input_schema("users"))
    points = spark.createDataFrame([(1, 100), (1, -30), (3, 70), (4, 0)], MART.input_schema("loyalty_points"))
    expected = spark.createDataFrame([
        (1, "Zoë", "Ñúñez", "Gold", 70), (2, "Bob", "Ng", "Silver", 0), (3, "Cy", "Lee", "Bronze", 70),
        (4, "Di", "Ro", "Bronze", 0),
    ], MART.schema)
    actual = user_loyalty_points(users, points)
    assertSchemaEqual(actual.schema, MART.schema)
    assertDataFrameEqual(actual, expected, rtol=0, atol=0)  # exact: the default rtol let 1e-5 of a value pass
