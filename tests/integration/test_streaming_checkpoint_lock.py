"""One users stream query per checkpoint (checkpoint_lock.py), on the real Postgres: an availableNow run beside a
running query does nothing, a continuous one waits for an availableNow run and refuses a second continuous one,
`--reset` refuses while a query runs. The job itself honours it: test_streaming_continuous.py."""
from __future__ import annotations

import dataclasses
import os
import threading
import time

import pytest

from shopflow.streaming import checkpoint_lock as cl

pytestmark = pytest.mark.integration


@pytest.fixture
def case(postgres, tmp_path):
    return dataclasses.replace(postgres, STREAMING_CHECKPOINT_DIR=str(tmp_path / "checkpoint"))


def test_beside_a_continuous_query_availablenow_does_nothing_and_continuous_and_reset_are_refused(case):
    with cl.holding(case, cl.CONTINUOUS) as mine:
        assert mine
        with cl.holding(case, cl.AVAILABLE_NOW) as other:
            assert other is False
        with pytest.raises(cl.CheckpointBusy, match=f"continuous \\(pid {os.getpid()}\\)"), \
                cl.holding(case, cl.CONTINUOUS):
            pass
        with pytest.raises(cl.CheckpointBusy, match="a users stream query runs on checkpoint"), \
                cl.holding(case, cl.RESET):
            pass
    with cl.holding(case, cl.RESET) as mine:  # released with the connection
        assert mine


def test_continuous_waits_for_an_availablenow_run_to_end(case):
    acquired, released = [], []

    def continuous():
        with cl.holding(case, cl.CONTINUOUS) as mine:
            acquired.append((mine, time.monotonic()))

    with cl.holding(case, cl.AVAILABLE_NOW) as mine:
        assert mine
        waiter = threading.Thread(target=continuous)
        waiter.start()
        time.sleep(2.5)
        assert acquired == []  # still waiting
        released.append(time.monotonic())
    waiter.join(timeout=30)
    assert len(acquired) == 1 and acquired[0][0] is True and acquired[0][1] >= released[0]


def test_a_stop_while_waiting_gives_up(case):
    stop = threading.Event()
    with cl.holding(case, cl.AVAILABLE_NOW):
        threading.Timer(1.5, stop.set).start()
        with cl.holding(case, cl.CONTINUOUS, stop.is_set) as mine:
            assert mine is False


def test_other_checkpoints_are_independent(case, tmp_path):
    other = dataclasses.replace(case, STREAMING_CHECKPOINT_DIR=str(tmp_path / "other-checkpoint"))
    with cl.holding(case, cl.CONTINUOUS) as mine, cl.holding(other, cl.CONTINUOUS) as theirs:
        assert mine and theirs


def test_make_up_resets_the_stream_after_an_empty_broker_only_once_no_query_holds_it(case, tmp_path, capsys,
                                                                                    monkeypatch):
    """`make up` forgets the stream's positions and checkpoint when it started an empty broker; a query still
    holding the checkpoint is waited for, and when it outlasts the wait the reset is skipped with a note saying what
    to run, never done under it."""
    from test_streaming_support import free_port, start_private_broker

    from shopflow import db
    from shopflow.stack import broker as stack_broker
    from shopflow.streaming import ledger, query, topic_identity

    def positions():
        with db.pg_connection(settings) as conn, conn.cursor() as cur:
            return ledger.committed_positions(cur, settings.POSTGRES_SCHEMA, "users")

    port, tag = free_port(), os.urandom(4).hex()
    settings = dataclasses.replace(case, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}", KAFKA_TOPIC="users-fresh",
                                   POSTGRES_SCHEMA=f"t_fresh_{tag}")
    checkpoint = settings.streaming_checkpoint_dir
    broker = start_private_broker(port)
    try:
        db.apply_postgres_schema(settings)
        query.ensure_tables(settings)
        checkpoint.mkdir(parents=True)
        with db.pg_connection(settings) as conn, conn.cursor() as cur:  # positions the old broker's topic had
            ledger.advance(cur, settings.POSTGRES_SCHEMA, "users", 4, {"users-fresh": {"0": 7, "1": 3}})
        with cl.holding(settings, cl.CONTINUOUS):  # a `make stream` still running
            kept = not stack_broker.after_fresh_broker(settings, {"postgres", "kafka"}, wait_s=2)  # the mark stays
            assert kept and checkpoint.exists() and positions() == {"users-fresh": {"0": 7, "1": 3}}
            assert "the stream's committed positions were kept: a users stream query runs on checkpoint" in \
                capsys.readouterr().out
        held, waited_for, released = threading.Event(), threading.Event(), []
        say = stack_broker._say
        monkeypatch.setattr(stack_broker, "_say", lambda line: (say(line), waited_for.set()))

        def a_query_ending_soon():  # ends once the reset said it waits (a fixed hold raced the reset's start)
            with cl.holding(settings, cl.CONTINUOUS):
                held.set()
                waited_for.wait(60)
                time.sleep(0.5)
                released.append(time.monotonic())

        query_thread = threading.Thread(target=a_query_ending_soon)
        query_thread.start()
        assert held.wait(10)
        assert stack_broker.after_fresh_broker(settings, {"postgres", "kafka"}, wait_s=30)
        assert released, "the reset did not wait for the running query to release the checkpoint"
        assert not checkpoint.exists() and positions() == {}
        out = capsys.readouterr().out
        assert "the broker started empty (memory storage): forgot 2 committed stream position(s)" in out
        assert "  waiting for " in out and f", the run holding checkpoint {checkpoint}, to end" in out  # was silent
        query_thread.join()
        # a `make up` stopped after it started the broker, before this: the next one (the broker running) does it
        marked = dataclasses.replace(settings, LOCAL_STATE_DIR=str(tmp_path / "state"))
        with db.pg_connection(settings) as conn, conn.cursor() as cur:
            ledger.advance(cur, settings.POSTGRES_SCHEMA, "users", 5, {"users-fresh": {"0": 9}})
        stack_broker.after_start(marked, {"postgres", "kafka"}, fresh=False)  # no mark: a broker that ran before
        assert positions() == {"users-fresh": {"0": 9}}
        stack_broker.starting(marked)
        stack_broker.after_start(marked, {"postgres", "kafka"}, fresh=False)
        assert positions() == {} and not marked.fresh_broker_mark.exists()
        stack_broker.starting(marked)
        query.reset(marked)  # `stream_users --reset` by hand does what the next `make up` would have
        assert not marked.fresh_broker_mark.exists()
        # the stream committed on the running broker's topic since the mark was left: those positions are valid
        with db.pg_connection(settings) as conn, conn.cursor() as cur:
            ledger.advance(cur, settings.POSTGRES_SCHEMA, "users", 6, {"users-fresh": {"0": 2}})
            ledger.record_topic_id(cur, settings.POSTGRES_SCHEMA, "users", "users-fresh",
                                   topic_identity.current(settings.KAFKA_BOOTSTRAP_SERVERS, "users-fresh"))
        stack_broker.starting(marked)
        stack_broker.after_start(marked, {"postgres", "kafka"}, fresh=False)
        assert positions() == {"users-fresh": {"0": 2}} and not marked.fresh_broker_mark.exists()
    finally:
        broker.kill()
        with db.pg_connection(settings) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {settings.POSTGRES_SCHEMA} CASCADE")


def _end_sessions_of(settings, application: str) -> int:
    """What a Postgres restart does to the lock holder's session (its locks go with it)."""
    conn = cl._session(settings, "test: ends sessions")
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = %s",
                    (application,))
        return cur.fetchone()[0]
    finally:
        conn.close()


def test_a_lock_postgres_ended_is_taken_again_before_the_next_batch_or_the_query_stops(case):
    """Seen by the streaming review: after a Postgres restart the running query no longer held its checkpoint, and
    a DAG run could start a second query on it (one dies with CONCURRENT_STREAM_LOG_UPDATE and a Java trace)."""
    mine = f"shopflow stream_users continuous (pid {os.getpid()})"
    other = cl._session(case, "shopflow stream_users availableNow (another job)")
    try:
        with cl.holding(case, cl.CONTINUOUS) as held:
            assert held
            cl.verify(case)  # alive: nothing to do
            assert _end_sessions_of(case, mine) == 1
            cl.verify(case)  # taken again on a new session
            assert not cl._try(other.cursor(), case, "query"), "the lock was not taken again"
            assert _end_sessions_of(case, mine) == 1
            assert cl._try(other.cursor(), case, "query")  # a DAG run gets in meanwhile
            with pytest.raises(cl.CheckpointBusy, match=r"this query lost its lock on checkpoint .* when Postgres "
                                                        r"ended its session \(a restart\?\), and shopflow stream_users "
                                                        r"availableNow \(another job\)"):
                cl.verify(case)
    finally:
        other.close()
