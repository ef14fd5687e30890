"""Pruning the source's tombstones against real Postgres and MariaDB (code/shopflow/replication/tombstones.py)."""
from __future__ import annotations

import dataclasses

import pytest
from replication_support import assert_replica_equals_source, pg, scratch, seed  # noqa: F401

from postgresdb.models import TABLES
from shopflow import db
from shopflow.replication import replicate, tombstones

pytestmark = pytest.mark.integration


def _tombstones(settings) -> tuple[list[tuple], dict[str, int]]:
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT table_name, row_id FROM {settings.POSTGRES_SCHEMA}.deleted_rows ORDER BY 1, 2")
        tombstones = cur.fetchall()
        cur.execute(f"SELECT table_name, pruned_below FROM {settings.POSTGRES_SCHEMA}.deleted_rows_horizon")
        return tombstones, dict(cur.fetchall())


def _deleting_txid(settings) -> int:
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT DISTINCT change_txid FROM {settings.POSTGRES_SCHEMA}.deleted_rows")
        (txid,), = cur.fetchall()
        return txid


@pytest.fixture()
def second_replica(scratch, mysql):  # noqa: F811
    """Another MySQL database replicating the same scratch source."""
    settings = dataclasses.replace(scratch, MYSQL_DATABASE=f"{scratch.MYSQL_DATABASE}_b")
    with db.mysql_connection(mysql, autocommit=True) as conn:
        conn.cursor().execute(f"CREATE DATABASE {settings.MYSQL_DATABASE}")
    yield settings
    with db.mysql_connection(mysql, autocommit=True) as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {settings.MYSQL_DATABASE}")


def test_consumed_tombstones_are_pruned_after_the_retention_and_a_replica_behind_them_reloads_in_full(
        spark, scratch, second_replica):  # noqa: F811
    seed(scratch)
    at_once = dataclasses.replace(scratch, REPLICATION_TOMBSTONE_RETENTION_HOURS=0)
    replicate(spark, scratch)
    replicate(spark, second_replica)
    pg(scratch, "DELETE FROM {s}.reviews WHERE review_id = 2", "DELETE FROM {s}.loyalty_points WHERE loyalty_id = 2")
    deleting = _deleting_txid(scratch)

    replicate(spark, at_once)  # reads the tombstones: the replica's watermarks pass them only now
    replicate(spark, scratch)  # every table past them, but they are younger than the default retention (168 h)
    assert _tombstones(scratch) == ([("loyalty_points", 2), ("reviews", 2)], {})

    pruning = replicate(spark, at_once)
    assert _tombstones(scratch) == ([], {"loyalty_points": deleting + 1, "reviews": deleting + 1})
    assert {r.plan.mode for r in pruning.values()} == {"incremental"}
    assert_replica_equals_source(scratch)

    behind = replicate(spark, second_replica)  # its watermarks are older than the deletes it can no longer read
    assert {name for name, r in behind.items() if r.plan.mode == "full"} == {"loyalty_points", "reviews"}
    assert "pruned" in behind["reviews"].plan.reason
    assert behind["reviews"].deleted == behind["loyalty_points"].deleted == 1
    assert_replica_equals_source(second_replica)
    again = replicate(spark, second_replica)
    assert {r.plan.mode for r in again.values()} == {"incremental"}, "its new watermarks are past the horizon"
    assert {r.name for r in again.values()} == {t.name for t in TABLES}


def test_a_source_without_the_horizon_table_is_replicated_and_its_tombstones_kept(spark, scratch, caplog):  # noqa: F811
    """A source whose DDL predates pruning (no `deleted_rows_horizon` until `make up` applies it again): runs go on
    as before, and the pruning says why it did nothing."""
    seed(scratch)
    pg(scratch, "DROP TABLE {s}.deleted_rows_horizon")
    at_once = dataclasses.replace(scratch, REPLICATION_TOMBSTONE_RETENTION_HOURS=0)
    replicate(spark, at_once)
    pg(scratch, "DELETE FROM {s}.reviews WHERE review_id = 2")
    replicate(spark, at_once)
    with caplog.at_level("WARNING", logger="shopflow.replication"):
        third = replicate(spark, at_once)
    assert {r.plan.mode for r in third.values()} == {"incremental"}
    with db.pg_connection(scratch) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT row_id FROM {scratch.POSTGRES_SCHEMA}.deleted_rows WHERE table_name = 'reviews'")
        assert cur.fetchall() == [(2,)]
    assert "tombstones not pruned" in caplog.text and "deleted_rows_horizon" in caplog.text
    assert_replica_equals_source(scratch)


def _add_tombstones(settings, *rows: tuple[str, int, int, int]) -> None:
    """(table, row id, hours ago, change_txid) each."""
    pg(settings, *(f"INSERT INTO {{s}}.deleted_rows (table_name, row_id, deleted_at, change_txid) VALUES "
                   f"('{table}', {row}, clock_timestamp() - interval '{hours} hours', {txid})"
                   for table, row, hours, txid in rows))


def test_prune_takes_what_is_below_the_watermark_and_past_the_retention_and_never_lowers_a_horizon(scratch):  # noqa
    week = dataclasses.replace(scratch, REPLICATION_TOMBSTONE_RETENTION_HOURS=168)
    _add_tombstones(scratch, ("reviews", 1, 169, 100), ("reviews", 2, 167, 101), ("orders", 3, 169, 200))
    assert tombstones.prune(week, below=150) == (1, 1)  # 2 is too young, 3 not consumed yet
    assert _tombstones(scratch) == ([("orders", 3), ("reviews", 2)], {"reviews": 101})
    assert tombstones.prune(week, below=1_000) == (1, 1)
    assert _tombstones(scratch) == ([("reviews", 2)], {"orders": 201, "reviews": 101})
    _add_tombstones(scratch, ("reviews", 4, 200, 50))  # older than what was pruned of reviews
    assert tombstones.prune(week, below=60) == (1, 1)
    assert _tombstones(scratch)[1] == {"orders": 201, "reviews": 101}, "a horizon is never lowered"
    _add_tombstones(scratch, *(("users", n, 300, 300 + n) for n in range(5)))
    assert tombstones.prune(week, below=1_000, batch=3) == (3, 1)
    assert tombstones.prune(week, below=1_000, batch=3) == (2, 1)
    assert _tombstones(scratch) == ([("reviews", 2)], {"orders": 201, "reviews": 101, "users": 305})


def test_pruning_goes_below_the_lowest_watermark_and_not_at_all_while_a_table_has_none(scratch, caplog):  # noqa
    at_once = dataclasses.replace(scratch, REPLICATION_TOMBSTONE_RETENTION_HOURS=0)
    _add_tombstones(scratch, ("reviews", 1, 1, 100), ("orders", 2, 1, 200))
    with caplog.at_level("INFO", logger="shopflow.replication"):
        with tombstones.pruning(at_once, [500, None, 900]):
            pass
        with tombstones.pruning(at_once, []):
            pass
    assert _tombstones(scratch) == ([("orders", 2), ("reviews", 1)], {}) and "tombstones" not in caplog.text
    with tombstones.pruning(at_once, [900, 150, 500]):
        pass
    assert _tombstones(scratch) == ([("orders", 2)], {"reviews": 101})
