"""The stream job SIGKILLed (JVM and all) and restarted: nothing lost, nothing applied twice."""
from __future__ import annotations

import shutil

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from shopflow.streaming import kafka_offsets as ko
from shopflow.streaming import offset_log, query
from test_streaming_support import (assert_exact, kill, make_events, pg_rows, pipeline_runs, produce, snapshot,
                                    start_job, stream_case, wait_for)

pytestmark = pytest.mark.integration
__all__ = ["stream_case"]

# The job, killed (SIGKILL to its whole process group) right after the Postgres commit of batch 1, before Spark
# records the batch in its checkpoint: the restart must replay batch 1 and find it already applied.
DIE_AFTER_COMMIT = """
import os, signal, sys
from shopflow.streaming import sink
apply = sink.UsersSink.__call__
def apply_then_die(self, batch, batch_id):
    apply(self, batch, batch_id)
    if batch_id == 1:
        os.killpg(0, signal.SIGKILL)
sink.UsersSink.__call__ = apply_then_die
from shopflow.jobs.stream_users import main
sys.exit(main(["--master", "local[1]"]))
"""


def _batches(settings) -> int:
    return pg_rows(settings, "SELECT count(*) FROM {s}.stream_batches")[0][0]


def test_killed_mid_stream_and_restarted_is_still_exact(spark, stream_case, tmp_path):
    events, expected_users, malformed = make_events(1000)
    produce(stream_case, events)
    job = start_job(stream_case, tmp_path / "job.log")
    try:
        wait_for(lambda: _batches(stream_case) >= 2, 300, "two committed batches", job)
    finally:
        kill(job)
    applied = pg_rows(stream_case, "SELECT coalesce(sum(next_offset), 0) FROM {s}.stream_offsets")[0][0]
    assert 0 < applied < 1000, (tmp_path / "job.log").read_text()[-3000:]

    query.run(spark, stream_case, query.AVAILABLE_NOW)

    assert_exact(stream_case, events, expected_users, malformed)


def test_batch_replayed_after_a_crash_between_commit_and_checkpoint_is_skipped(spark, stream_case, tmp_path):
    events, expected_users, malformed = make_events(1000)
    produce(stream_case, events)
    job = start_job(stream_case, tmp_path / "job.log", code=DIE_AFTER_COMMIT)
    try:
        job.wait(timeout=300)
    finally:
        kill(job)
    assert _batches(stream_case) == 2, (tmp_path / "job.log").read_text()[-3000:]

    query.run(spark, stream_case, query.AVAILABLE_NOW)

    assert_exact(stream_case, events, expected_users, malformed)
    ledger = pg_rows(stream_case, "SELECT batch_id FROM {s}.stream_batches ORDER BY ledger_id")
    assert [b for (b,) in ledger] == list(range(len(ledger)))  # batch 1 recorded once
    statuses = [(status, json_batch) for status, *_, json_batch in pipeline_runs(stream_case)]
    assert [s for s, detail in statuses if '"batch_id": 1,' in detail] == ["ok", "replayed"]


def test_lost_checkpoint_resumes_from_the_committed_positions(spark, stream_case):
    events, expected_users, malformed = make_events(600)
    produce(stream_case, events[:400])
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    shutil.rmtree(stream_case.streaming_checkpoint_dir)
    produce(stream_case, events[400:])

    query.run(spark, stream_case, query.AVAILABLE_NOW)

    assert_exact(stream_case, events, expected_users, malformed)
    assert sum(r[1] for r in pipeline_runs(stream_case)) == 600  # nothing read twice


@pytest.mark.parametrize("again", [100, 400], ids=["shorter", "longer"])
def test_recreated_topic_fails_loudly_until_reset_then_streams_again(spark, stream_case, again):
    """A new topic under the old name restarts its offsets at 0. While it holds fewer events than the positions, its
    end offsets say so; once it holds more (`longer`), only the broker's topic id does: the stream went on from the old
    positions and skipped the new topic's first events without a word."""
    first, users_first, malformed_first = make_events(200, seed=1)
    produce(stream_case, first)
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    admin = KafkaAdminClient(bootstrap_servers=stream_case.KAFKA_BOOTSTRAP_SERVERS)
    try:  # closed: a client left open retries the broker in the background after the stack is down
        admin.delete_topics([stream_case.KAFKA_TOPIC])
        wait_for(lambda: stream_case.KAFKA_TOPIC not in admin.list_topics(), 30, "the topic deletion")
        admin.create_topics([NewTopic(stream_case.KAFKA_TOPIC, stream_case.KAFKA_TOPIC_PARTITIONS, 1)])
    finally:
        admin.close()
    second, users_second, malformed_second = make_events(again, seed=2)
    produce(stream_case, second)  # offsets start again at 0, below the committed positions or past them

    if again < 200:  # the DAG's run asks first whether there is anything to stream: not "nothing to do", but an error
        with pytest.raises(ko.OffsetsWentBack, match="below the committed position"):
            query.pending_events(stream_case)
    else:
        assert query.pending_events(stream_case) > 0
    with pytest.raises(ko.OffsetsWentBack, match="the topic was deleted and created again"):  # before Spark reads
        query.run(spark, stream_case, query.AVAILABLE_NOW)
    query.reset(stream_case)
    query.run(spark, stream_case, query.AVAILABLE_NOW)

    # every event of both incarnations applied once; the rejected offsets repeat and are all kept
    assert_exact(stream_case, second, users_first | users_second, malformed_first + malformed_second)


def test_events_deleted_before_they_were_read_fail_the_dag_check_then_only_their_partition_skips(spark, stream_case,
                                                                                               monkeypatch):
    """Retention deleted events the stream had not read: `pending_events` (the DAG's first step) says they are lost
    and how to go on, instead of a run that fails on every retry. `--skip-deleted` then moves that partition alone
    (`--reset`, the advice before, replayed every partition). The local broker (tansu) deletes no records (no
    retention, no DeleteRecords), so its earliest offsets are read for real and then raised by hand."""
    produce(stream_case, make_events(100, seed=3)[0])
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    produce(stream_case, make_events(60, seed=4)[0])
    assert query.pending_events(stream_case) == 60  # the broker's real earliest offsets: nothing deleted

    committed = ko.of_topic(query.committed_start(stream_case, query.topic_partitions(stream_case)),
                            stream_case.KAFKA_TOPIC)
    high = ko.high_watermarks(stream_case.KAFKA_BOOTSTRAP_SERVERS, stream_case.KAFKA_TOPIC, committed)
    lost = max(committed, key=lambda p: high[p] - committed[p])  # a partition with at least 7 of the 60 unread
    assert high[lost] - committed[lost] >= 7
    earliest = {p: committed[p] + (7 if p == lost else 0) for p in committed}
    monkeypatch.setattr(ko, "earliest_offsets", lambda _bootstrap, _topic, partitions: {
        p: earliest[p] for p in partitions})
    with pytest.raises(ko.OffsetsDeleted, match="7 events were deleted .* before the stream read them.*--skip-del"):
        query.pending_events(stream_case)

    assert query.skip_deleted(stream_case) == {lost: (committed[lost], committed[lost] + 7)}
    assert not stream_case.streaming_checkpoint_dir.exists()
    assert query.pending_events(stream_case) == 60 - 7  # the other partitions kept their positions
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert query.pending_events(stream_case) == 0
    assert pg_rows(stream_case, "SELECT sum(events_read) FROM {s}.stream_batches")[0][0] == 100 + 60 - 7


def test_skip_deleted_deletes_the_checkpoint_even_when_no_position_moves(spark, stream_case):
    """The checkpoint can point at deleted events while the positions do not (a kill after the batch's Postgres
    commit, before Spark's own): `--skip-deleted` kept it whenever no position moved, and the next run failed again.
    Without the checkpoint the next run starts from the positions and applies nothing twice."""
    produce(stream_case, make_events(50, seed=5)[0])
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert stream_case.streaming_checkpoint_dir.exists()
    assert query.skip_deleted(stream_case) == {}
    assert not stream_case.streaming_checkpoint_dir.exists()
    before = snapshot(stream_case)
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert snapshot(stream_case) == before


def test_a_postgres_restored_under_a_kept_checkpoint_gets_every_event_again(spark, stream_case):
    """Spark resumes from its checkpoint, not from the positions in Postgres: with Postgres back at an older state
    (restored, or its schema recreated) and the checkpoint kept, the events between were skipped without a word."""
    events, expected_users, malformed = make_events(100, seed=5)
    produce(stream_case, events)
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert_exact(stream_case, events, expected_users, malformed)
    assert offset_log.resumes_at(stream_case.streaming_checkpoint_dir)  # read from Spark's own offset log
    for table in ("users", "rejected_user_events", "stream_offsets", "stream_batches"):  # Postgres as before them
        pg_rows(stream_case, f"DELETE FROM {{s}}.{table} RETURNING 1")
    assert query.pending_events(stream_case) == 100
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert_exact(stream_case, events, expected_users, malformed)


def test_a_postgres_restored_while_the_query_runs_stops_it_before_a_gap_then_the_restart_mends_it(
        spark, stream_case, monkeypatch):
    """The start's check (above) runs once; Postgres restored while the query ran: the next batch started above the
    positions, applied its own events and moved the positions past the events between, without a word."""
    first, second = make_events(100, seed=6), make_events(100, seed=7)
    produce(stream_case, first[0])
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    for table in ("users", "rejected_user_events", "stream_offsets", "stream_batches"):  # Postgres as before them
        pg_rows(stream_case, f"DELETE FROM {{s}}.{table} RETURNING 1")
    produce(stream_case, second[0])
    with monkeypatch.context() as during:  # as if restored after the query's start
        during.setattr(query, "drop_checkpoint_ahead", lambda settings, starting: None)
        with pytest.raises(Exception, match=r"PositionsBehind: batch \d+ starts above the stream's positions in "
                                            r"Postgres \(users-test-\w+-\d: no position, earliest offset 0 < \d+"):
            query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert pg_rows(stream_case, "SELECT count(*) FROM {s}.users")[0][0] == 0  # nothing of the batch written

    query.run(spark, stream_case, query.AVAILABLE_NOW)
    events = first[0] + second[0]
    expected = {**first[1], **second[1]}
    assert_exact(stream_case, events, expected, first[2] + second[2])


@pytest.mark.parametrize("damage", ["offset file truncated", "offset log deleted", "entry before the last deleted"])
def test_a_checkpoint_changed_outside_spark_ends_in_one_line_until_deleted(stream_case, tmp_path, damage):
    """Spark refuses a checkpoint changed by hand at every run: the job ended with a Python traceback and exit 1,
    nothing said what to do. Now exit 3 (a retry fails the same) and the line says how to go on; the positions in
    Postgres are intact, so the run after the deletion is exact."""
    events, expected_users, malformed = make_events(300)
    two_runs = damage == "entry before the last deleted"  # batches 0 and 1
    for run, part in enumerate((events[:100], events[100:200]) if two_runs else (events[:200],)):
        produce(stream_case, part)
        first = start_job(stream_case, tmp_path / f"first{run}.log")
        assert first.wait(timeout=300) == 0, (tmp_path / f"first{run}.log").read_text()[-3000:]
    produce(stream_case, events[200:])
    checkpoint = stream_case.streaming_checkpoint_dir
    latest = max(int(p.name) for p in (checkpoint / "offsets").iterdir() if p.name.isdigit())
    if damage == "offset file truncated":
        (checkpoint / "offsets" / str(latest)).write_bytes(b"")
    elif damage == "offset log deleted":
        shutil.rmtree(checkpoint / "offsets")
    else:  # Spark: "batch 0 doesn't exist", naming no file
        (checkpoint / "offsets" / str(latest - 1)).unlink()
    refused = start_job(stream_case, tmp_path / "refused.log")
    assert refused.wait(timeout=300) == 3, (tmp_path / "refused.log").read_text()[-3000:]
    log = (tmp_path / "refused.log").read_text()
    assert f"Spark cannot resume from the checkpoint {checkpoint} (" in log and f"(rm -r {checkpoint})" in log, log
    assert "Traceback" not in log, log[-3000:]
    shutil.rmtree(checkpoint)
    again = start_job(stream_case, tmp_path / "again.log")
    assert again.wait(timeout=300) == 0, (tmp_path / "again.log").read_text()[-3000:]
    assert_exact(stream_case, events, expected_users, malformed)
