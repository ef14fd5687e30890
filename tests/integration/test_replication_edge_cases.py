"""Replication edge cases against real Postgres and MariaDB: interrupted runs, TRUNCATE, unique-key swaps, rows the
replica would reject, self-referencing categories (reconcile mismatches: test_replication_verification.py)."""
from __future__ import annotations

import pytest
from replication_support import (LONG_REVIEW, assert_replica_equals_source, pg, replica_query, replica_rows,  # noqa: F401
                                 scratch, seed, source_rows, written)

from postgresdb.models import TABLES_BY_NAME
from shopflow import db
from shopflow.replication import ReplicationError, ReplicationRefused, copy_load, replicate
from shopflow.replication.target import Replica
from shopflow.stack.bootstrap import mariadb_root

pytestmark = pytest.mark.integration


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


def test_tables_reconciled_while_the_big_one_loads_survive_its_failure(spark, scratch, monkeypatch):
    """The biggest direct load (here users, 3 rows, with the threshold lowered) gets a Spark job of its own; tables
    that need none of its rows (categories, then products) are reconciled and committed meanwhile. A failure after
    that empties only the tables not reconciled, so the next run reloads just those."""
    seed(scratch)
    monkeypatch.setattr(copy_load, "BIG_LOAD_ROWS", 1)
    with pytest.raises(Interrupt):
        replicate(spark, scratch, on_step=_interrupt_after("reconcile", "products"))
    committed = {t for t, w in _watermarks(scratch).items() if w is not None}
    assert committed == {"product_categories", "products"}
    runs = replica_query(scratch, "SELECT table_name, status FROM pipeline_runs WHERE table_name IS NOT NULL "
                                  "ORDER BY run_id")
    assert [(r["table_name"], r["status"]) for r in runs] == [("product_categories", "ok"), ("products", "ok")]
    for name in ("users", "orders", "order_details", "reviews", "loyalty_points"):
        assert replica_rows(scratch, TABLES_BY_NAME[name]) == [], f"{name}: loaded directly, not reconciled"
    assert len(replica_rows(scratch, TABLES_BY_NAME["products"])) == 2

    results = replicate(spark, scratch)
    assert {n for n, r in results.items() if r.plan.mode == "full"} == {
        "users", "orders", "order_details", "reviews", "loyalty_points"}
    assert written(results) == {"users": (3, 0, 0), "orders": (2, 0, 0), "order_details": (2, 0, 0),
                                "reviews": (3, 0, 0), "loyalty_points": (2, 0, 0)}
    assert_replica_equals_source(scratch)


def test_the_big_table_hashed_ahead_still_fails_on_a_replica_changed_after_its_load(spark, scratch, monkeypatch):
    """The big load's source checksum is taken while it loads; a replica row changed after the load (by hand,
    here) must still fail that table's reconcile."""
    seed(scratch)
    monkeypatch.setattr(copy_load, "BIG_LOAD_ROWS", 1)

    def tamper(phase, table):
        if (phase, table) == ("upsert", "users"):
            with db.mysql_connection(scratch, autocommit=True) as conn:
                conn.cursor().execute("UPDATE users SET first_name = 'Mallory' WHERE user_id = 1")

    with pytest.raises(ReplicationError, match="reconcile failed for users") as failure:
        replicate(spark, scratch, on_step=tamper)
    assert not isinstance(failure.value, ReplicationRefused), "a retry reloads the table: it must be retried"


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


def test_a_run_failing_after_a_reused_email_leaves_no_orphan_rows(spark, scratch):
    """User 2 is deleted with its rows and a new user takes its email: the merge of users must make room for it
    without deleting user 2 yet, whose orders are deleted only in phase B. A run failing in between (here after
    the merge of users) must leave the replica's foreign keys whole."""
    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "DELETE FROM {s}.order_details WHERE order_id = 2", "DELETE FROM {s}.orders WHERE user_id = 2",
       "DELETE FROM {s}.reviews WHERE user_id = 2", "DELETE FROM {s}.loyalty_points WHERE user_id = 2",
       "DELETE FROM {s}.users WHERE user_id = 2",
       "INSERT INTO {s}.users VALUES (8, 'New', 'Owner', 'jose@example.com', NULL, now(), 'Gold')")
    with pytest.raises(Interrupt):
        replicate(spark, scratch, on_step=_interrupt_after("upsert", "users"))
    for child, column in (("orders", "user_id"), ("reviews", "user_id"), ("loyalty_points", "user_id")):
        orphans = replica_query(scratch, f"SELECT c.{column} FROM {child} c LEFT JOIN users u USING (user_id) "
                                         "WHERE u.user_id IS NULL")
        assert orphans == [], f"{child}: rows whose user is gone from the replica"
    assert [r[0] for r in replica_rows(scratch, TABLES_BY_NAME["users"])] == [1, 2, 3, 8]
    results = replicate(spark, scratch)
    assert results["users"].deleted == 1 and results["orders"].deleted == 1
    assert_replica_equals_source(scratch)


def test_rows_the_replica_would_reject_fail_the_run_with_key_and_reason(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "ALTER TABLE {s}.users ALTER COLUMN first_name TYPE varchar(200)",
       # 'infinity' written before the source refused it (postgresdb/README.md; the check is NOT VALID)
       "ALTER TABLE {s}.users DROP CONSTRAINT ck_users_registration_date_datetime",
       f"INSERT INTO {{s}}.users VALUES (8, '{'ü' * 150}', 'Long', 'l@example.com', NULL, now(), 'Gold'),"
       "(9, 'Inf', 'Inity', 'i@example.com', NULL, 'infinity', 'Gold'),"
       "(7, 'Minus', 'Inf', 'm@example.com', NULL, '-infinity', 'Gold'),"
       "(6, 'Far', 'Future', 'f@example.com', NULL, '294276-12-31 00:00:00+00', 'Gold')")  # past 2^63 µs
    with pytest.raises(ReplicationRefused, match="users: 4 row.s. the replica would reject") as failure:
        replicate(spark, scratch)
    assert "key 8: first_name: 150 characters > VARCHAR(100)" in str(failure.value)
    assert all(f"key {key}: registration_date:" in str(failure.value) for key in (6, 7, 9))
    rejects = replica_query(scratch, "SELECT row_key, reason FROM replication_rejects ORDER BY row_key")
    assert [r["row_key"] for r in rejects] == ["6", "7", "8", "9"]
    assert [r[0] for r in replica_rows(scratch, TABLES_BY_NAME["users"])] == [1, 2, 3]
    pg(scratch, "UPDATE {s}.users SET first_name = 'Short', registration_date = now() WHERE user_id IN (6, 7, 8, 9)")
    assert written(replicate(spark, scratch)) == {"users": (4, 0, 0)}
    assert_replica_equals_source(scratch)


def _replica_ddl(settings, *statements):
    with db.mysql_connection(settings, autocommit=True) as conn:
        for statement in statements:
            conn.cursor().execute(statement)


def test_tables_lacking_a_model_column_fail_the_run_before_anything_is_written(spark, scratch):
    """Replication reads and writes the models' columns by name: a column renamed or dropped in the source or the
    replica stops the whole run up front, naming each table and column; a replica table that lost a column is loaded
    in full once the column is back, and one dropped outright is made again and loaded in full at once."""
    seed(scratch)
    replicate(spark, scratch)
    before = _watermarks(scratch)
    pg(scratch, "UPDATE {s}.users SET loyalty_status = 'Silver' WHERE user_id = 1",
       "ALTER TABLE {s}.products RENAME COLUMN description TO descr",
       "ALTER TABLE {s}.orders DROP COLUMN change_txid CASCADE")  # its stamp_ trigger depends on it
    _replica_ddl(scratch, "ALTER TABLE reviews DROP COLUMN review_text", "DROP TABLE loyalty_points")
    with pytest.raises(ReplicationRefused, match=r"nothing replicated: \w+\.products has no column description; "
                       rf"\w+\.orders has no column change_txid; {scratch.MYSQL_DATABASE}\.reviews has no column "
                       r"review_text\. "):
        replicate(spark, scratch)
    before.pop("loyalty_points")  # made again: its stored state is gone
    # orders: its stamp_ trigger went with the column, so its changes were not tracked: loaded in full once back;
    # products: a column that comes back holds other values (DDL moves no change_txid)
    assert _watermarks(scratch) == {**before, "reviews": None, "orders": None, "products": None}
    assert [r[6] for r in replica_rows(scratch, TABLES_BY_NAME["users"])][:1] == ["Gold"], "users not written"
    pg(scratch, "ALTER TABLE {s}.products RENAME COLUMN descr TO description",
       "ALTER TABLE {s}.orders ADD COLUMN change_txid bigint NOT NULL DEFAULT txid_current()")
    db.apply_postgres_schema(scratch)  # the trigger back, as `make up` makes it
    _replica_ddl(scratch, "ALTER TABLE reviews ADD COLUMN review_text LONGTEXT NULL AFTER rating")
    results = replicate(spark, scratch)
    assert {name for name, r in results.items() if r.plan.mode == "full"} == {"reviews", "loyalty_points", "orders",
                                                                               "products"}
    assert written(results)["users"] == (0, 1, 0)
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


def test_the_copy_path_says_when_the_server_refuses_local_infile(scratch):
    """MySQL 8 ships with local_infile off: the run says what to change before any work, not a traceback from a
    Spark task. The setting is server-wide, so it is off only for this one check."""
    with db.mysql_connection(scratch, autocommit=True) as conn:
        replica = Replica(scratch, conn)
        replica.check_local_infile()
        try:
            mariadb_root(scratch, "SET GLOBAL local_infile = 0;")
            with pytest.raises(ReplicationRefused, match=r"has local_infile off, which REPLICATION_WRITE_PATH=copy "
                                                       r"needs .* or set REPLICATION_WRITE_PATH=jdbc \(slower\)"):
                replica.check_local_infile()
        finally:
            mariadb_root(scratch, "SET GLOBAL local_infile = 1;")
