"""Wiring of the users stream: source (by `STREAMING_SOURCE`), trigger, checkpoint and the foreachBatch sink.

A query without a checkpoint starts from the positions committed in Postgres (else the earliest offsets), so
losing `.local/checkpoints` neither replays applied events nor skips new ones; a checkpoint past those positions (a
Postgres restored under it) is deleted before the query starts (`drop_checkpoint_ahead`).
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
from typing import Callable

from pyspark.sql import SparkSession

from postgresdb.streaming_ddl import streaming_ddl

from shopflow.config import Settings
from shopflow.db import pg_connection
from shopflow.streaming import events as ev
from shopflow.streaming import kafka_offsets as ko
from shopflow.streaming import ledger, offset_log, topic_identity
from shopflow.streaming.checkpoint_lock import AVAILABLE_NOW, CONTINUOUS
from shopflow.streaming.sink import STREAM, UsersSink
from shopflow.streaming.source import source_frame, stop_file

log = logging.getLogger(__name__)
STOP_POLL_S = 1.0
BATCH_END_WAIT_S = 30.0  # a stop waits this long at most for the micro-batch in flight (manager.JOB_STOP_GRACE_S: 60)


def ensure_tables(settings: Settings, applying: bool = True) -> None:
    """The stream's own tables (idempotent); `users` comes with the source schema. `applying` (a run that will
    upsert users): raises ledger.EmailKeyMissing when `users` lacks the index the upsert matches users by."""
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('shopflow.schema'))")
        for statement in streaming_ddl(settings.POSTGRES_SCHEMA):
            cur.execute(statement)
        if applying:
            ledger.check_email_identity(cur, settings.POSTGRES_SCHEMA)


def topic_partitions(settings: Settings, timeout_s: float = 10.0) -> list[int]:
    """The topic's partitions; [] while it does not exist (created by kafka-init / the event generator)."""
    consumer = ko.open_consumer(settings.KAFKA_BOOTSTRAP_SERVERS)
    try:
        return ko.topic_partitions(consumer, settings.KAFKA_TOPIC, timeout_s)
    except ko.KafkaOffsetError:
        return []
    finally:
        consumer.close()


def pending_events(settings: Settings) -> int | None:
    """Events in the topic above the committed positions (None: no topic). 0 means a run has nothing to do: no
    unapplied batch can hide in the checkpoint either, since the positions move with the data they cover. A partition
    whose end is below its committed position raises OffsetsWentBack (the query would: not "nothing to do"), one whose
    earliest offset is above it OffsetsDeleted (the query would fail on every retry)."""
    partitions = topic_partitions(settings)
    if not partitions:
        return None
    ensure_tables(settings)
    with pg_connection(settings) as conn, conn.cursor() as cur:
        committed = _committed(cur, settings)
    high = ko.high_watermarks(settings.KAFKA_BOOTSTRAP_SERVERS, settings.KAFKA_TOPIC, committed)
    ko.check_not_behind(settings.KAFKA_TOPIC, high, committed)
    pending = ko.lag(high, committed)
    if behind := [p for p, n in pending.items() if n and p in committed]:  # only then can events have been deleted
        earliest = ko.earliest_offsets(settings.KAFKA_BOOTSTRAP_SERVERS, settings.KAFKA_TOPIC, behind)
        ko.check_not_deleted(settings.KAFKA_TOPIC, earliest, committed)
    return sum(pending.values())


def _committed(cur, settings: Settings) -> dict[int, int]:
    """{partition: position} of the stream in the topic, as committed in Postgres."""
    return ko.of_topic(ledger.committed_positions(cur, settings.POSTGRES_SCHEMA, STREAM), settings.KAFKA_TOPIC)


def committed_start(settings: Settings, partitions: list[int]) -> ko.Offsets:
    with pg_connection(settings) as conn, conn.cursor() as cur:
        committed = _committed(cur, settings)
    return ko.starting_offsets(settings.KAFKA_TOPIC, partitions, committed)


def drop_checkpoint_ahead(settings: Settings, starting: ko.Offsets) -> None:
    """A query resumes from its checkpoint, not from `starting`: a checkpoint past the positions committed in Postgres
    (Postgres restored from a backup, or its schema recreated, the checkpoint kept) would skip the events between,
    which the sink's filter guards only from below. Such a checkpoint is deleted: the query starts from the positions.
    A partition without a position compares with the broker's earliest offset. A checkpoint of another topic only
    (KAFKA_TOPIC changed, a checkpoint copied) is deleted too: every retry failed on its offsets."""
    topic = settings.KAFKA_TOPIC
    try:
        logged = offset_log.resumes_at(settings.streaming_checkpoint_dir)
    except (OSError, ValueError, IndexError):  # none, or one Spark reads (or refuses) itself
        return
    if logged and topic not in logged:
        log.warning("the checkpoint %s is of topic %s, not %s: deleted, the stream goes on from its positions in "
                    "Postgres", settings.streaming_checkpoint_dir, ", ".join(sorted(logged)), topic)
        _delete_checkpoint(settings)
        return
    resumes = ko.of_topic(logged, topic)
    existing = ko.of_topic(starting, topic)  # the topic's partitions now: a position, or EARLIEST (-2)
    floor = {p: o for p, o in existing.items() if o >= 0}
    if missing := sorted(p for p in resumes if p in existing and p not in floor):
        floor |= ko.earliest_offsets(settings.KAFKA_BOOTSTRAP_SERVERS, topic, missing)
    if ahead := {p: (floor[p], o) for p, o in sorted(resumes.items()) if p in floor and o > floor[p]}:
        log.warning("the checkpoint %s would resume the stream past its positions in Postgres (%s): the events "
                    "between were never applied here (Postgres restored, or its schema recreated?). Deleted: the "
                    "stream goes on from the positions", settings.streaming_checkpoint_dir,
                    ", ".join(f"{topic}-{p}: {position} < {o}" for p, (position, o) in ahead.items()))
        _delete_checkpoint(settings)


def _resolved(settings: Settings, starting: ko.Offsets) -> ko.Offsets:
    """`starting` with each -2 (no position) the earliest offset: where a first batch starts (`planned_range`)."""
    topic = settings.KAFKA_TOPIC
    offsets = ko.of_topic(starting, topic)
    if unknown := [p for p, o in offsets.items() if o < 0]:
        offsets |= ko.earliest_offsets(settings.KAFKA_BOOTSTRAP_SERVERS, topic, unknown)
    return ko.as_offsets(topic, offsets)


def start(spark: SparkSession, settings: Settings, mode: str, partitions: list[int],
          stopping: Callable[[], bool] = lambda: False):
    """Starts the query; `mode` availableNow drains what the topic holds and stops, continuous runs until stopped
    (`stopping`: true once `query.stop()` is called, see UsersSink)."""
    ensure_tables(settings)
    topic_id = topic_identity.check_at_start(settings, STREAM)  # before the positions are read
    checkpoint, starting = settings.streaming_checkpoint_dir, committed_start(settings, partitions)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    drop_checkpoint_ahead(settings, starting)
    offset_log.check_readable(checkpoint)  # one Spark would refuse: it names no file
    # parsed and validated on the streaming frame: the plan is built once per query, not per micro-batch (building it
    # in foreachBatch took ~0.5 s of py4j calls and re-analysis per batch, a quarter of a continuous batch's time)
    validated = (source_frame(spark, settings, starting)
                 .transform(ev.parse_events).transform(ev.validate_events))
    writer = (validated.writeStream
              .queryName(f"{STREAM}-stream")
              .option("checkpointLocation", str(checkpoint))
              .foreachBatch(UsersSink(settings, mode, stopping, _resolved(settings, starting), topic_id)))
    if mode == AVAILABLE_NOW:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{settings.STREAMING_TRIGGER_SECONDS:g} seconds")
    log.info("users stream (%s, source %s) from %s, checkpoint %s", mode, settings.STREAMING_SOURCE,
             settings.KAFKA_TOPIC, checkpoint)
    stop_file(settings).unlink(missing_ok=True)  # one left by a query killed while stopping would read nothing
    return writer.start()


def run(spark: SparkSession, settings: Settings, mode: str = AVAILABLE_NOW,
        stop_requested: Callable[[], bool] = lambda: False) -> bool:
    """Runs the query to its end (availableNow) or until `stop_requested()` (polled every second). A topic that does
    not exist yet is nothing to drain (False) for availableNow; continuous mode waits for it.

    Stopping is polled, not signalled into a blocked call: an exception raised inside a py4j call (a signal handler
    raising KeyboardInterrupt during awaitTermination) can leave the gateway unusable, and the query then cannot be
    stopped cleanly."""
    partitions = topic_partitions(settings)
    while not partitions and mode == CONTINUOUS and not stop_requested():
        log.info("waiting for topic %s to be created", settings.KAFKA_TOPIC)
        partitions = topic_partitions(settings, timeout_s=30)
    if stop_requested():  # also a stop that came while the session started: no query
        return False
    if not partitions:
        log.warning("topic %s does not exist yet: nothing to stream", settings.KAFKA_TOPIC)
        return False
    stopping = threading.Event()  # set just before query.stop(), which interrupts a batch still in flight
    query = start(spark, settings, mode, partitions, stopping.is_set)
    try:
        while not query.awaitTermination(STOP_POLL_S) and not stop_requested():
            pass
        if query.isActive:
            stop_file(settings).touch()  # our source admits no new batch: the one in flight is the last
        _wait_for_batch_end(query)
    finally:
        if query.isActive:
            stopping.set()
            query.stop()
        stop_file(settings).unlink(missing_ok=True)
    return True


def _wait_for_batch_end(query) -> None:
    """`query.stop()` interrupts a micro-batch in flight: nothing is lost (its Postgres transaction is not committed,
    the next run applies the batch), but the interrupted foreachBatch gets py4j's ERROR with the Python traceback,
    and Spark's stream thread, matching that long message against a regex to tell a stop from a failure, overflowed
    its stack: a thousand lines of Java frames on Ctrl-C whenever a batch ran. So a stop waits, up to
    BATCH_END_WAIT_S, for the trigger to be idle between batches."""
    deadline = time.monotonic() + BATCH_END_WAIT_S
    if query.isActive and query.status.get("isTriggerActive"):
        log.info("stopping: waiting for the micro-batch in flight to end (at most %.0f s)", BATCH_END_WAIT_S)
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)


def skip_deleted(settings: Settings) -> dict[int, tuple[int, int]]:
    """Moves each partition whose unread events the broker deleted (retention) up to its earliest offset, and
    deletes the checkpoint, always: the next run starts from the positions (the checkpoint itself may point at the
    deleted events, behind positions committed just before a kill). The other partitions keep their positions, so
    nothing already applied is applied again. Returns {partition: (old position, new position)} of those moved."""
    if settings.streaming_checkpoint_dir.exists():  # before the positions move: refused, nothing changed
        offset_log.check_only_checkpoint(settings.streaming_checkpoint_dir)
    partitions = topic_partitions(settings)
    ensure_tables(settings, applying=False)
    with pg_connection(settings) as conn, conn.cursor() as cur:
        ledger.lock_stream(cur, settings.POSTGRES_SCHEMA, STREAM)
        committed = _committed(cur, settings)
        known = sorted(p for p in committed if p in partitions)
        earliest = ko.earliest_offsets(settings.KAFKA_BOOTSTRAP_SERVERS, settings.KAFKA_TOPIC, known) if known else {}
        moved = {p: (committed[p], first) for p, first in ko.deleted_unread(earliest, committed).items()}
        ledger.move_positions(cur, settings.POSTGRES_SCHEMA, STREAM, settings.KAFKA_TOPIC,
                              {p: new for p, (_, new) in moved.items()})
    _delete_checkpoint(settings)
    return moved


def _delete_checkpoint(settings: Settings) -> None:
    """A checkpoint that is not there is fine; one that cannot be deleted is an error (not a silent resume from it),
    and so is a directory holding other files (`offset_log.NotACheckpoint`)."""
    if settings.streaming_checkpoint_dir.exists():
        offset_log.check_only_checkpoint(settings.streaming_checkpoint_dir)
        shutil.rmtree(settings.streaming_checkpoint_dir)


def reset(settings: Settings) -> int:
    """Deletes the checkpoint and the committed positions: the next run starts from the earliest offsets."""
    _delete_checkpoint(settings)
    ensure_tables(settings, applying=False)
    with pg_connection(settings) as conn, conn.cursor() as cur:
        ledger.lock_stream(cur, settings.POSTGRES_SCHEMA, STREAM)
        removed = ledger.reset_positions(cur, settings.POSTGRES_SCHEMA, STREAM)
    settings.fresh_broker_mark.unlink(missing_ok=True)  # what `make up` would have done next (stack/broker.py)
    return removed
