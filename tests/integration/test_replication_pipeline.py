"""Replication against real Postgres and MariaDB, in a scratch schema and a scratch database per test.

Equality is checked row by row (`assert_replica_equals_source`), independently of the job's own checksums.
Rows read may exceed the rows changed (a transaction of another session open at a run's snapshot holds the
watermark back, so the next run re-reads a few rows): assertions use rows written/deleted, which are exact.
"""
from __future__ import annotations

import dataclasses

import pytest
from replication_support import (LONG_REVIEW, assert_replica_equals_source, pg, replica_query, replica_rows,  # noqa: F401
                                 scratch, seed, source_rows, written)

from postgresdb import ddl as postgresdb_ddl
from postgresdb.models import TABLES, TABLES_BY_NAME
from shopflow import db
from shopflow.replication import replicate
from shopflow.replication.target import Replica

pytestmark = pytest.mark.integration


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
    assert {str(r.checksum) for r in second.values()} == {"0:0"}  # no changed rows to hash
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


def test_a_direct_load_is_analyzed_before_its_rows_are_hashed(spark, scratch, monkeypatch):
    """MariaDB sizes the checksum's sort buffer by the table's row estimate: hashed with the statistics of the
    empty table it was, a freshly loaded order_details sorted in hundreds of merge passes (README, replication
    "Checksum"). So each direct load's estimate must already count its rows when its replica side is hashed."""
    seed(scratch)
    estimates: dict[str, int] = {}
    checksum = Replica.checksum

    def observed(replica, table, split=1):
        with db.mysql_connection(scratch) as conn:
            cur = conn.cursor()
            cur.execute("SELECT table_rows FROM information_schema.tables WHERE table_schema = %s "
                        "AND table_name = %s", (scratch.MYSQL_DATABASE, table.name))
            estimates[table.name] = cur.fetchone()[0]
        return checksum(replica, table, split)

    monkeypatch.setattr(Replica, "checksum", observed)
    results = replicate(spark, scratch)
    assert all(result.direct for result in results.values())
    assert estimates == {table.name: len(source_rows(scratch, table)) for table in TABLES}


def test_replica_tables_keep_statistics_fresh_without_innodb_background_recalculation(spark, scratch):
    """STATS_AUTO_RECALC=0 (InnoDB's recalculation thread spins during a bulk load); a table made before the DDL
    said so gets it on the next run, and each run that changed a table leaves fresh statistics (ANALYZE TABLE)."""
    seed(scratch)
    with db.mysql_connection(scratch, autocommit=True) as conn:  # an older replica: users without the option
        cur = conn.cursor()
        cur.execute(postgresdb_ddl.mysql_table_ddl(TABLES_BY_NAME["users"]).replace(" STATS_AUTO_RECALC=0", ""))
    replicate(spark, scratch)
    with db.mysql_connection(scratch) as conn:
        cur = conn.cursor()
        cur.execute("SELECT table_name, create_options, table_rows FROM information_schema.tables "
                    "WHERE table_schema = %s", (scratch.MYSQL_DATABASE,))
        rows = cur.fetchall()
        options = {name: create_options for name, create_options, _ in rows}
        stats = {name: estimate for name, _, estimate in rows}  # InnoDB's persistent statistics
    for table in TABLES:
        for name in (table.name, f"stage_{table.name}"):
            assert "stats_auto_recalc=0" in options[name].lower(), name
        assert stats[table.name] == len(source_rows(scratch, table)), table.name


@pytest.mark.parametrize("column, server_value, reason", [
    # initdb gives a new cluster's tables the OIDs the old one's had, and its transaction ids may have passed the
    # stored watermark by the next run: the cluster's system identifier tells it apart
    ("source_system_id", "SELECT system_identifier FROM pg_control_system()",
     "another Postgres cluster (system identifier {stored} -> {now})"),
    # a restore to a point in time, or a promoted standby, keeps the system identifier and the OIDs but starts a new
    # WAL timeline, and uses the transaction ids after its restore point again: rows changed since could carry ids
    # below the stored watermark, which incremental runs missed until the whole-table check
    ("source_timeline", "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint",
     "the source's timeline changed ({stored} -> {now})"),
])
def test_another_source_cluster_or_timeline_reloads_every_table_in_full(spark, scratch, column, server_value, reason):
    """The source's identity is stored with each table's state; here the stored one is changed, as a new cluster or
    a restore changes the server's. A replica whose state predates the column gets it, and stays incremental
    (nothing to compare with)."""
    seed(scratch)
    replicate(spark, scratch)
    with db.pg_connection(scratch) as conn, conn.cursor() as cur:
        cur.execute(server_value)
        now = cur.fetchone()[0]
    stored = replica_query(scratch, f"SELECT DISTINCT {column} FROM replication_state")
    assert stored == [{column: now}]
    with db.mysql_connection(scratch, autocommit=True) as conn:
        conn.cursor().execute(f"UPDATE replication_state SET {column} = {column} + 1")
    rebuilt = replicate(spark, scratch)
    assert {r.plan.mode for r in rebuilt.values()} == {"full"}
    assert all(reason.format(stored=now + 1, now=now) in r.plan.reason for r in rebuilt.values())
    assert_replica_equals_source(scratch)
    with db.mysql_connection(scratch, autocommit=True) as conn:  # a replica of an older version: the column is added
        conn.cursor().execute(f"ALTER TABLE replication_state DROP COLUMN {column}")
    assert {r.plan.mode for r in replicate(spark, scratch).values()} == {"incremental"}
    assert replica_query(scratch, f"SELECT DISTINCT {column} FROM replication_state") == stored


def test_the_jdbc_path_reads_keys_up_to_the_largest_bigint(spark, scratch):
    """Its reads are ranges of the key up to one past the largest: past 2^63 - 1, a NumberFormatException at every
    run (the copy path reads no such bound)."""
    settings = dataclasses.replace(scratch, REPLICATION_WRITE_PATH="jdbc")
    seed(settings)
    pg(settings, "INSERT INTO {s}.users VALUES (9223372036854775807, 'Max', 'K', 'max@x.io', NULL, now(), 'Gold')")
    replicate(spark, settings)
    assert_replica_equals_source(settings)


def test_the_jdbc_path_keeps_dates_java_s_old_calendar_lacks(spark, scratch):
    """1582-10-05 to 1582-10-14 exist in Postgres' calendar, not in the Julian-Gregorian one of JDBC's timestamps:
    read as such they became ten days later in the replica, and every run failed its check and reloaded the same."""
    settings = dataclasses.replace(scratch, REPLICATION_WRITE_PATH="jdbc")
    seed(settings)
    pg(settings, "INSERT INTO {s}.users VALUES (10, 'Old', 'K', 'old@x.io', NULL, '1582-10-10 12:00:00.000001+00', "
                 "'Gold')", "UPDATE {s}.orders SET delivery_date = '1000-01-01 00:00:00+00' WHERE order_id = 1")
    replicate(spark, settings)
    assert_replica_equals_source(settings)
