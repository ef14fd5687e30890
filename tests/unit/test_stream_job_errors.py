"""The stream job's main and its errors: a server down before Spark starts, or gone under a running query, is one
line and exit code 2; offsets gone back below the committed positions are exit code 3 (no Airflow retry)."""
from __future__ import annotations

import logging
import signal

import pytest
from unit_support import closed_port

from shopflow.streaming import kafka_offsets as ko


def _stream_job_errors(argv, monkeypatch, caplog, **env) -> list[str]:
    """Runs the stream job's main with `env` set and Spark forbidden; asserts exit code 2 and one failed
    pipeline_runs row saying what the line says (captured, not written); its ERROR lines."""
    from shopflow import runlog
    from shopflow.config import get_settings
    from shopflow.jobs import stream_users

    rows: list = []
    monkeypatch.setattr(runlog, "record_run", lambda _settings, record: rows.append(record))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(stream_users, "build_session", lambda *a, **k: pytest.fail("Spark started"))
    get_settings.cache_clear()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert stream_users.main(argv) == 2
    finally:
        get_settings.cache_clear()
        restored = {signum: signal.getsignal(signum) for signum in handlers}
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert restored == handlers  # main run in-process (a test, a DAG's task) gives Ctrl-C and SIGTERM back
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.job, r.status, r.detail) for r in rows] == [("stream_users", "failed", errors[-1])]
    return errors


@pytest.mark.parametrize("argv", [[], ["--continuous"]], ids=["drain", "continuous"])
def test_the_stream_job_stops_before_spark_when_the_broker_is_down(argv, monkeypatch, caplog):
    address = f"127.0.0.1:{closed_port()}"
    errors = _stream_job_errors(argv, monkeypatch, caplog, KAFKA_BOOTSTRAP_SERVERS=address)
    assert errors == [f"cannot reach Kafka at {address}: KafkaTimeoutError: Unable to bootstrap from {address}; "
                      "is it running? `make status` shows it, `make up` starts it"]


def _refused_port_error() -> str:
    """A real psycopg2 error: Postgres is not listening."""
    import psycopg2
    with pytest.raises(psycopg2.OperationalError) as refused:
        psycopg2.connect(host="127.0.0.1", port=closed_port(), dbname="x", user="x", connect_timeout=5)
    return str(refused.value)


def test_postgres_gone_names_the_line_and_ignores_other_errors():
    from shopflow.db import postgres_gone

    refused = _refused_port_error()
    assert postgres_gone(refused).startswith('connection to server at "127.0.0.1", port ') and "\n" not in \
        postgres_gone(refused)
    relayed = ("Traceback (most recent call last):\n  File \"/x/sink.py\", line 124, in __call__\n"
               "psycopg2.OperationalError: server closed the connection unexpectedly\n\tThis probably means the "
               "server terminated abnormally\n")
    assert postgres_gone(relayed) == "server closed the connection unexpectedly"
    assert postgres_gone("psycopg2.errors.DeadlockDetected: deadlock detected\nDETAIL: ...") is None
    assert postgres_gone("psycopg2.errors.UniqueViolation: duplicate key value") is None


def test_a_query_failed_by_postgres_going_away_becomes_one_line():
    from shopflow.config import load_settings
    from shopflow.jobs import stream_users

    settings = load_settings(env={}, env_file=None)
    relayed = ("[FOREACH_BATCH_USER_FUNCTION_ERROR] ... Traceback (most recent call last):\n"
               f"  File \"/x/db.py\", line 51, in pg_connection\npsycopg2.OperationalError: {_refused_port_error()}\n")
    gone = stream_users._gone(relayed, settings)
    assert isinstance(gone, stream_users.PostgresGone)
    assert str(gone).startswith(f"lost Postgres at 127.0.0.1:{settings.POSTGRES_PORT} under the running query "
                                '(connection to server at "127.0.0.1", port ')
    assert str(gone).endswith("Connection refused); the batch in flight was not committed, the next run applies it")
    assert stream_users._gone("[FOREACH_BATCH_USER_FUNCTION_ERROR] ... ValueError: a bug", settings) is None
    on_ipv6 = stream_users._gone(relayed, load_settings(env={"POSTGRES_HOST": "::1"}, env_file=None))
    assert str(on_ipv6).startswith(f"lost Postgres at [::1]:{settings.POSTGRES_PORT} under")  # was ::1:5432


@pytest.mark.parametrize("argv", [["--continuous"], ["--reset"]], ids=["continuous", "reset"])
def test_the_stream_job_stops_before_spark_when_postgres_is_down(argv, monkeypatch, caplog):
    from shopflow.jobs import stream_users

    port = closed_port()
    monkeypatch.setattr(stream_users.query, "topic_partitions", lambda settings: [0])  # no broker in unit tests
    errors = _stream_job_errors(argv, monkeypatch, caplog, POSTGRES_PORT=str(port))
    assert len(errors) == 1 and errors[0].startswith(f"cannot reach Postgres at 127.0.0.1:{port} (connection to "
                                                     f'server at "127.0.0.1", port {port} failed: Connection refused')
    assert errors[0].endswith("); is it running? `make status` shows it, `make up` starts it")


@pytest.mark.parametrize("error, code", [
    (ko.OffsetsWentBack("users-data-0: the broker's end offset 0 is below the committed position 412"), 3),
    (ko.OffsetsDeleted("users-data-1: the broker's earliest offset 900 is above the committed position 412"), 3),
    (ko.OffsetsOutOfRange("users-data-2: Broker: Offset out of range (reading offsets 412..900)"), 3),
    (ko.KafkaOffsetError("no fetch response for 'users-data' within 30 s"), 2)],
    ids=["went back", "deleted unread", "out of range while reading", "slow broker"])
def test_only_offsets_gone_back_end_the_job_with_the_no_retry_exit(monkeypatch, caplog, error, code, recorded_runs):
    """A retry cannot help a topic that went back below the committed positions: exit 3, so Airflow fails the task at
    once (code/airflow/dags/_spark.py) instead of retrying it twice; a slow broker may answer the retry: exit 2."""
    from shopflow.jobs import stream_users
    from shopflow.jobs.session import NO_RETRY_EXIT

    def failing(_settings):
        raise error

    monkeypatch.setattr(stream_users, "_has_work", failing)
    assert stream_users.main([]) == code
    assert NO_RETRY_EXIT == 3
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [str(error)]
    assert [(r.job, r.status, r.detail) for r in recorded_runs] == [("stream_users", "failed", str(error))]


def test_a_relayed_query_failure_keeps_its_offset_error_class():
    from shopflow.jobs import stream_users

    relayed = ("Traceback (most recent call last):\n  File x\nshopflow.streaming.kafka_offsets.OffsetsWentBack: t-0: "
               "the broker's end offset 0 is below the committed position 5\n")
    assert type(stream_users._gone(relayed, None)) is ko.OffsetsWentBack
    slow = relayed.replace("OffsetsWentBack: t-0: the broker's end offset 0 is below the committed position 5",
                           "KafkaOffsetError: t-0: no data at offset 5 within 60 s")
    assert type(stream_users._gone(slow, None)) is ko.KafkaOffsetError
    deleted = relayed.replace("OffsetsWentBack: t-0: the broker's end offset 0 is below",
                              "OffsetsDeleted: t-0: the broker's earliest offset 9 is above")
    assert type(stream_users._gone(deleted, None)) is ko.OffsetsDeleted
    busy = relayed.replace("shopflow.streaming.kafka_offsets.OffsetsWentBack: t-0: the broker's end offset 0 is "
                           "below the committed position 5",
                           "shopflow.streaming.checkpoint_lock.CheckpointBusy: this query lost its lock on c")
    from shopflow.streaming.checkpoint_lock import CheckpointBusy
    assert type(stream_users._gone(busy, None)) is CheckpointBusy  # one line and exit 1, not a traceback


def test_a_refused_login_is_not_a_server_down():
    """libpq 14+ starts a refused login with "connection to server ... failed" too: a wrong password read as a down
    server, "is it running?", exit 2 and retried; it is a refused login now, which a retry does not cure."""
    import mysql.connector
    import psycopg2

    from shopflow.config import load_settings
    from shopflow.db import login_refused, server_gone

    settings = load_settings(env={}, env_file=None)
    wrong = psycopg2.OperationalError('connection to server at "127.0.0.1", port 5432 failed: FATAL:  password '
                                      'authentication failed for user "db_user"\n')
    down = psycopg2.OperationalError(_refused_port_error())
    assert server_gone(wrong, settings) is None
    assert login_refused(wrong, settings) == (
        f"Postgres at 127.0.0.1:{settings.POSTGRES_PORT} refused the login: FATAL:  password authentication failed; "
        "check POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB")
    assert login_refused(down, settings) is None
    assert server_gone(down, settings).startswith(f"cannot reach Postgres at 127.0.0.1:{settings.POSTGRES_PORT} (")
    denied = mysql.connector.errors.ProgrammingError(msg="Access denied for user 'db_user'", errno=1045)
    refused = mysql.connector.errors.InterfaceError(msg="Can't connect to MySQL server", errno=2003)
    assert (server_gone(denied, settings), login_refused(refused, settings)) == (None, None)
    assert login_refused(denied, settings).startswith(f"MySQL at 127.0.0.1:{settings.MYSQL_PORT} refused the login")
    assert server_gone(refused, settings) == (f"cannot reach MySQL at 127.0.0.1:{settings.MYSQL_PORT} (Can't connect "
                                              "to MySQL server)")


def test_a_second_stop_signal_ends_the_stream_job_at_once():
    """The first Ctrl-C asks for a clean stop, which waits for the batch in flight; one whose upsert waited for
    another session's lock on `users` held it for as long, and a second Ctrl-C did nothing."""
    import subprocess
    import sys

    script = ("import os, signal, threading, time\n"
              "from shopflow.jobs.session import configure_logging\n"
              "from shopflow.jobs.stream_users import _stop_on_signals\n"
              "configure_logging()\n"
              "stop = threading.Event()\n"
              "_stop_on_signals(stop)\n"
              "os.kill(os.getpid(), signal.SIGINT)\n"
              "assert stop.is_set()\n"
              "os.kill(os.getpid(), signal.SIGTERM)  # the same stop sent to the group: still one\n"
              "print('first: stop asked', flush=True)\n"
              "time.sleep(1.1)\n"
              "os.kill(os.getpid(), signal.SIGINT)\n"
              "time.sleep(30)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (130, "first: stop asked\n"), result.stderr
    assert result.stderr.rstrip().endswith("a second SIGINT: ending at once; a batch in flight that had not committed "
                                           "is applied by the next run")


def test_ctrl_c_before_the_stream_starts_is_one_line(monkeypatch, caplog):
    """Asking the broker whether there is anything to stream (up to its timeout) comes before the job's own signal
    handlers: a Ctrl-C then gave a traceback."""
    from shopflow.jobs import stream_users

    def asking(_settings):
        raise KeyboardInterrupt

    monkeypatch.setattr(stream_users, "_has_work", asking)
    with caplog.at_level(logging.INFO, logger="shopflow.streaming"):
        assert stream_users.main([]) == 130
    assert caplog.records[-1].getMessage() == "interrupted before the stream started: nothing read"
