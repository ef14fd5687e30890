"""The block checksums against real Postgres and MariaDB: both Postgres forms (grouped, and along the key for a table
in key order) and the replica's agree at block edges, for negative and sparse keys and empty tables; the replica's
side split into key ranges adds up to the whole; a checksum query's warning is an error."""
from __future__ import annotations

import pytest
from replication_support import assert_replica_equals_source, pg, scratch, seed, whole_checksums  # noqa: F401

from postgresdb.models import TABLES, TABLES_BY_NAME
from shopflow import db
from shopflow.replication import replicate
from shopflow.replication.checksum import checksum_from_row, postgres_checksum_sql
from shopflow.replication.source import open_snapshot
from shopflow.replication.target import Replica, fetch_checksum

pytestmark = pytest.mark.integration
LOW, HIGH = -2**63, 2**63 - 1  # bigint's range


def test_a_checksum_split_into_key_ranges_equals_the_whole_one(spark, scratch):
    """The big direct load's replica side is hashed as key ranges on several connections: the sum must be the
    single query's checksum (sparse keys across several blocks, more ranges than keys, an empty table) and must see
    a changed row. The run's own reconcile proves both servers agree on blocks of several rows."""
    from shopflow.replication.checksum import EMPTY

    seed(scratch)
    pg(scratch, "DELETE FROM {s}.reviews WHERE review_id = 2",  # a gap in the keys
       "INSERT INTO {s}.reviews SELECT k, 1, 2, 3, 'r' || k, '2024-03-03 00:00:00+00' "
       "FROM unnest(ARRAY[99, 100, 101, 250, 1999]) k",  # blocks of 100 keys (longtext)
       "INSERT INTO {s}.loyalty_points SELECT k, 2, k, 'Order', '2024-03-03 00:00:00+00' "
       "FROM unnest(ARRAY[999, 1000, 1001, 2500, 2999, 7001]) k")  # blocks of 1000 keys
    assert replicate(spark, scratch)["loyalty_points"].checksum.rows == 8
    with db.mysql_connection(scratch) as conn:
        replica = Replica(scratch, conn)
        for table in TABLES:
            whole = replica.checksum(table)
            assert [replica.checksum(table, split) for split in (2, 3, 7)] == [whole] * 3, table.name
        reviews = TABLES_BY_NAME["reviews"]
        before = replica.checksum(reviews, 2)
        with db.mysql_connection(scratch, autocommit=True) as other:
            other.cursor().execute("UPDATE reviews SET rating = 6 - rating WHERE review_id = 3")
        assert replica.checksum(reviews, 2) != before
        assert replica.checksum(reviews, 2) == replica.checksum(reviews)
        with db.mysql_connection(scratch, autocommit=True) as other:
            other.cursor().execute("DELETE FROM loyalty_points")
        assert replica.checksum(TABLES_BY_NAME["loyalty_points"], 3) == EMPTY


def test_the_sources_checksum_along_the_key_equals_the_grouped_one(spark, scratch):
    """A whole source table in key order is hashed block by block along its key, other rows by one grouped sort:
    both forms, and the replica, must agree for keys on both sides of every block edge, negative keys (block 0 holds
    -999..999, integer division truncates), sparse keys, the first and last blocks of bigint's range (whose bounds
    would overflow) and an empty table."""
    seed(scratch)
    pg(scratch, "INSERT INTO {s}.loyalty_points SELECT k, 2, 5, 'Order', '2024-03-03 00:00:00+00' FROM unnest(ARRAY["
                "-2001, -2000, -1999, -1001, -1000, -999, -1, 0, 999, 1000, 1999, 2000, 5000000000, "
                f"{LOW}, {LOW} + 999, {LOW} + 1000, {HIGH} - 1000, {HIGH} - 999, {HIGH}]) k",
       "INSERT INTO {s}.reviews SELECT k, 1, 2, 3, 'r' || k, '2024-03-03 00:00:00+00' "
       "FROM unnest(ARRAY[-101, -100, -99, 0, 99, 100, 12345678]) k",  # blocks of 100 keys (longtext)
       "DELETE FROM {s}.order_details")
    replicate(spark, scratch)
    with db.pg_connection(scratch) as conn, conn.cursor() as cur:
        def checksum(table, along_key: bool):
            cur.execute(postgres_checksum_sql(table, scratch.POSTGRES_SCHEMA, along_key=along_key))
            return checksum_from_row(cur.fetchone())

        for table in TABLES:
            cur.execute(f"SELECT count(*) FROM {scratch.POSTGRES_SCHEMA}.{table.name}")
            rows, walked = cur.fetchone()[0], checksum(table, True)
            assert walked == checksum(table, False) and walked.rows == rows, table.name
    sums = whole_checksums(scratch)
    assert all(source == replica for source, replica in sums.values()), sums
    assert sums["order_details"][0] == "0:0" and sums["loyalty_points"][0].startswith("21:")


def test_the_source_hashes_along_the_key_only_a_table_in_key_order(spark, scratch, monkeypatch):
    """Reading the heap in key order is slower than one sort when the rows lie elsewhere: the walk is taken only
    when the planner's statistics say the rows are in key order (none yet: not taken), and a run's reconcile
    passes either way."""
    from shopflow.replication import source

    loyalty, walked = TABLES_BY_NAME["loyalty_points"], []

    def spied(table, schema, where, along_key):  # which form the run's whole checksum of loyalty_points took
        if table is loyalty and not where:
            walked.append(along_key)
        return postgres_checksum_sql(table, schema, where, along_key)

    monkeypatch.setattr(source, "postgres_checksum_sql", spied)
    seed(scratch)
    pg(scratch, "INSERT INTO {s}.users SELECT k, 'U', 'V', 'u' || k || '@example.com', NULL, now(), 'Gold' "
                "FROM generate_series(10, 40) k")
    insert = ("INSERT INTO {s}.loyalty_points SELECT k, 10 + k % 30, k % 50, 'Order', now() "
              "FROM generate_series(10, 5000) k ORDER BY ")
    pg(scratch, "ALTER TABLE {s}.loyalty_points SET (autovacuum_enabled = off)", insert + "k")  # analyzed by hand
    with open_snapshot(scratch) as snapshot:
        assert not snapshot.in_key_order(loyalty)  # not analyzed yet
    pg(scratch, "ANALYZE {s}.loyalty_points")
    with open_snapshot(scratch) as snapshot:
        assert snapshot.in_key_order(loyalty)
    assert replicate(spark, scratch)["loyalty_points"].checksum.rows == 4993
    assert walked == [True]
    pg(scratch, "DELETE FROM {s}.loyalty_points WHERE loyalty_id >= 10", insert + "random()",
       "ANALYZE {s}.loyalty_points")
    with open_snapshot(scratch) as snapshot:
        assert not snapshot.in_key_order(loyalty)
    assert replicate(spark, scratch, force_full=True)["loyalty_points"].checksum.rows == 4993
    assert walked == [True, False]
    assert_replica_equals_source(scratch)


def test_a_warning_from_a_checksum_query_is_an_error_not_a_checksum(scratch):
    """GROUP_CONCAT cuts a block longer than max_allowed_packet with a warning: that must fail loudly, not compare
    a cut text (here a warning of another kind stands in for it)."""
    with db.mysql_connection(scratch) as conn:
        with pytest.raises(RuntimeError, match="orders: the replica's checksum query warned .*max_allowed_packet"):
            fetch_checksum(TABLES_BY_NAME["orders"], conn.cursor(), "SELECT 1, CAST('7x' AS UNSIGNED)")
        assert fetch_checksum(TABLES_BY_NAME["orders"], conn.cursor(), "SELECT 1, CAST('7' AS UNSIGNED)").hash_sum == 7


def test_a_review_longer_than_mariadbs_default_packet_is_replicated(spark, scratch):
    """One 17 MB review made its block's checksum text longer than MariaDB's default max_allowed_packet (16 MB):
    every run failed (exit 3) until the server's setting was raised. The stack starts MariaDB allowing 1 GB."""
    seed(scratch)
    pg(scratch, "INSERT INTO {s}.reviews VALUES (100, 1, 1, 5, repeat('x', 17 * 1024 * 1024) || '✨', now())")
    assert replicate(spark, scratch)["reviews"].checksum.rows == 4
    assert_replica_equals_source(scratch)
