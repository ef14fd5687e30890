"""The rules' SQL on MariaDB, against a table without a primary key, so that duplicates and NULL keys can exist
(a staged mart has a key, which rejects them at write time already)."""
from __future__ import annotations

import dataclasses
import uuid
from datetime import date

import pytest
from test_marts_replica import execute

from shopflow import db
from shopflow.marts.weekly_activity import MART as WEEKLY
from shopflow.quality import accepted_values, in_range, not_empty_when, not_null, run_checks, unique
from shopflow.quality.rules import Source

pytestmark = pytest.mark.integration


@pytest.fixture()
def scratch(mysql):
    settings = dataclasses.replace(mysql, MYSQL_DATABASE=f"test_marts_rules_{uuid.uuid4().hex[:8]}")
    execute(mysql, f"CREATE DATABASE `{settings.MYSQL_DATABASE}`")
    yield settings
    execute(mysql, f"DROP DATABASE `{settings.MYSQL_DATABASE}`")


def observed(settings, table, checks, expected=None):
    with db.mysql_connection(settings) as conn:
        return {r.check: (r.observed, r.passed) for r in run_checks(conn.cursor(), "m", table, checks, expected or {})}


def test_each_rule_counts_what_breaks_it(scratch):
    execute(scratch, "CREATE TABLE t (user_id BIGINT NULL, status VARCHAR(20) NULL, rating DECIMAL(3,2) NULL)",
            "INSERT INTO t VALUES (1, 'Pending', 4.50), (1, 'Pending', 5.00), (1, 'Pending', NULL), "
            "(2, 'Lost', 0.99), (NULL, 'Completed', 5.01), (3, NULL, 1.00)")
    checks = (not_null("user_id", "status"), unique("user_id", "status"),
              accepted_values("status", ("Pending", "Completed")), in_range("rating", 1, 5), not_empty_when("orders"))
    assert observed(scratch, "t", checks, {Source("orders", "COUNT(*) > 0"): True}) == {
        "not_null(user_id, status)": (2, False),
        "unique(user_id, status)": (1, False),  # one key value, three rows
        "accepted_values(status)": (1, False),  # 'Lost'; the NULL status is not_null's business
        "range(1 <= rating <= 5)": (2, False),
        "not_empty_when(orders)": (1, True),
    }


def test_weekly_rules_catch_a_missing_week_and_a_week_not_starting_on_monday(scratch):
    execute(scratch, WEEKLY.ddl("w"), "INSERT INTO w VALUES ('2024-01-01', 1, 1, 1.00, 1), "
                                      "('2024-01-15', 0, 0, 0, 0), ('2024-01-23', 1, 2, 3.00, 3)")
    checks = [c for c in WEEKLY.checks if c.name in ("no_week_missing", "week_start_is_a_monday",
                                                      "active_users_at_most_orders")]
    assert observed(scratch, "w", checks) == {
        "no_week_missing": (-1, False),  # 3 rows for the 4 weeks from Jan 1 to Jan 22
        "week_start_is_a_monday": (1, False), "active_users_at_most_orders": (1, False)}
    assert observed(scratch, "w", [c for c in WEEKLY.checks if c.name.startswith("MIN(")],
                    {c.expected: date(2024, 1, 1) for c in WEEKLY.checks if c.name.startswith("MIN(")}) == {
        "MIN(`week_start`) <= users: CAST(date_trunc('WEEK', MIN(registration_date)) AS DATE)": (
            date(2024, 1, 1), True),
        "MIN(`week_start`) <= orders: CAST(date_trunc('WEEK', MIN(order_date)) AS DATE)": (date(2024, 1, 1), True)}


@pytest.mark.parametrize("rows, quiet_ends", [
    ("('2024-01-01', 1, 0, 0, 0), ('2024-01-08', 0, 0, 0, 0), ('2024-01-15', 0, 1, 2.00, 1)", 0),
    ("('2024-01-01', 1, 0, 0, 0), ('2024-01-08', 0, 0, 0, 0)", 1),  # a quiet week after the last activity
    ("('2023-12-25', 0, 0, 0, 0), ('2024-01-01', 1, 1, 2.00, 1), ('2024-01-08', 0, 0, 0, 0)", 2),
    ("('2024-01-01', 0, 0, 0, 0)", 1),
])
def test_the_weekly_calendar_starts_and_ends_at_activity(scratch, rows, quiet_ends):
    """The MIN/MAX bounds only say the calendar covers the activity: a calendar one week too long passed all 16
    rules (every sum still reconciles, no week is missing)."""
    execute(scratch, WEEKLY.ddl("w"), f"INSERT INTO w VALUES {rows}")
    checks = [c for c in WEEKLY.checks if c.name == "calendar_ends_at_activity"]
    assert observed(scratch, "w", checks) == {"calendar_ends_at_activity": (quiet_ends, quiet_ends == 0)}
