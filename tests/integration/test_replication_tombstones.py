"""Pruning the source's tombstones against real Postgres and MariaDB (code/shopflow/replication/tombstones.py)."""
from __future__ import annotations

import dataclasses

import pytest
from replication_support import assert_replica_equals_source, pg, scratch, seed  # noqa: F401

from postgresdb.models import TABLES
from shopflow import db
from shopflow.replication import replicate

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
