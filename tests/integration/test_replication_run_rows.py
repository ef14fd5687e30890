"""A replication run's `pipeline_runs` row against real Postgres and MariaDB, as the marts build reads it: written
before the run lets the replication lock go, `running` while the replica may change (so a run that never wrote its
end is seen), and `not started` for a run that failed before changing anything."""
from __future__ import annotations

import dataclasses
import threading
import time

import psycopg2
import pytest
from replication_support import assert_replica_equals_source, pg, replica_query, scratch, seed  # noqa: F401
from test_job_exits import _waits_for_lock
from test_streaming_support import free_port

from shopflow import db, runlog
from shopflow.marts.replica import ReplicaIncomplete, check_last_replication, replication_paused
from shopflow.replication import replicate
from shopflow.replication.results import JOB
from shopflow.replication.target import replication_lock_name

pytestmark = pytest.mark.integration


class Interrupt(Exception):
    pass


def _whole_runs(settings) -> list[dict]:
    return replica_query(settings, "SELECT status, mode, detail FROM pipeline_runs WHERE table_name IS NULL "
                                   "ORDER BY run_id")


def _check(settings) -> None:
    with db.mysql_connection(settings) as conn:
        check_last_replication(conn.cursor())


def _change_orders(settings) -> None:
    pg(settings, "UPDATE {s}.orders SET status = 'Cancelled' WHERE order_id = 1",
       "UPDATE {s}.reviews SET rating = 2 WHERE review_id = 2")


def _postgres_down(settings):
    """The settings with Postgres on a port nothing listens on."""
    return dataclasses.replace(settings, POSTGRES_PORT=free_port())


REFUSED = "Connection refused"  # psycopg2's OperationalError, as the run gets it


def _interrupt_after_orders(phase: str, table: str) -> None:
    if (phase, table) == ("upsert", "orders"):
        raise Interrupt("stopped after the upsert of orders")


def test_a_build_waiting_for_the_lock_sees_the_run_that_failed_before_it(spark, scratch, monkeypatch):
    """The failed row was written after the lock's connection closed: a build waiting for the lock went on at once
    and read the run before's `ok`, then the half-applied replica (orders upserted, reviews not). The row's write is
    slowed down here so that the old order loses the race every time."""
    seed(scratch)
    replicate(spark, scratch)
    _change_orders(scratch)
    write = runlog.record_run_or_warn
    monkeypatch.setattr(runlog, "record_run_or_warn", lambda *args: (time.sleep(1.0), write(*args)))
    seen: list = []

    def build() -> None:
        try:
            with db.mysql_connection(scratch) as conn:
                cursor = conn.cursor()
                with replication_paused(cursor, scratch):
                    check_last_replication(cursor)
            seen.append("went on")
        except ReplicaIncomplete as error:
            seen.append(error)

    waiting = threading.Thread(target=build)

    def step(phase: str, table: str) -> None:
        if (phase, table) == ("upsert", "users"):
            waiting.start()
            deadline = time.monotonic() + 30  # a fixed sleep stood for it: a slow start saw the run's end instead
            while not _waits_for_lock(scratch, replication_lock_name(scratch)):
                assert time.monotonic() < deadline, "the build never waited for the replication lock"
                time.sleep(0.05)
        _interrupt_after_orders(phase, table)

    with pytest.raises(Interrupt):
        replicate(spark, scratch, on_step=step)
    waiting.join(timeout=60)
    assert len(seen) == 1 and isinstance(seen[0], ReplicaIncomplete), seen
    assert "failed" in str(seen[0]) and "stopped after the upsert of orders" in str(seen[0])


def test_a_run_that_never_wrote_its_end_stops_builds_until_the_next_run_closes_it(spark, scratch, monkeypatch):
    """Killed (kill -9, the OOM killer) or MySQL unreachable as it ended: no row said so, and builds read the
    replica it left half-applied. Its row now stays `running`; the next run writes it as failed."""
    seed(scratch)
    replicate(spark, scratch)
    _change_orders(scratch)
    monkeypatch.setattr(runlog, "record_run_or_warn", lambda *args: None)  # its end cannot be written
    with pytest.raises(Interrupt):
        replicate(spark, scratch, on_step=_interrupt_after_orders)
    assert [(r["status"], r["mode"]) for r in _whole_runs(scratch)] == [("ok", "full"), ("running", "incremental")]
    with pytest.raises(ReplicaIncomplete, match=r"ended without writing its result \(running: killed\?\)"):
        _check(scratch)
    monkeypatch.undo()
    with pytest.raises(psycopg2.OperationalError, match=REFUSED):  # runs between that change nothing: one, and 25
        replicate(spark, _postgres_down(scratch))  # more as retries against a Postgres down
    with db.mysql_connection(scratch) as conn:
        conn.cursor().executemany("INSERT INTO pipeline_runs (job, started_at, status, mode) "
                                  "VALUES (%s, UTC_TIMESTAMP(6), 'failed', %s)", [(JOB, runlog.NOT_STARTED)] * 25)
    replicate(spark, scratch)
    runs = _whole_runs(scratch)
    assert [r["status"] for r in runs] == ["ok", "failed"] + ["failed"] * 26 + ["ok"]
    assert runs[1]["detail"] == runlog.UNFINISHED
    _check(scratch)
    assert_replica_equals_source(scratch)


def test_a_run_that_failed_before_changing_the_replica_does_not_stop_builds(spark, scratch):
    """Postgres unreachable, the lock wait run out, the replica refusing LOAD DATA: the row said failed with no mode,
    and every build refused the replica until the next successful run."""
    seed(scratch)
    replicate(spark, scratch)

    with pytest.raises(psycopg2.OperationalError, match=REFUSED):
        replicate(spark, _postgres_down(scratch))
    assert [(r["status"], r["mode"]) for r in _whole_runs(scratch)] == [("ok", "full"), ("failed", runlog.NOT_STARTED)]
    _check(scratch)


def test_a_missing_source_table_refuses_the_run_without_a_retry_and_changes_nothing(spark, scratch):
    """A RuntimeError (a traceback, exit 1, retried twice by Airflow to the same end); now ReplicationRefused: the
    job's exit 3, no retry."""
    from shopflow.replication import ReplicationRefused

    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "DROP TABLE {s}.loyalty_points")
    with pytest.raises(ReplicationRefused, match=rf"source table {scratch.POSTGRES_SCHEMA}.loyalty_points does not "
                                                 "exist"):
        replicate(spark, scratch)
    assert [(r["status"], r["mode"]) for r in _whole_runs(scratch)] == [("ok", "full"), ("failed", runlog.NOT_STARTED)]


def test_a_run_that_made_a_replica_table_again_then_failed_stops_builds(spark, scratch):
    """A replica table dropped by hand is made again, empty, before the run reads the source: that run changed the
    replica, so its failure right after (Postgres unreachable) must stop the builds, which would read the empty
    table."""
    seed(scratch)
    replicate(spark, scratch)
    with db.mysql_connection(scratch, autocommit=True) as conn:
        conn.cursor().execute("DROP TABLE loyalty_points")
    with pytest.raises(psycopg2.OperationalError, match=REFUSED):
        replicate(spark, _postgres_down(scratch))
    assert [(r["status"], r["mode"]) for r in _whole_runs(scratch)] == [("ok", "full"), ("failed", None)]
    with pytest.raises(ReplicaIncomplete, match=rf"failed.*{REFUSED}"):
        _check(scratch)


def test_rows_name_their_airflow_run_and_a_table_older_than_that_column_gets_it(scratch, monkeypatch):
    older = runlog.PIPELINE_RUNS_DDL.replace("    airflow_run_id VARCHAR(250) NULL,\n", "")
    assert older != runlog.PIPELINE_RUNS_DDL
    with db.mysql_connection(scratch, autocommit=True) as conn:
        conn.cursor().execute("DROP TABLE IF EXISTS pipeline_runs")
        conn.cursor().execute(older)
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "scheduled__2026-12-07T16:00:00+00:00")  # as Airflow's task sets
    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", "2")
    runlog.record_run(scratch, runlog.RunRecord(job="some_job", status="ok"))  # a job that ran before `make up`
    monkeypatch.delenv("AIRFLOW_CTX_DAG_RUN_ID")  # by hand
    runlog.record_run(scratch, runlog.RunRecord(job="some_job", status="ok"))
    assert [r["airflow_run_id"] for r in replica_query(scratch, "SELECT * FROM pipeline_runs ORDER BY run_id")] == [
        "scheduled__2026-12-07T16:00:00+00:00 (try 2)", None]
