"""Each mart's gate against a right and a wrong mart of the same tiny replica: the expected values computed by
Spark from the replica frames (`expected_values`, as the build does), the observed ones by the rules' SQL on
MariaDB over the mart's own table. The wrong marts are the mistakes the gates used to let through (they checked
sums and ranges only): one user's orders under another, a count of orders as active users, a maximum as a
rating, an average of averages."""
from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal as D

import pytest
from test_marts_quality_sql import scratch  # noqa: F401  (a scratch database, dropped after)
from test_marts_replica import execute

from shopflow import db
from shopflow.marts.average_check import MART as AVERAGE_CHECK
from shopflow.marts.product_rating import MART as PRODUCT_RATING
from shopflow.marts.user_activity import MART as USER_ACTIVITY
from shopflow.marts.user_loyalty_points import MART as LOYALTY
from shopflow.marts.weekly_activity import MART as WEEKLY
from shopflow.quality import expected_values, run_checks, sources

pytestmark = pytest.mark.integration
MON, TUE = datetime(2024, 1, 1, 9), datetime(2024, 1, 2, 9)

CASES = {  # mart name: (the mart, replica rows per table, the right mart, a wrong one, the checks the wrong one fails)
    USER_ACTIVITY.name: (USER_ACTIVITY,
        {"users": [(1, "Ann", "Lee"), (2, "Bo", "Kim")],
         "orders": [(1, "Pending", D("10.00")), (2, "Pending", D("5.00")), (1, "Completed", D("1.00"))]},
        [(1, "Ann", "Lee", "Pending", 1, D("10.00")), (1, "Ann", "Lee", "Completed", 1, D("1.00")),
         (2, "Bo", "Kim", "Pending", 1, D("5.00"))],
        [(1, "Ann", "Lee", "Pending", 2, D("15.00")), (1, "Ann", "Lee", "Completed", 1, D("1.00"))],
        {"COUNT(*) = orders: COUNT(DISTINCT user_id, status)",
         "COUNT(DISTINCT `user_id`) = orders: COUNT(DISTINCT user_id)"}),
    WEEKLY.name: (WEEKLY,
        {"users": [(MON,), (TUE,)], "orders": [(1, MON, D("2.00")), (1, TUE, D("3.00")), (2, TUE, D("1.00"))]},
        [(MON.date(), 2, 3, D("6.00"), 2)],
        [(MON.date(), 2, 3, D("6.00"), 3)],
        {"COALESCE(SUM(`active_users`), 0) = orders: COALESCE(COUNT(DISTINCT user_id, date_trunc('WEEK', "
         "order_date)), 0)"}),
    PRODUCT_RATING.name: (PRODUCT_RATING,
        {"products": [(1, "Lamp"), (2, "Desk")], "reviews": [(1, 5), (1, 4), (2, 3)]},
        [(1, "Lamp", D("4.50"), 2), (2, "Desk", D("3.00"), 1)],
        [(1, "Lamp", D("5.00"), 2), (2, "Desk", D("3.00"), 1)],
        {"COALESCE(SUM(`rating` * `review_count`), 0) <= reviews: COALESCE(SUM(rating), 0) + 0.005 * COUNT(*)"}),
    LOYALTY.name: (LOYALTY,
        {"users": [(1, "Ann", "Lee", "Gold"), (2, "Bo", "Kim", "Bronze")],
         "loyalty_points": [(1, 100), (1, 50), (2, 10)]},
        [(1, "Ann", "Lee", "Gold", 150), (2, "Bo", "Kim", "Bronze", 10)],
        [(1, "Ann", "Lee", "Bronze", 10), (2, "Bo", "Kim", "Gold", 150)],  # points and tiers under the other user
        {"COALESCE(SUM(`user_id` * `total_loyalty_points`), 0) = loyalty_points: COALESCE(SUM(user_id * points), 0)",
         "COALESCE(SUM(CRC32(CONCAT_WS('|', `user_id`, `first_name`, `last_name`, `loyalty_status`))), 0) = users: "
         "COALESCE(SUM(crc32(CONCAT_WS('|', user_id, first_name, last_name, loyalty_status))), 0)"}),
    AVERAGE_CHECK.name: (AVERAGE_CHECK,
        {"users": [(1, "Gold"), (2, "Gold")],
         "orders": [(1, "Completed", D("10.00")), (1, "Completed", D("20.00")), (2, "Completed", D("30.00"))]},
        [("Completed", "Gold", D("20.00"), 3)],
        [("Completed", "Gold", D("22.50"), 3)],  # the users' averages averaged
        {"COALESCE(SUM(`average_check` * `order_count`), 0) <= orders: COALESCE(SUM(total_amount), 0) + "
         "0.005 * COUNT(*)"}),
}


def failed_checks(spark, settings, mart, replica: dict, rows: list[tuple]) -> set[str]:
    frames = {table: spark.createDataFrame(data, mart.input_schema(table)) for table, data in replica.items()}
    table = f"m_{uuid.uuid4().hex[:8]}"
    execute(settings, mart.ddl(table))
    with db.mysql_connection(settings) as conn:
        cursor = conn.cursor()
        cursor.executemany(f"INSERT INTO `{table}` VALUES ({', '.join(['%s'] * len(mart.columns))})", rows)
        results = run_checks(cursor, mart.name, table, mart.checks,
                             expected_values(frames, sources(mart.checks)))
    return {r.check for r in results if not r.passed}


@pytest.mark.parametrize("name", CASES)
def test_the_gate_passes_the_right_mart_and_fails_a_wrong_one(spark, scratch, name):
    mart, replica, right, wrong, fails = CASES[name]
    assert failed_checks(spark, scratch, mart, replica, right) == set()
    assert failed_checks(spark, scratch, mart, replica, wrong) == fails


def test_an_average_check_over_the_users_fails_its_order_count(spark, scratch):
    """The average over the users instead of the orders (60.00 / 2): the orders counted no longer add up."""
    replica = CASES[AVERAGE_CHECK.name][1]
    assert failed_checks(spark, scratch, AVERAGE_CHECK, replica, [("Completed", "Gold", D("30.00"), 2)]) == {
        "COALESCE(SUM(`order_count`), 0) = orders: COALESCE(COUNT(*), 0)"}


@pytest.mark.parametrize("wrong, fails", [
    ([(1, "Lamp", D("3.00"), 1), (2, "Desk", D("4.50"), 2)],  # the products' reviews swapped: every total still adds up
     "COALESCE(SUM(`product_id` * `review_count`), 0) = reviews: COALESCE(SUM(product_id * 1), 0)"),
    ([(1, "Desk", D("4.50"), 2), (2, "Lamp", D("3.00"), 1)],  # the names swapped
     "COALESCE(SUM(CRC32(CONCAT_WS('|', `product_id`, `name`))), 0) = products: "
     "COALESCE(SUM(crc32(CONCAT_WS('|', product_id, name))), 0)"),
])
def test_ratings_under_another_product_fail_the_keyed_checks(spark, scratch, wrong, fails):
    replica = CASES[PRODUCT_RATING.name][1]
    assert failed_checks(spark, scratch, PRODUCT_RATING, replica, wrong) == {fails}
