"""The foreachBatch sink: one micro-batch = one Postgres transaction (users, dead letters, positions, ledger).

Exactly-once effect: foreachBatch is at-least-once (after a crash Spark replays the last planned batch with the
same id and offsets). Under a per-stream advisory lock the sink reads the committed positions, keeps only rows at
or above them, writes those and advances the positions in the same transaction. A replayed batch therefore finds
nothing new and writes nothing; a partially applied range (checkpoint lost, restarted from the ledger) writes
only the rest. The batch's users are collected to the driver: `STREAMING_MAX_EVENTS_PER_BATCH` bounds them (and the
length rules their fields); its dead letters, raw and of any size, are fetched a bounded part at a time."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopflow.config import Settings
from shopflow.db import pg_connection
from shopflow.runlog import RunRecord, clip, record_run_or_warn
from shopflow.streaming import events as ev
from shopflow.streaming import kafka_offsets as ko
from shopflow.streaming import checkpoint_lock, dead_letters, ledger, offset_log, topic_identity

log = logging.getLogger(__name__)
STREAM = "users"
JOB = "stream_users"
INTERRUPTED = "a stop interrupted this batch: nothing of it was committed, the next run applies it"


@dataclass
class BatchResult:
    batch_id: int
    events_read: int = 0
    events_new: int = 0
    users_upserted: int = 0
    users_inserted: int = 0
    users_updated: int = 0
    events_rejected: int = 0
    start_offsets: ko.Offsets = field(default_factory=dict)
    end_offsets: ko.Offsets = field(default_factory=dict)
    positions: ko.Offsets = field(default_factory=dict)  # after the batch (ledger.advance keeps the greater)
    seconds: dict[str, float] = field(default_factory=dict)  # per phase: read, transform, write

    @property
    def replayed(self) -> bool:
        return self.events_read > 0 and self.events_new == 0


def _offsets(rows, column: str) -> ko.Offsets:
    found: ko.Offsets = {}
    for row in rows:
        found.setdefault(row.topic, {})[str(row.partition)] = int(row[column])
    return found


def _user_table(validated: DataFrame) -> pa.Table:
    """The batch's latest row per email and partition with its place in Kafka (Postgres picks the latest per user),
    collected as Arrow (columnar from the executors: no Row objects)."""
    latest = validated.transform(ev.valid_users).transform(ev.latest_per_email)
    return latest.select(*ledger.USER_FIELDS, F.unix_micros("registration_date").alias("registration_micros"),
                         "partition", "offset", F.unix_micros("timestamp").alias("sent_micros")).toArrow()


class _Clock:
    def __init__(self, seconds: dict[str, float]):
        self.seconds, self.last = seconds, time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase], self.last = round(now - self.last, 3), now


def apply_batch(cur, schema: str, batch: DataFrame, batch_id: int,
                planned: tuple[ko.Offsets, ko.Offsets] | None = None,
                earliest: Callable[[str, list[int]], dict[int, int]] | None = None,
                written: ko.Offsets | None = None) -> BatchResult:
    """Writes the new rows of `batch` (rows of `events.validate_events`, parsed and validated on the streaming frame)
    on `cur` (the caller commits). The batch is cached; one job summarizes it (the Kafka read), one collects the
    users, one the dead letters if any (more when they are large: `dead_letters`). `planned`: the batch's (start,
    end) offsets from Spark's offset log: the positions move to its end past offsets that hold no visible record,
    and a start above the positions is refused (`offset_log.PositionsBehind`; `earliest`: the broker's first offsets
    of partitions without a position; `written`: the positions after this query's previous batch, `gaps`)."""
    ledger.lock_stream(cur, schema, STREAM)
    positions = ledger.committed_positions(cur, schema, STREAM)
    if planned and earliest and (behind := offset_log.gaps(planned[0], positions, earliest, written)):
        raise offset_log.PositionsBehind(
            f"batch {batch_id} starts above the stream's positions in Postgres ({'; '.join(behind[:3])}): Postgres "
            "was restored or its schema recreated while the stream ran (or the checkpoint was half deleted), and the "
            "events between were never applied here. Nothing of the batch was written; the stream's next start "
            "resumes from the positions in Postgres")
    result = BatchResult(batch_id)
    clock = _Clock(result.seconds)
    validated = batch.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        summary = validated.transform(ev.batch_summary(positions)).collect()
        result.events_read = sum(s.read for s in summary)
        spans = [s for s in summary if s.events]
        result.events_new = sum(s.events for s in spans)
        result.start_offsets = _offsets(spans, "first_offset")
        result.end_offsets = offset_log.past_invisible(_offsets(spans, "next_offset"), positions, planned)
        result.positions = offset_log.merged(positions, result.end_offsets)
        clock.lap("read")
        if not spans:  # nothing to apply; a range of invisible records only still moves its position
            if result.end_offsets:
                ledger.advance(cur, schema, STREAM, batch_id, result.end_offsets)
            return result
        fresh = validated.transform(ev.unapplied(positions))
        users = _user_table(fresh)
        clock.lap("transform")
        if sizes := {(s.topic, s.partition): s.rejected_bytes or 0 for s in spans if s.rejected}:
            result.events_rejected = dead_letters.write(cur, schema, batch_id, fresh, sizes)
    finally:
        validated.unpersist()
    result.users_upserted, result.users_inserted, result.users_updated = ledger.upsert_users(cur, schema, users)
    ledger.advance(cur, schema, STREAM, batch_id, result.end_offsets)
    ledger.record_batch(cur, schema, STREAM, batch_id, result.start_offsets, result.end_offsets, asdict(result))
    clock.lap("write")
    return result


class UsersSink:
    """`writeStream.foreachBatch(UsersSink(settings, mode, stopping, starting))`; runs on the driver (`starting`: the
    offsets the query started from). One pipeline_runs row per
    batch: status ok | replayed | failed | stopped, rows read / written (inserted + changed users) / rejected, detail
    JSON with the consumer lag at the end of the batch and the seconds per phase. `stopping()` true when a batch
    fails: the stop interrupted it (`query.stop()` after the wait for an idle trigger ran out), so the row says
    `stopped`, not `failed`: nothing of the batch was committed, and the next run applies it."""

    def __init__(self, settings: Settings, mode: str, stopping: Callable[[], bool] = lambda: False,
                 starting: ko.Offsets | None = None, topic_id: str | None = None):
        self.settings, self.mode, self.stopping, self.starting = settings, mode, stopping, starting or {}
        self.topic_id = topic_id  # the broker's id of the topic when the query started (topic_identity)
        self.written: ko.Offsets | None = None  # the positions after this query's last committed batch

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        record, started = RunRecord(job=JOB, table_name="users", mode=self.mode), time.monotonic()
        planned = offset_log.planned_range(self.settings.streaming_checkpoint_dir, batch_id, self.starting)
        try:
            checkpoint_lock.verify(self.settings)  # still this checkpoint's only query (a Postgres restart ends locks)
            topic_identity.check_unchanged(self.settings, self.topic_id)  # the batch's offsets are that topic's
            with pg_connection(self.settings) as conn, conn.cursor() as cur:
                result = apply_batch(cur, self.settings.POSTGRES_SCHEMA, batch, batch_id, planned, self._earliest,
                                     self.written)
            self.written = result.positions  # committed
        except BaseException as error:
            stopped = self.stopping()
            record.status = "stopped" if stopped else "failed"
            record.detail = self._detail(batch_id, error=clip(str(error), 1_500),
                                         **({"stopped": INTERRUPTED} if stopped else {}))
            raise
        else:
            self._describe(record, result)
        finally:
            record.seconds = round(time.monotonic() - started, 3)
            record.finished_at = datetime.now(timezone.utc).replace(tzinfo=None)
            record_run_or_warn(self.settings, record, what=f"batch {batch_id}")

    def _earliest(self, topic: str, partitions: list[int]) -> dict[int, int]:
        return ko.earliest_offsets(self.settings.KAFKA_BOOTSTRAP_SERVERS, topic, partitions)

    def _detail(self, batch_id: int, **fields) -> str:
        return json.dumps({"topic": self.settings.KAFKA_TOPIC, "batch_id": batch_id, **fields})

    def _describe(self, record: RunRecord, result: BatchResult) -> None:
        record.status = "replayed" if result.replayed else "ok"
        record.rows_read, record.rows_written = result.events_read, result.users_inserted + result.users_updated
        record.rows_rejected = result.events_rejected
        lag = self._lag(result.batch_id)
        record.detail = self._detail(
            result.batch_id, events_new=result.events_new, events_rejected=result.events_rejected,
            users_upserted=result.users_upserted,
            users_inserted=result.users_inserted, users_updated=result.users_updated,
            lag=sum(lag.values()) if lag is not None else None, lag_by_partition=lag,
            end_offsets=result.end_offsets, phase_seconds=result.seconds)
        log.info("batch %s %s: %s", result.batch_id, record.status, record.detail)

    def _lag(self, batch_id: int) -> dict[str, int] | None:
        """Events left in the topic after this batch: high watermarks minus the committed positions."""
        topic = self.settings.KAFKA_TOPIC
        try:
            with pg_connection(self.settings) as conn, conn.cursor() as cur:
                positions = ko.of_topic(ledger.committed_positions(cur, self.settings.POSTGRES_SCHEMA, STREAM), topic)
            high = ko.high_watermarks(self.settings.KAFKA_BOOTSTRAP_SERVERS, topic, positions, timeout_s=10)
            return {str(p): n for p, n in ko.lag(high, positions).items()}
        except Exception as error:  # metrics must not fail a committed batch
            log.warning("batch %s: consumer lag unavailable: %s", batch_id, error)
            return None
