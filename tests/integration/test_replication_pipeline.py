"""Replication against real Postgres and MariaDB, in a scratch schema and a scratch database per test.

Equality is checked row by row (`assert_replica_equals_source`), independently of the job's own checksums.
Rows read may exceed the rows changed (a transaction of another session open at a run's snapshot holds the
watermark back, so the next run re-reads a few rows): assertions use rows written/deleted, which are exact.
"""
from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone

import pytest

from postgresdb.models import TABLES, TABLES_BY_NAME
from shopflow import db
from shopflow.replication import ReplicationError, replicate
from shopflow.replication.transform import replicated_columns

pytestmark = pytest.mark.integration

LONG_REVIEW = ("Très bien, señor! 👍🏽 " * 5_000)[:100_000]


@pytest.fixture()
def scratch(postgres, mysql):
    """Settings pointing at a fresh Postgres schema (full DDL) and a fresh MySQL database."""
    tag = uuid.uuid4().hex[:10]
    settings = dataclasses.replace(postgres, POSTGRES_SCHEMA=f"t_repl_{tag}", MYSQL_DATABASE=f"test_repl_{tag}")
    db.apply_postgres_schema(settings)
    with db.mysql_connection(mysql, autocommit=True) as conn:
        conn.cursor().execute(f"CREATE DATABASE {settings.MYSQL_DATABASE}")
    yield settings
    with db.mysql_connection(mysql, autocommit=True) as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {settings.MYSQL_DATABASE}")
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA {settings.POSTGRES_SCHEMA} CASCADE")


def pg(settings, *statements):
    """Run statements in one Postgres transaction; `{s}` is the scratch schema."""
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement.replace("{s}", settings.POSTGRES_SCHEMA))


def seed(settings):
    pg(settings,
       "INSERT INTO {s}.users VALUES "
       "(1, 'Zoë', 'Ñúñez 🎉', 'zoe@example.com', NULL, '2024-01-01 23:59:59.999999+00', 'Gold'),"
       "(2, 'José', 'O''Brien', 'jose@example.com', '+33 1 23 45', '2024-03-01 00:00:00.000001+00', 'Silver'),"
       f"(3, '{'É' * 99}🎉', 'Lee', 'lee@example.com', NULL, '2023-12-31 23:59:59+00', 'Bronze')",
       "INSERT INTO {s}.product_categories VALUES (1, 'Électronique', NULL), (2, 'Téléphones 📱', 1)",
       "INSERT INTO {s}.products VALUES "
       "(1, 'Big ticket', NULL, 1, 9999999999.99, 0, '2024-06-30 23:59:59.5+00'),"
       "(2, 'Câble', 'Un câble très long — ✨', 2, 0.01, 12, '2024-07-01 00:00:00+00')",
       "INSERT INTO {s}.orders VALUES "
       "(1, 1, '2024-12-31 23:59:59.999999+00', 9999999999.99, 'Pending', NULL),"
       "(2, 2, '2025-01-01 00:00:00+00', 0.03, 'Completed', '2025-01-03 12:00:00+00')",
       "INSERT INTO {s}.order_details VALUES (1, 1, 1, 1, 9999999999.99, 9999999999.99), (2, 2, 2, 3, 0.01, 0.03)",
       "INSERT INTO {s}.reviews VALUES "
       f"(1, 1, 1, 5, '{LONG_REVIEW}', '2024-02-29 23:59:59.999999+00'),"
       "(2, 2, 2, 1, NULL, '2024-03-01 00:00:00+00'), (3, 2, 1, 4, 'Très bien 👍', '2024-03-02 10:00:00+00')",
       "INSERT INTO {s}.loyalty_points VALUES (1, 1, 100, 'Order', '2024-01-01 00:00:00+00'),"
       "(2, 2, -50, 'Promotion', '2024-01-01 23:59:59.999999+00')")


def _normal(value):
    if isinstance(value, datetime):  # Postgres gives aware UTC datetimes, MySQL naive UTC ones
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    return value


def source_rows(settings, table):
    columns = ", ".join(c.name for c in replicated_columns(table))
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM {settings.POSTGRES_SCHEMA}.{table.name} ORDER BY 1")
        return [tuple(map(_normal, row)) for row in cur.fetchall()]


def replica_query(settings, statement, params=()):
    with db.mysql_connection(settings) as conn:
        cur = conn.cursor(dictionary=True)
        cur.execute(statement, params)
        return cur.fetchall()


def replica_rows(settings, table):
    columns = ", ".join(f"`{c.name}`" for c in replicated_columns(table))
    rows = replica_query(settings, f"SELECT {columns} FROM `{table.name}` ORDER BY 1")
    return [tuple(map(_normal, row.values())) for row in rows]


def assert_replica_equals_source(settings):
    for table in TABLES:
        assert replica_rows(settings, table) == source_rows(settings, table), table.name


def written(results):
    return {name: (r.inserted, r.updated, r.deleted) for name, r in results.items() if r.rows_written or r.deleted}


def test_first_run_copies_everything_then_a_rerun_touches_nothing(spark, scratch):
    seed(scratch)
    first = replicate(spark, scratch)
    assert {r.plan.mode for r in first.values()} == {"full"}
    assert_replica_equals_source(scratch)
    assert replica_rows(scratch, TABLES_BY_NAME["reviews"])[0][4] == LONG_REVIEW
    assert {name: r.inserted for name, r in first.items()} == {
        "users": 3, "product_categories": 2, "products": 2, "orders": 2, "order_details": 2, "reviews": 3,
        "loyalty_points": 2}
    runs = replica_query(scratch, "SELECT table_name, mode, status, checksum, rows_written FROM pipeline_runs "
                                  "WHERE table_name IS NOT NULL ORDER BY run_id")
    assert [(r["table_name"], r["mode"], r["status"]) for r in runs] == [
        (t.name, "full", "ok") for t in reversed(TABLES)]
    assert all(r["checksum"].startswith(f"{r['rows_written']}:") for r in runs)

    second = replicate(spark, scratch)
    assert {r.plan.mode for r in second.values()} == {"incremental"}
    assert written(second) == {}
    assert [str(r.checksum) for r in second.values()] == [str(r.checksum) for r in first.values()]
    assert_replica_equals_source(scratch)


def test_insert_update_delete_and_a_row_updated_twice(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "UPDATE {s}.orders SET status = 'Shipped', delivery_date = '2025-01-01 00:00:00+00' "
                "WHERE order_id = 1")
    pg(scratch, "UPDATE {s}.users SET last_name = 'Ørsted' WHERE user_id = 2")
    pg(scratch, "UPDATE {s}.users SET phone = NULL WHERE user_id = 2")
    pg(scratch, "INSERT INTO {s}.users VALUES (4, 'Ana', 'Lið', 'ana@example.com', NULL, now(), 'Gold')",
       "INSERT INTO {s}.orders VALUES (3, 4, '2025-02-01 23:59:59.000001+00', 10.50, 'Pending', NULL)")
    pg(scratch, "DELETE FROM {s}.reviews WHERE review_id = 3")
    pg(scratch, "UPDATE {s}.products SET stock_quantity = stock_quantity WHERE product_id = 2")  # no-op update
    results = replicate(spark, scratch)
    assert written(results) == {"users": (1, 1, 0), "orders": (1, 1, 0), "reviews": (0, 0, 1)}
    assert_replica_equals_source(scratch)


def test_transaction_open_across_a_run_is_picked_up_by_the_next_run(spark, scratch):
    """The watermark is the snapshot's xmin, not the largest change_txid seen: a transaction that started earlier
    but commits later (here user 100, written before user 101 commits) is still read by the next run."""
    seed(scratch)
    replicate(spark, scratch)
    with db.pg_connection(scratch) as open_conn, open_conn.cursor() as cur:
        cur.execute(f"INSERT INTO {scratch.POSTGRES_SCHEMA}.users VALUES "
                    "(100, 'Late', 'Commit', 'late@example.com', NULL, now(), 'Gold')")
        pg(scratch, "INSERT INTO {s}.users VALUES (101, 'Early', 'Commit', 'early@example.com', NULL, now(), 'Gold')")
        during = replicate(spark, scratch)
        assert written(during) == {"users": (1, 0, 0)}
    assert [r[0] for r in replica_rows(scratch, TABLES_BY_NAME["users"])] == [1, 2, 3, 101]
    after = replicate(spark, scratch)
    assert written(after) == {"users": (1, 0, 0)}
    assert_replica_equals_source(scratch)


class Interrupt(Exception):
    pass


def _interrupt_after(phase, table):
    def hook(step_phase, step_table):
        if (step_phase, step_table) == (phase, table):
            raise Interrupt(f"killed after {phase} of {table}")
    return hook


def _watermarks(settings):
    return {r["table_name"]: r["watermark"] for r in replica_query(settings, "SELECT * FROM replication_state")}


def test_interrupted_runs_repeat_safely(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    before = _watermarks(scratch)
    pg(scratch, "UPDATE {s}.users SET loyalty_status = 'Silver' WHERE user_id = 1",
       "INSERT INTO {s}.orders VALUES (5, 3, now(), 99.99, 'Pending', NULL)",
       "INSERT INTO {s}.order_details VALUES (5, 5, 2, 2, 49.99, 99.98)",
       "DELETE FROM {s}.reviews WHERE review_id = 2", "DELETE FROM {s}.loyalty_points WHERE loyalty_id = 2")
    with pytest.raises(Interrupt):
        replicate(spark, scratch, on_step=_interrupt_after("upsert", "orders"))
    assert _watermarks(scratch) == before, "no watermark moves before its table's deletes and reconcile commit"
    assert 5 in [r[0] for r in replica_rows(scratch, TABLES_BY_NAME["orders"])], "upserts up to orders committed"
    with pytest.raises(Interrupt):
        replicate(spark, scratch, on_step=_interrupt_after("reconcile", "reviews"))
    moved = {t for t, w in _watermarks(scratch).items() if w != before[t]}
    assert moved == {"loyalty_points", "reviews"}
    failed = replica_query(scratch, "SELECT status, detail FROM pipeline_runs WHERE table_name IS NULL "
                                    "ORDER BY run_id DESC LIMIT 2")
    assert [r["status"] for r in failed] == ["failed", "failed"] and "killed after" in failed[0]["detail"]
    replicate(spark, scratch)
    assert_replica_equals_source(scratch)
    assert written(replicate(spark, scratch)) == {}


def test_truncate_reloads_the_table_in_full(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "TRUNCATE {s}.loyalty_points",
       "INSERT INTO {s}.loyalty_points VALUES (1, 2, 7, 'Birthday', now()), (50, 1, 3, 'Review', now())")
    results = replicate(spark, scratch)
    assert {n: r.plan.mode for n, r in results.items() if r.plan.mode == "full"} == {"loyalty_points": "full"}
    assert written(results) == {"loyalty_points": (1, 1, 1)}
    assert_replica_equals_source(scratch)


def test_swapped_and_reused_unique_emails(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "UPDATE {s}.users SET email = 'swap' WHERE user_id = 1",
       "UPDATE {s}.users SET email = 'zoe@example.com' WHERE user_id = 2",
       "UPDATE {s}.users SET email = 'jose@example.com' WHERE user_id = 1",
       "DELETE FROM {s}.users WHERE user_id = 3",
       "INSERT INTO {s}.users VALUES (7, 'New', 'Owner', 'lee@example.com', NULL, now(), 'Gold')")
    results = replicate(spark, scratch)
    assert written(results) == {"users": (1, 2, 1)}
    assert_replica_equals_source(scratch)


def test_reconcile_mismatch_fails_naming_the_table_and_the_next_run_heals(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    with db.mysql_connection(scratch) as conn:
        conn.cursor().execute("UPDATE orders SET total_amount = total_amount - 0.01 WHERE order_id = 1")
    with pytest.raises(ReplicationError, match=r"reconcile failed for orders: checksum source=2:\d+ replica=2:"):
        replicate(spark, scratch)
    assert replica_query(scratch, "SELECT status FROM pipeline_runs WHERE table_name = 'orders' "
                                  "ORDER BY run_id DESC LIMIT 1") == [{"status": "failed"}]
    assert _watermarks(scratch)["orders"] is None
    healed = replicate(spark, scratch)
    assert healed["orders"].plan.mode == "full" and written(healed) == {"orders": (0, 1, 0)}
    assert_replica_equals_source(scratch)


def test_rows_the_replica_would_reject_fail_the_run_with_key_and_reason(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "ALTER TABLE {s}.users ALTER COLUMN first_name TYPE varchar(200)",
       f"INSERT INTO {{s}}.users VALUES (8, '{'ü' * 150}', 'Long', 'l@example.com', NULL, now(), 'Gold'),"
       "(9, 'Inf', 'Inity', 'i@example.com', NULL, 'infinity', 'Gold')")
    with pytest.raises(ReplicationError, match="users: 2 row.s. the replica would reject") as failure:
        replicate(spark, scratch)
    assert "key 8: first_name: 150 characters > VARCHAR(100)" in str(failure.value)
    assert "key 9: registration_date:" in str(failure.value)
    rejects = replica_query(scratch, "SELECT row_key, reason FROM replication_rejects ORDER BY row_key")
    assert [r["row_key"] for r in rejects] == ["8", "9"]
    assert [r[0] for r in replica_rows(scratch, TABLES_BY_NAME["users"])] == [1, 2, 3]
    pg(scratch, "UPDATE {s}.users SET first_name = 'Short', registration_date = now() WHERE user_id IN (8, 9)")
    assert written(replicate(spark, scratch)) == {"users": (2, 0, 0)}
    assert_replica_equals_source(scratch)


def test_self_referencing_categories_in_any_key_order(spark, scratch):
    """product_categories references itself and InnoDB checks foreign keys row by row: a child upserted before its
    (higher-keyed) new parent, or a parent deleted in the same statement as its child, must not fail the run."""
    seed(scratch)
    pg(scratch, "INSERT INTO {s}.product_categories VALUES (4, 'Old root', NULL), (5, 'Old child', 4),"
                "(6, 'Old grandchild', 5)")
    replicate(spark, scratch)
    pg(scratch, "INSERT INTO {s}.product_categories VALUES (30, 'New root', NULL)",
       "UPDATE {s}.product_categories SET parent_category_id = 30 WHERE category_id = 2",
       "DELETE FROM {s}.product_categories WHERE category_id IN (6, 5, 4)")
    assert written(replicate(spark, scratch)) == {"product_categories": (1, 1, 3)}
    assert_replica_equals_source(scratch)
    pg(scratch, "INSERT INTO {s}.product_categories VALUES (7, 'Child first', NULL), (40, 'Parent later', NULL)",
       "UPDATE {s}.product_categories SET parent_category_id = 40 WHERE category_id = 7")
    replicate(spark, scratch)
    pg(scratch, "DELETE FROM {s}.product_categories WHERE category_id IN (7, 40)")
    assert written(replicate(spark, scratch, force_full=True)) == {"product_categories": (0, 0, 2)}
    assert_replica_equals_source(scratch)
