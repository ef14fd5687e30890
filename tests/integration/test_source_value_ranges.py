"""The source refuses values no replica can hold (postgresdb/ddl.py `_not_valid_check`): one such row stopped the
replication of its table (exit 3, no retry, the marts stale) until someone fixed it by hand."""
from __future__ import annotations

import psycopg2
import pytest
from replication_support import pg, scratch, seed  # noqa: F401

from shopflow import db

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("statement, check", [
    ("UPDATE {s}.orders SET delivery_date = '20250-01-15' WHERE order_id = 1", "ck_orders_delivery_date_datetime"),
    ("UPDATE {s}.orders SET order_date = 'infinity' WHERE order_id = 2", "ck_orders_order_date_datetime"),
    ("UPDATE {s}.users SET registration_date = '0999-12-31 23:59:59+00' WHERE user_id = 1",
     "ck_users_registration_date_datetime"),
    ("INSERT INTO {s}.loyalty_points (loyalty_id, user_id, points, reason, created_at, updated_at) "
     "VALUES (9, 1, 5, 'Order', now(), 'infinity')", "ck_loyalty_points_updated_at_datetime"),
], ids=["a five-digit year", "infinity", "before the year 1000", "an updated_at of the caller's"])
def test_a_timestamp_outside_datetime_is_refused_by_the_source(scratch, statement, check):
    seed(scratch)
    with pytest.raises(psycopg2.errors.CheckViolation, match=check):
        pg(scratch, statement)
    pg(scratch, "UPDATE {s}.orders SET delivery_date = '9999-12-31 23:59:59.998+00' WHERE order_id = 1")  # the last


def test_a_source_made_before_the_checks_gets_them_for_new_rows(scratch):
    """NOT VALID: rows already there are not read (a big table would be scanned under a lock at `make up`)."""
    seed(scratch)
    pg(scratch, "ALTER TABLE {s}.orders DROP CONSTRAINT ck_orders_delivery_date_datetime",
       "UPDATE {s}.orders SET delivery_date = 'infinity' WHERE order_id = 1")
    db.apply_postgres_schema(scratch)  # what `make up` does
    with pytest.raises(psycopg2.errors.CheckViolation, match="ck_orders_delivery_date_datetime"):
        pg(scratch, "UPDATE {s}.orders SET delivery_date = 'infinity' WHERE order_id = 2")
