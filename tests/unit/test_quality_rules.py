"""Quality rules: the SQL they measure with and how observed and expected values compare."""
from datetime import date, datetime
from decimal import Decimal

import pytest

from shopflow.quality.rules import (Check, Source, accepted_values, in_range, not_empty_when, not_null, passes,
                                    reconciles, row_count_equals, total_equals, unique)


def test_key_rules_count_offending_rows_of_the_staged_table():
    assert not_null("user_id", "status").sql("m__staging") == (
        "SELECT COUNT(*) FROM `m__staging` WHERE `user_id` IS NULL OR `status` IS NULL")
    assert unique("user_id", "status").sql("m") == (
        "SELECT COUNT(*) FROM (SELECT 1 FROM `m` GROUP BY `user_id`, `status` HAVING COUNT(*) > 1) duplicated_keys")
    assert not_null("a").expected == unique("a").expected == 0


def test_accepted_values_quotes_its_literals():
    check = accepted_values("status", ("Gold", "O'Brien"))
    assert check.name == "accepted_values(status)"
    assert check.sql("m") == "SELECT COUNT(*) FROM `m` WHERE `status` NOT IN ('Gold', 'O''Brien')"


def test_range_rules_with_one_or_two_bounds():
    assert in_range("rating", 1, 5).sql("m") == "SELECT COUNT(*) FROM `m` WHERE `rating` < 1 OR `rating` > 5"
    assert in_range("rating", 1, 5).name == "range(1 <= rating <= 5)"
    assert in_range("n", low=0).sql("m") == "SELECT COUNT(*) FROM `m` WHERE `n` < 0"
    with pytest.raises(ValueError, match="bound"):
        in_range("n")


def test_reconciliation_rules_name_the_replica_aggregate_they_compare_with():
    check = total_equals("total_spent", Source("orders", "SUM(total_amount)"))
    assert check.sql("m") == "SELECT COALESCE(SUM(`total_spent`), 0) FROM `m`"
    assert check.expected == Source("orders", "COALESCE(SUM(total_amount), 0)")
    assert row_count_equals("users").expected == Source("users", "COUNT(*)")
    assert not_empty_when("orders").sql("m") == "SELECT COUNT(*) > 0 FROM `m`"
    assert reconciles("MAX(x)", Source("orders", "MAX(y)"), "<=").name == "MAX(x) <= orders: MAX(y)"
    with pytest.raises(ValueError, match="operator"):
        Check("bad", "SELECT 1", 0, "<>")


@pytest.mark.parametrize("observed, op, expected, result", [
    (0, "=", 0, True), (1, "=", 0, False),
    (Decimal("10.30"), "=", Decimal("10.3"), True),  # MySQL and Spark may differ in scale only
    (Decimal("10.31"), "=", Decimal("10.30"), False),
    (Decimal("3"), "=", 3, True),  # MySQL SUM(BIGINT) is a DECIMAL, Spark's COUNT an int
    (1, "=", True, True), (0, "=", True, False),  # MySQL's `COUNT(*) > 0` is 1/0, Spark's a bool
    (Decimal("5.00"), ">=", Decimal("4.99"), True), (Decimal("4.98"), ">=", Decimal("4.99"), False),
    (date(2024, 1, 1), "<=", date(2024, 1, 1), True), (date(2024, 1, 8), "<=", date(2024, 1, 1), False),
    (datetime(2024, 1, 1), "=", date(2024, 1, 1), False),
    (None, "=", None, True), (None, "=", 0, False), (0, "=", None, False), (None, "<=", date(2024, 1, 1), False),
    (date(2024, 1, 1), "=", 0, False),
])
def test_passes(observed, op, expected, result):
    assert passes(observed, op, expected) is result


def test_a_bound_from_an_empty_table_bounds_nothing_only_when_the_check_says_so():
    first_order = Source("orders", "MIN(order_date)")
    strict, lenient = reconciles("MIN(w)", first_order, "<="), reconciles("MIN(w)", first_order, "<=", True)
    assert not strict.passes(date(2024, 1, 1), None) and lenient.passes(date(2024, 1, 1), None)
    assert lenient.passes(None, None) and not lenient.passes(None, date(2024, 1, 1))  # an empty mart is no cover
    assert not lenient.passes(date(2024, 1, 8), date(2024, 1, 1)) and lenient.passes(date(2024, 1, 1),
                                                                                      date(2024, 1, 8))
    with pytest.raises(ValueError, match="only a bound"):
        reconciles("COUNT(*)", Source("orders", "COUNT(*)"), "=", True)
