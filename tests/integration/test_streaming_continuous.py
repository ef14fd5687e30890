"""Continuous mode (processingTime trigger): events sent while the job runs arrive; SIGTERM (`kill`) and SIGINT
(Ctrl-C, which PySpark's SparkContext takes over for itself) stop it cleanly."""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import uuid

import pytest

from datagen.events import ensure_topic
from shopflow import db
from shopflow.jobs.session import NO_RETRY_EXIT
from shopflow.streaming import query
from shopflow.streaming.sink import INTERRUPTED
from test_streaming_support import (assert_exact, free_port, kill, make_events, pg_rows, pipeline_runs, produce,
                                    scratch_run_log, start_job, start_private_broker, stream_case, wait_for)

pytestmark = pytest.mark.integration
__all__ = ["stream_case"]


def _applied(settings) -> int:
    return pg_rows(settings, "SELECT coalesce(sum(next_offset), 0) FROM {s}.stream_offsets")[0][0]


def _second_job_is_refused(settings, tmp_path) -> None:
    """Beside a running query, a second continuous one and --reset exit 1 naming it, before any Spark starts (they
    would fail on the checkpoint with CONCURRENT_STREAM_LOG_UPDATE, and --reset would delete it under the query)."""
    for args in (("--continuous",), ("--reset",)):
        log_path = tmp_path / f"second{args[0]}.log"
        second = start_job(settings, log_path, args=args)
        try:
            assert second.wait(timeout=120) == 1, log_path.read_text()[-3000:]
        finally:
            kill(second)
        log = log_path.read_text()
        assert "stream_users continuous (pid" in log and "Stop it" in log and "SparkContext" not in log, log[-3000:]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_continuous_mode_follows_the_topic_until_terminated(stream_case, tmp_path, signum):
    events, expected_users, malformed = make_events(400)
    produce(stream_case, events[:250])
    job = start_job(stream_case, tmp_path / "job.log", args=("--continuous", "--trigger-seconds", "1"))
    try:
        wait_for(lambda: _applied(stream_case) == 250, 300, "the first 250 events", job)
        _second_job_is_refused(stream_case, tmp_path)
        produce(stream_case, events[250:])  # while the query runs
        wait_for(lambda: _applied(stream_case) == 400, 120, "the events sent later", job)
        # Ctrl-C: the terminal signals the whole foreground process group; so do `timeout` and systemd with SIGTERM
        # (the driver's JVM, in the group, died of it: py4j tracebacks, exit 1)
        os.killpg(job.pid, signum)
        assert job.wait(timeout=120) == 0, (tmp_path / "job.log").read_text()[-3000:]
    finally:
        kill(job)
    assert_exact(stream_case, events, expected_users, malformed)
    log = (tmp_path / "job.log").read_text()
    assert "stopped" in log and "Traceback" not in log, log[-3000:]


# Batches that take 5 s, and the test signals while one sleeps, never between two (the file lists the batches
# begun). With `query.BATCH_END_WAIT_S = 0` the stop does not wait for them: Ctrl-C interrupts the batch in flight
# (what a stop does when the trigger stays busy past BATCH_END_WAIT_S, e.g. draining a backlog).
SLOW_BATCHES = """
import sys, time
from shopflow.streaming import query, sink
{stop_wait}
apply = sink.apply_batch
def slow_apply(cur, schema, batch, batch_id, *planned):
    with open(sys.argv[1], "a") as started:
        started.write(f"{{batch_id}}\\n")
    time.sleep(5)
    return apply(cur, schema, batch, batch_id, *planned)
sink.apply_batch = slow_apply
from shopflow.jobs.stream_users import main
sys.exit(main(["--master", "local[1]", "--continuous", "--trigger-seconds", "1"]))
"""


def _ctrl_c_in_a_batch(stream_case, tmp_path, events, stop_wait: str = "") -> int:
    """The job with SLOW_BATCHES, Ctrl-C once its second batch sleeps (the first is committed); its exit code."""
    log_path, started = tmp_path / "job.log", tmp_path / "batches-started"
    code = SLOW_BATCHES.format(stop_wait=stop_wait).replace("sys.argv[1]", repr(str(started)))
    job = start_job(stream_case, log_path, code=code)
    try:
        wait_for(lambda: "users stream (continuous" in log_path.read_text(), 300, "the query's start", job)
        produce(stream_case, events)
        wait_for(lambda: started.exists() and len(started.read_text().split()) >= 2, 120, "a second batch", job)
        os.killpg(job.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground process group
        return job.wait(timeout=120)
    finally:
        kill(job)


def test_ctrl_c_while_batches_run_lets_the_batch_in_flight_end_quietly(spark, stream_case, tmp_path):
    """Ctrl-C during a burst: the stop waits for the trigger to go idle instead of interrupting the batch in flight,
    which printed py4j's ERROR with the Python traceback and a Java StackOverflowError (about 1,100 lines, seen live
    under `make stream`). The signal lands while a batch runs (with batches of 100 events, polled once a second, it
    often landed between two, and the wait went untested)."""
    events, expected_users, malformed = make_events(1000)
    code = _ctrl_c_in_a_batch(stream_case, tmp_path, events)
    log = (tmp_path / "job.log").read_text()
    assert code == 0, log[-3000:]
    assert "stopping: waiting for the micro-batch in flight to end" in log, log[-3000:]
    assert "stopped" in log and "Traceback" not in log and "StackOverflowError" not in log, log[-3000:]
    runs = pipeline_runs(stream_case)
    assert len(runs) >= 2 and {status for status, *_ in runs} <= {"ok", "replayed"}, runs  # the second one ended
    query.run(spark, stream_case, query.AVAILABLE_NOW)  # whatever the stop left, once
    assert_exact(stream_case, events, expected_users, malformed)


def test_a_batch_interrupted_by_a_stop_is_recorded_as_stopped_and_applied_by_the_next_run(spark, stream_case,
                                                                                        tmp_path):
    """Its run row said `failed`, with the Java error, and the dashboard showed the stream's last run as failed."""
    events, expected_users, malformed = make_events(1000)
    _ctrl_c_in_a_batch(stream_case, tmp_path, events, stop_wait="query.BATCH_END_WAIT_S = 0")
    runs = pipeline_runs(stream_case)
    assert [status for status, *_ in runs if status not in ("ok", "replayed")] == ["stopped"], runs
    assert INTERRUPTED in runs[-1][-1], runs[-1]
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert_exact(stream_case, events, expected_users, malformed)


# A session start that takes long (executors slow to register): the test signals while it sleeps in the warm-up.
SLOW_START = """
import sys, time
from shopflow.jobs import session
def slow_warm_up(*args, **kwargs):
    open(sys.argv[1], "w").close()
    time.sleep(15)
session.warm_up = slow_warm_up
from shopflow.jobs.stream_users import main
sys.exit(main(["--master", "local[1]", "--continuous", "--trigger-seconds", "1"]))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_the_session_starts_ends_without_a_traceback_or_a_query(stream_case, tmp_path, signum):
    """Ctrl-C: the SparkContext's own SIGINT handler raised KeyboardInterrupt out of the session's start, a traceback
    and exit code 1. `kill`: the query started anyway once the session was up, and ran its first batch."""
    log_path, warming = tmp_path / "job.log", tmp_path / "warming"
    job = start_job(stream_case, log_path, code=SLOW_START.replace("sys.argv[1]", repr(str(warming))))
    try:
        wait_for(warming.exists, 300, "the session's warm-up", job)
        if signum == signal.SIGINT:  # Ctrl-C: the terminal signals the whole foreground process group
            os.killpg(job.pid, signum)
        else:
            job.send_signal(signum)
        assert job.wait(timeout=120) == 0, log_path.read_text()[-3000:]
    finally:
        kill(job)
    log = log_path.read_text()
    assert "stopped" in log and "Traceback" not in log and "users stream (" not in log, log[-3000:]


@pytest.mark.parametrize("restarted", [False, True], ids=["stopped", "restarted empty"])
def test_a_broker_that_goes_away_ends_the_query_with_one_clear_line(postgres, mysql, tmp_path, restarted):
    """The broker stops under a running `make stream`: the job ends with exit code 2 and one line naming the broker,
    not PySpark's traceback of the failed query. Started again at once, empty (memory storage): the one line says
    the topic went below the committed positions and how to start over, exit code 3 (no retry: it would fail the
    same way)."""
    port = free_port()
    broker = start_private_broker(port)
    tag = uuid.uuid4().hex[:8]
    with scratch_run_log(postgres, tag) as run_log:
        _go_away(run_log, port, tag, broker, tmp_path, restarted)
    log = (tmp_path / "job.log").read_text()
    last = [line.split(" ", 2)[2] for line in log.splitlines()[-3:] if " ERROR " in line]  # py4j's goodbye comes after
    if restarted:
        assert len(last) == 1 and re.fullmatch(
            r"ERROR shopflow.streaming: users-gone-\d: the broker's end offset 0 is below the committed position \d+; "
            r"the topic was recreated or the broker lost its data\. Reset the stream state .*", last[0]), log[-3000:]
    else:  # killed before the next offsets request connects, or (rarer) between its connect and its request
        at = re.escape(f"127.0.0.1:{port}")
        assert len(last) == 1 and re.fullmatch(
            rf"ERROR shopflow.streaming: (cannot reach Kafka at {at}: KafkaTimeoutError: Unable to bootstrap from "
            rf"{at}; is it running\? `make status` shows it, `make up` starts it|'users-gone': the broker at "
            rf"{at} did not answer \((KafkaTimeoutError|KafkaConnectionError)\b[^\n]*\))", last[0]), log[-3000:]
    assert 'File "<frozen runpy>"' not in log  # no Python traceback of the job itself


def _go_away(base, port: int, tag: str, broker, tmp_path, restarted: bool) -> None:
    settings = dataclasses.replace(base, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}", KAFKA_TOPIC="users-gone",
                                   POSTGRES_SCHEMA=f"t_stream_{tag}", STREAMING_CHECKPOINT_DIR=str(tmp_path / "cp"))
    job = None
    try:
        ensure_topic(settings)
        db.apply_postgres_schema(settings)
        query.ensure_tables(settings)
        events, _users, _malformed = make_events(60)
        produce(settings, events)
        job = start_job(settings, tmp_path / "job.log", args=("--continuous", "--trigger-seconds", "1"))
        wait_for(lambda: _applied(settings) == 60, 300, "the events", job)
        broker.kill()
        if restarted:
            broker.wait()
            broker = start_private_broker(port)
            ensure_topic(settings)
        assert job.wait(timeout=120) == (NO_RETRY_EXIT if restarted else 2), (tmp_path / "job.log").read_text()[-3000:]
    finally:
        broker.kill()
        if job is not None:
            kill(job)
        with db.pg_connection(settings) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {settings.POSTGRES_SCHEMA} CASCADE")
