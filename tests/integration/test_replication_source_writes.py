"""Writes to the source that bypass the usual change tracking, replicated against real Postgres and MariaDB: a row
restored with its old change_txid, a changed primary key, a TRUNCATE committed while a run starts, NaN money, emails
that differ only in trailing spaces."""
from __future__ import annotations

import dataclasses
import os
import threading
from decimal import Decimal

import psycopg2
import pytest
from attempt_support import Attempt
from replication_support import assert_replica_equals_source, pg, replica_rows, scratch, seed, written  # noqa: F401
from test_streaming_support import wait_for

from postgresdb.ddl import NO_PAD_BINARY, key_collation
from postgresdb.models import TABLES, TABLES_BY_NAME
from shopflow import db
from shopflow.replication import replicate
from shopflow.replication.source import SourceSnapshot

pytestmark = pytest.mark.integration


def test_a_row_restored_with_its_old_change_txid_is_replicated(spark, scratch):
    """Delete, then INSERT … SELECT * from a copy taken earlier: the row comes back with the change_txid it had
    then, below the replica's watermark; its key is in the snapshot, so its tombstone deletes nothing either."""
    seed(scratch)
    pg(scratch, "CREATE TABLE {s}.orders_copy AS SELECT * FROM {s}.orders WHERE order_id = 2")
    pg(scratch, "UPDATE {s}.orders SET total_amount = 1 WHERE order_id = 2")
    replicate(spark, scratch)
    pg(scratch, "CREATE TABLE {s}.details_copy AS SELECT * FROM {s}.order_details WHERE order_id = 2",
       "DELETE FROM {s}.order_details WHERE order_id = 2", "DELETE FROM {s}.orders WHERE order_id = 2",
       "INSERT INTO {s}.orders SELECT * FROM {s}.orders_copy",
       "INSERT INTO {s}.order_details SELECT * FROM {s}.details_copy")
    results = replicate(spark, scratch)
    assert {r.plan.mode for r in results.values()} == {"incremental"}
    assert [r[3] for r in replica_rows(scratch, TABLES_BY_NAME["orders"]) if r[0] == 2] == [Decimal("0.03")]
    assert_replica_equals_source(scratch)


def test_a_changed_primary_key_leaves_no_old_key_behind(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "UPDATE {s}.reviews SET review_id = 99 WHERE review_id = 2")
    results = replicate(spark, scratch)
    assert results["reviews"].plan.mode == "incremental" and written(results) == {"reviews": (1, 0, 1)}
    assert_replica_equals_source(scratch)


def test_the_tracking_triggers_fire_under_session_replication_role_replica(scratch):
    """Logical replication into the source (and a data-only pg_restore) runs as `replica`, where only triggers
    enabled ALWAYS fire: written there, as a superuser, an update is stamped and a delete tombstoned."""
    from shopflow.stack.bootstrap import pg_superuser

    seed(scratch)
    with db.pg_connection(scratch) as conn, conn.cursor() as cur:
        cur.execute("SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "WHERE c.relnamespace = %s::regnamespace AND NOT t.tgisinternal", (scratch.POSTGRES_SCHEMA,))
        triggers = cur.fetchall()
        cur.execute(f"SELECT change_txid FROM {scratch.POSTGRES_SCHEMA}.orders WHERE order_id = 1")
        before = cur.fetchone()[0]
    assert {name for name, _, _ in triggers} == {t.name for t in TABLES}
    assert len(triggers) == 5 * len(TABLES) and {state for _, _, state in triggers} == {"A"}
    schema, conn = scratch.POSTGRES_SCHEMA, pg_superuser(scratch, scratch.POSTGRES_DB)
    try:
        with conn.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
            cur.execute(f"UPDATE {schema}.orders SET total_amount = 0.42 WHERE order_id = 1 "
                        "RETURNING change_txid, txid_current()")
            stamped, txid = cur.fetchone()
            cur.execute(f"DELETE FROM {schema}.reviews WHERE review_id = 2")
            cur.execute(f"SELECT row_id FROM {schema}.deleted_rows WHERE table_name = 'reviews'")
            tombstones = cur.fetchall()
    finally:
        conn.close()
    assert stamped == txid > before and tombstones == [(2,)]


def test_nan_money_is_refused_by_the_source(scratch):
    """Postgres' numeric takes 'NaN' and orders it above every number (so `price >= 0` passes); no replica holds it,
    and the JDBC read fails on it without naming the row."""
    seed(scratch)
    with pytest.raises(psycopg2.errors.CheckViolation, match="ck_products_price_number"):
        pg(scratch, "UPDATE {s}.products SET price = 'NaN' WHERE product_id = 1")


def test_a_truncate_committed_while_the_run_starts_is_replicated_with_its_new_rows(spark, scratch):
    """TRUNCATE is not MVCC-safe: a snapshot taken before it committed sees the table empty. The run waits for it
    before taking its snapshot."""
    seed(scratch)
    replicate(spark, scratch)
    writer = psycopg2.connect(scratch.postgres_dsn)
    cur = writer.cursor()
    cur.execute(f"TRUNCATE {scratch.POSTGRES_SCHEMA}.loyalty_points")
    cur.execute(f"INSERT INTO {scratch.POSTGRES_SCHEMA}.loyalty_points VALUES (5, 1, 9, 'Birthday', now())")
    outcome = {}
    run = threading.Thread(target=lambda: outcome.update(results=replicate(spark, scratch, force_full=True)))
    run.start()
    try:
        _wait_for_a_lock_wait(scratch, "loyalty_points")
    finally:
        writer.commit()
        writer.close()
    run.join(timeout=300)
    assert outcome, "the run failed"
    assert_replica_equals_source(scratch)
    assert [r[0] for r in replica_rows(scratch, TABLES_BY_NAME["loyalty_points"])] == [5]


def _wait_for_a_lock_wait(settings, table: str, timeout_s: float = 60) -> None:
    def waiting() -> int:
        with db.pg_connection(settings, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = to_regclass(%s)",
                        (f"{settings.POSTGRES_SCHEMA}.{table}",))
            return cur.fetchone()[0]

    wait_for(waiting, timeout_s, f"a session waiting for a lock on {table}")


def test_emails_that_differ_only_in_trailing_spaces_stay_two_users(spark, scratch):
    """utf8mb4_bin ignores trailing spaces: the replica took 'zoe@example.com ' for user 1's email, deleted user 1 as
    its holder, and every later run failed on the unique key. A replica made before keeps its tables: the run gives
    the column the collation without PAD SPACE first."""
    seed(scratch)
    replicate(spark, scratch)
    with db.mysql_connection(scratch, autocommit=True) as conn:
        conn.cursor().execute("ALTER TABLE users MODIFY email VARCHAR(255) COLLATE utf8mb4_bin NOT NULL")
    pg(scratch, "INSERT INTO {s}.users VALUES (4, 'Zoe', 'Two', 'zoe@example.com ', NULL, now(), 'Gold')")
    results = replicate(spark, scratch)
    assert written(results) == {"users": (1, 0, 0)}
    assert_replica_equals_source(scratch)
    with db.mysql_connection(scratch) as conn:
        cur = conn.cursor()
        expected = key_collation(cur)
        cur.execute("SELECT table_name, collation_name FROM information_schema.columns WHERE table_schema = "
                    "DATABASE() AND column_name = 'email'")
        assert expected in NO_PAD_BINARY and dict(cur.fetchall()) == {"users": expected, "stage_users": expected}


def test_a_truncate_queued_behind_a_running_run_makes_the_run_give_way_instead_of_both_waiting(spark, scratch,
                                                                                                monkeypatch):
    """The run's snapshot holds ACCESS SHARE on the tables; a TRUNCATE arriving meanwhile queues behind it, and the
    run's reads queue behind the TRUNCATE. Postgres sees no deadlock (the run waits on its reads in the client): all
    of them waited for good. The reads' lock timeout makes the run fail, and the TRUNCATE goes through."""
    seed(scratch)
    settings = dataclasses.replace(scratch, REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS=2.0)
    truncate = threading.Thread(target=pg, args=(settings, "TRUNCATE {s}.loyalty_points"))
    row_stats = SourceSnapshot.row_stats

    def truncate_arrives(self, plan):  # after the snapshot and its locks, before the reads
        if not truncate.is_alive() and truncate.ident is None:
            truncate.start()
            _wait_for_a_lock_wait(settings, "loyalty_points")
        return row_stats(self, plan)

    monkeypatch.setattr(SourceSnapshot, "row_stats", truncate_arrives)
    run = Attempt(lambda: replicate(spark, settings))
    if run.running_after(180):  # the old behaviour: unblock both, then fail
        pg(settings, "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'TRUNCATE%'")
        run.running_after(60)
        raise AssertionError("the run and the TRUNCATE waited for each other")
    truncate.join(timeout=60)
    assert "waited 2 s for the source table's lock" in str(run.error), run.error
    assert not truncate.is_alive()
    monkeypatch.undo()
    replicate(spark, settings)
    assert_replica_equals_source(settings)
    assert replica_rows(settings, TABLES_BY_NAME["loyalty_points"]) == []


def test_a_table_left_locked_by_an_open_transaction_fails_the_run_naming_the_session(spark, scratch):
    """An ALTER or TRUNCATE left open in a SQL client: the run's snapshot waited for its lock without a word, up to
    Airflow's task timeout (an hour, then two retries). It now gives up after the lock timeout and names it."""
    seed(scratch)
    settings = dataclasses.replace(scratch, REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS=2.0)
    with db.pg_connection(settings) as holder, holder.cursor() as cur:
        cur.execute(f"LOCK TABLE {settings.POSTGRES_SCHEMA}.orders IN ACCESS EXCLUSIVE MODE; SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        run = Attempt(lambda: replicate(spark, settings))
        still_waiting = run.running_after(60)
        holder.rollback()  # lets a run still waiting (the old behaviour) through
    run.running_after(120)
    assert not still_waiting, "the run was still waiting for the lock after 60 s"
    assert "the source tables stayed locked for 2 s" in str(run.error), run.error
    assert f"session {pid} (" in str(run.error) and "on orders" in str(run.error), run.error
    replicate(spark, settings)
    assert_replica_equals_source(settings)


_GIVE_WAY_ON_THE_CLUSTER = """
import json, sys, threading, time
sys.path.insert(0, "tests/integration")
from replication_support import pg
from test_replication_source_writes import _wait_for_a_lock_wait
from shopflow.config import get_settings
from shopflow.jobs import replicate_postgres_to_mysql as job
from shopflow.replication import replicate
from shopflow.replication.source import SourceSnapshot

settings = get_settings()
truncate, row_stats, seen = threading.Thread(target=pg, args=(settings, "TRUNCATE {s}.loyalty_points")), \\
    SourceSnapshot.row_stats, {}

def truncate_arrives(self, plan):  # after the snapshot and its locks, before the reads
    if truncate.ident is None:
        truncate.start()
        _wait_for_a_lock_wait(settings, "loyalty_points")
        seen["queued"] = time.monotonic()
    return row_stats(self, plan)

SourceSnapshot.row_stats = truncate_arrives
spark = job.session(settings)
try:
    replicate(spark, settings)
    error = ""
except Exception as failure:
    error = str(failure)
truncate.join(timeout=120)
print(json.dumps({"error": error[:2000], "waited_s": time.monotonic() - seen["queued"]}))
spark.stop()
"""


def test_on_the_cluster_the_run_gives_way_after_one_lock_timeout_not_four(spark_cluster, scratch):
    """On the standalone cluster Spark tries a failed task 4 times by default, and the run's snapshot keeps its lock
    in between: the read that gave way to a queued TRUNCATE waited its lock timeout 4 times (the test above runs in
    local mode, one attempt). The replication job's session tries a task once."""
    import json
    import subprocess
    import sys

    from shopflow.config import PROJECT_ROOT, Settings

    seed(scratch)
    settings = dataclasses.replace(scratch, REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS=3.0)
    env = {k: v for k, v in os.environ.items() if k != "PYSPARK_GATEWAY_PORT"} | {
        f.name: str(getattr(settings, f.name)) for f in dataclasses.fields(Settings)}
    run = subprocess.run([sys.executable, "-c", _GIVE_WAY_ON_THE_CLUSTER], env=env, cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert "waited 3 s for the source table's lock" in outcome["error"], outcome
    assert "failed 1 times; aborting job" in run.stderr, run.stderr[-3000:]  # Spark's ERROR line: one attempt
    assert "failed 4 times" not in run.stderr and outcome["waited_s"] < 120, outcome
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {settings.POSTGRES_SCHEMA}.loyalty_points")
        assert cur.fetchone()[0] == 0  # the TRUNCATE went through
