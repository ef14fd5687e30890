"""The copy path and the two reconcile modes against real Postgres and MariaDB: awkward text through CSV, a copy
task's ranges on one connection pair, a failed first load leaving no orphans, changed-rows verification, and what it
catches. The block checksums themselves: test_replication_checksums.py."""
from __future__ import annotations

import dataclasses
import threading

import pytest
from replication_support import (assert_replica_equals_source, pg, replica_query, replica_rows,  # noqa: F401
                                 scratch, seed, source_rows, whole_checksums, written)

from postgresdb.models import TABLES, TABLES_BY_NAME
from shopflow import db
from shopflow.replication import ReplicationError, replicate
from shopflow.replication.checksum import checksum_from_row, mysql_checksum_sql
from shopflow.replication.copy_load import KeyRange, copy_ranges
from shopflow.replication.plan import plan_table
from shopflow.replication.source import open_snapshot
from shopflow.replication.target import Replica

pytestmark = pytest.mark.integration

# Every character CSV or the two servers' escape rules could mangle, plus the text 'NULL' and an empty string.
LATE_S = 3  # a count no write of its table released: later than any merge that did not wait for it
AWKWARD = ['a "quoted", comma', 'line\nbreak', 'crlf\r\nend', 'back\\slash \\N \\t', 'tab\there', 'form\ffeed',
           'NULL', '', '"', '\\', 'trailing space ', '🎉 ünï', '\x0b\x07bell']


def _stored_states(settings):
    return {r["table_name"]: (r["checksum"], r["verified_at"], r["rows_total"])
            for r in replica_query(settings, "SELECT * FROM replication_state")}


def test_awkward_text_survives_the_copy_path(spark, scratch):
    seed(scratch)
    values = ", ".join(f"({10 + i}, 2, 1, 3, %s, '2024-05-01 00:00:00+00')" for i in range(len(AWKWARD)))
    with db.pg_connection(scratch) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {scratch.POSTGRES_SCHEMA}.reviews VALUES {values}", AWKWARD)
    first = replicate(spark, scratch)
    assert first["reviews"].direct and first["reviews"].inserted == 3 + len(AWKWARD)
    assert [r[4] for r in replica_rows(scratch, TABLES_BY_NAME["reviews"])][3:] == AWKWARD
    pg(scratch, "UPDATE {s}.reviews SET review_text = review_text || E'\\n\"x\"' WHERE review_id >= 10")
    second = replicate(spark, scratch)
    assert not second["reviews"].direct and second["reviews"].updated == len(AWKWARD)
    assert_replica_equals_source(scratch)


def test_a_failed_first_load_leaves_no_orphan_rows(spark, scratch):
    seed(scratch)
    pg(scratch, "ALTER TABLE {s}.users ALTER COLUMN first_name TYPE varchar(200)",
       f"UPDATE {{s}}.users SET first_name = '{'ü' * 150}' WHERE user_id = 2")
    with pytest.raises(ReplicationError, match="users: 1 row.s. the replica would reject"):
        replicate(spark, scratch)
    counts = {t.name: replica_query(scratch, f"SELECT COUNT(*) AS n FROM `{t.name}`")[0]["n"] for t in TABLES}
    assert counts == {t.name: 0 for t in TABLES}
    pg(scratch, "UPDATE {s}.users SET first_name = 'Short' WHERE user_id = 2")
    replicate(spark, scratch)
    assert_replica_equals_source(scratch)


def test_incremental_runs_hash_only_changed_rows_and_keep_the_last_whole_checksum(spark, scratch):
    seed(scratch)
    first = replicate(spark, scratch)
    assert all(r.verify_all for r in first.values())
    # the changed-rows checksums below count exactly the rows changed next: first past the seeded rows
    _replicate_until_nothing_to_read(spark, scratch, "users", "orders", "reviews")
    stored = _stored_states(scratch)
    pg(scratch, "UPDATE {s}.orders SET total_amount = 1.25 WHERE order_id = 2",
       "UPDATE {s}.users SET email = 'taken@example.com' WHERE user_id = 3",
       "UPDATE {s}.users SET email = 'lee@example.com' WHERE user_id = 1",
       "INSERT INTO {s}.users VALUES (9, 'New', 'User', 'zoe@example.com', NULL, now(), 'Gold')",
       "DELETE FROM {s}.reviews WHERE review_id = 3", "DELETE FROM {s}.loyalty_points")
    second = replicate(spark, scratch)
    assert not any(r.verify_all for r in second.values())
    assert written(second) == {"users": (1, 2, 0), "orders": (0, 1, 0), "reviews": (0, 0, 1),
                               "loyalty_points": (0, 0, 2)}
    assert [second[name].checksum.rows for name in ("users", "orders", "reviews")] == [3, 1, 0]  # changed rows
    # read ahead of phase B: the replica counted before the run changed it; phase B adds the inserts, minus deletes
    assert [(second[n].replica_rows.result(), second[n].inserted, second[n].deleted)
            for n in ("users", "reviews", "loyalty_points")] == [(3, 1, 0), (3, 0, 1), (2, 0, 2)]
    # the source's changed-rows checksum (the run's snapshot) is the replica's order 2 hashed here on its own
    with db.mysql_connection(scratch) as conn:
        cur = conn.cursor()
        cur.execute(mysql_checksum_sql(TABLES_BY_NAME["orders"], where=" WHERE order_id = 2"))
        replica_order_2 = checksum_from_row(cur.fetchone())
    assert replica_order_2.rows == 1 and second["orders"].source_side.result() == (replica_order_2, 2)
    assert_replica_equals_source(scratch)
    rows_now = {t.name: len(source_rows(scratch, t)) for t in TABLES}
    assert _stored_states(scratch) == {name: (checksum, verified_at, rows_now[name])
                                       for name, (checksum, verified_at, _) in stored.items()}
    third = replicate(spark, dataclasses.replace(scratch, REPLICATION_VERIFY_ALL_HOURS=0))
    assert all(r.verify_all for r in third.values())
    whole = whole_checksums(scratch)
    assert all(source_side == replica_side for source_side, replica_side in whole.values())
    assert {name: state[0] for name, state in _stored_states(scratch).items()} == {
        name: sides[0] for name, sides in whole.items()}
    assert _stored_states(scratch)["orders"][0] != stored["orders"][0]  # order 2's new total


def _replicate_until_nothing_to_read(spark, settings, *tables: str, tries: int = 5) -> None:
    """Incremental runs until one reads nothing of `tables`: the watermark is then past their seeded rows. A run's
    watermark is its snapshot's xmin, so a write transaction open anywhere on the server (another database too, e.g.
    Airflow's metadata writes when the stack runs it) when the first snapshot was taken makes the next run re-read
    rows committed after it, as it must."""
    for _ in range(tries):
        results = replicate(spark, settings)
        if all(results[table].rows_read == 0 for table in tables):
            return
    pytest.fail(f"{tables}: every one of {tries} incremental runs re-read rows (a transaction left open on the server?)")


def test_between_whole_verifications_counts_still_catch_a_lost_row(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    _replicate_until_nothing_to_read(spark, scratch, "loyalty_points")
    with db.mysql_connection(scratch) as conn:
        conn.cursor().execute("DELETE FROM loyalty_points WHERE loyalty_id = 2")
    with pytest.raises(ReplicationError, match="reconcile failed for loyalty_points: rows source=2 replica=1"):
        replicate(spark, scratch)
    healed = replicate(spark, scratch)
    assert healed["loyalty_points"].plan.mode == "full" and written(healed) == {"loyalty_points": (1, 0, 0)}
    assert_replica_equals_source(scratch)


def test_a_lost_row_is_caught_in_a_run_that_also_inserts_updates_and_deletes(spark, scratch):
    """The replica is counted before the run's merges: the run's own inserts and deletes must not hide a row lost
    before it, nor count as lost."""
    seed(scratch)
    replicate(spark, scratch)
    _replicate_until_nothing_to_read(spark, scratch, "users", "reviews")
    with db.mysql_connection(scratch) as conn:
        conn.cursor().execute("DELETE FROM users WHERE user_id = 3")
    pg(scratch, "INSERT INTO {s}.users VALUES (9, 'New', 'User', 'new@example.com', NULL, now(), 'Gold')",
       "UPDATE {s}.users SET loyalty_status = 'Silver' WHERE user_id = 1",
       "DELETE FROM {s}.reviews WHERE review_id = 3",
       "INSERT INTO {s}.reviews VALUES (4, 1, 2, 2, NULL, now())")
    with pytest.raises(ReplicationError, match="reconcile failed for users: rows source=4 replica=3"):
        replicate(spark, scratch)
    healed = replicate(spark, scratch)
    assert healed["users"].plan.mode == "full" and healed["reviews"].plan.mode == "incremental"
    assert_replica_equals_source(scratch)


@pytest.mark.parametrize("write_path", ["copy", "jdbc"])
def test_a_late_count_of_the_replica_still_sees_it_before_the_runs_changes(spark, scratch, monkeypatch, write_path):
    """The replica's counts are read beside the copy: a table's merge waits for its count, and phase B's deletes
    are not seen by a count still running (they commit after the check). Either write path."""
    scratch = dataclasses.replace(scratch, REPLICATION_WRITE_PATH=write_path)
    seed(scratch)
    replicate(spark, scratch)
    _replicate_until_nothing_to_read(spark, scratch, "users", "loyalty_points")
    # users: merged first, counted first; loyalty_points: nothing to merge, deleted first in phase B, counted last
    pg(scratch, "INSERT INTO {s}.users VALUES (9, 'New', 'User', 'new@example.com', NULL, now(), 'Gold')",
       "DELETE FROM {s}.loyalty_points WHERE loyalty_id = 2")
    # The read-ahead's count of a table waits until the run has written that table (its merge committed, or phase
    # B's delete sent), or LATE_S when nothing writes it before the count: any machine's speed, the same test.
    count, upsert, delete_keys = Replica.count, Replica.upsert, Replica.delete_keys
    written_tables: dict[str, threading.Event] = {name: threading.Event() for name in ("users", "loyalty_points")}

    def late_count(self, table):
        if threading.current_thread().name.startswith("read-ahead") and table.name in written_tables:
            written_tables[table.name].wait(LATE_S)
        return count(self, table)

    def signalling(write):
        def wrapper(self, table, *args):
            try:
                return write(self, table, *args)
            finally:
                written_tables.get(table.name, threading.Event()).set()
        return wrapper
    monkeypatch.setattr(Replica, "count", late_count)
    monkeypatch.setattr(Replica, "upsert", signalling(upsert))
    monkeypatch.setattr(Replica, "delete_keys", signalling(delete_keys))
    run = replicate(spark, scratch)
    assert (run["users"].replica_rows.result(), run["loyalty_points"].replica_rows.result()) == (3, 2)
    assert written(run) == {"users": (1, 0, 0), "loyalty_points": (0, 0, 1)}
    assert_replica_equals_source(scratch)


def test_a_tampered_unchanged_row_is_caught_by_the_next_whole_verification(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    _replicate_until_nothing_to_read(spark, scratch, "orders")
    with db.mysql_connection(scratch) as conn:
        conn.cursor().execute("UPDATE orders SET total_amount = total_amount - 0.01 WHERE order_id = 1")
    # changed-rows verification does not read row 1: the documented trade-off
    assert replicate(spark, scratch)["orders"].rows_read == 0
    every_run = dataclasses.replace(scratch, REPLICATION_VERIFY_ALL_HOURS=0)
    with pytest.raises(ReplicationError, match=r"reconcile failed for orders: checksum source=2:\d+ replica=2:"):
        replicate(spark, every_run)
    assert replica_query(scratch, "SELECT watermark FROM replication_state WHERE table_name = 'orders'") == [
        {"watermark": None}]
    healed = replicate(spark, scratch)
    assert healed["orders"].plan.mode == "full" and written(healed) == {"orders": (0, 1, 0)}
    assert_replica_equals_source(scratch)


def test_one_task_copies_its_ranges_on_one_connection_pair_checking_keys_per_range(scratch):
    """A copy task's ranges share one snapshot transaction and one MySQL session: a direct range loads without FK
    checks, and the next, staged range gets them back (here it loads into a target table to show it)."""
    seed(scratch)
    with db.mysql_connection(scratch) as conn:
        Replica(scratch, conn).ensure_tables()

    def into(name: str, direct: bool) -> KeyRange:
        plan = plan_table(TABLES_BY_NAME[name], None, 1, 100, False)
        return KeyRange(plan, 1, 100, name, direct, 3)

    with open_snapshot(scratch) as snapshot:
        pg(scratch, "DELETE FROM {s}.order_details", "DELETE FROM {s}.reviews")  # after the snapshot: still copied
        # orders without their users: only a load without FK checks takes them; reviews need users and products too
        results = copy_ranges(scratch, snapshot.snapshot_id, [into("orders", True), into("reviews", False)])
    orders, reviews = results
    assert (orders.table, orders.copied, orders.loaded, orders.clean) == ("orders", 2, 2, True)
    assert (reviews.table, reviews.copied) == ("reviews", 3) and reviews.loaded == 0 and not reviews.clean
    assert "foreign key constraint fails" in " ".join(reviews.sample)
    assert replica_rows(scratch, TABLES_BY_NAME["orders"]) == source_rows(scratch, TABLES_BY_NAME["orders"])


@pytest.mark.parametrize("workers", [0, 2])
def test_snapshot_queries_use_the_configured_parallel_workers(scratch, workers):
    """REPLICATION_SOURCE_PARALLEL_WORKERS reaches the snapshot connection that runs the counts and checksums."""
    settings = dataclasses.replace(scratch, REPLICATION_SOURCE_PARALLEL_WORKERS=workers)
    with open_snapshot(settings) as snapshot:
        assert snapshot._one("SHOW max_parallel_workers_per_gather") == (str(workers),)
