"""A Kafka streaming source on PySpark 4's Python Data Source API (`format("shopflow_kafka")`): offsets and planning
over kafka-python (kafka_offsets), the data path over confluent-kafka (librdkafka: 17x kafka-python's read rate
from the local broker, measured in the bench).

Used where Spark's Kafka connector jar is not available (the local stack). It yields the connector's columns
(key, value, topic, partition, offset, timestamp, timestampType) and its offset JSON, so the rest of the job is
one code path for both sources.

- Offsets are per-partition Kafka offsets: `{topic: {"<partition>": next_offset}}`.
- `latestOffset` takes the partition ends from fetch-response high watermarks (not `end_offsets()`, see
  kafka_offsets) and honours the read limit (`maxEventsPerBatch` -> ReadMaxRows), shared fairly between partitions.
- Trigger.AvailableNow: `prepareForTriggerAvailableNow` freezes the target ends; the query drains up to them and ends.
- Option `stopFile`: while that file exists `latestOffset` admits nothing new, so the trigger goes idle after the
  micro-batch in flight and the query's stop interrupts no batch (`streaming.source.stop_file`).
- Read tasks: one per partition with data, or with `readTasks` = n the batch cut into n equal tasks (`split`; the
  job passes its task slots: 3 partitions on 2 slots would read in two waves). A task may hold the end of one
  partition and the start of the next.
- Reader objects are pickled to the planner and to executors: no consumer lives on them; `read()` opens its own
  (its group id is never joined, nothing is committed), reads each of the task's [start, end) ranges assigned to
  that partition alone, closes it.
- A partition whose end is below the committed position (topic recreated, in-memory broker restarted) fails the
  query with a clear message instead of skipping or re-reading silently (like the connector's failOnDataLoss).
"""
from __future__ import annotations

import json
import os
import time
from typing import Iterator

import pyarrow as pa
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaError, TopicPartition
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows, SupportsTriggerAvailableNow
from pyspark.sql.types import (BinaryType, IntegerType, LongType, StringType, StructField, StructType,
                               TimestampType)

from shopflow.streaming import kafka_offsets as ko

SOURCE_SCHEMA = StructType([
    StructField("key", BinaryType()), StructField("value", BinaryType()), StructField("topic", StringType()),
    StructField("partition", IntegerType()), StructField("offset", LongType()),
    StructField("timestamp", TimestampType()), StructField("timestampType", IntegerType())])
# What Spark expects of a RecordBatch for SOURCE_SCHEMA (pyspark.sql.pandas.types.to_arrow_schema, tz UTC).
ARROW_SCHEMA = pa.schema([("key", pa.binary()), ("value", pa.binary()), ("topic", pa.string()),
                          ("partition", pa.int32()), ("offset", pa.int64()),
                          ("timestamp", pa.timestamp("us", tz="UTC")), ("timestampType", pa.int32())])
READ_TIMEOUT_S = 60.0
CONSUME_BATCH = 10_000


class KafkaRange(InputPartition):
    def __init__(self, topic: str, partition: int, start: int, end: int):
        super().__init__((topic, partition, start, end))
        self.topic, self.partition, self.start, self.end = topic, partition, start, end


class KafkaTask(InputPartition):
    """One read task: offset ranges read one after the other with one consumer (of one or of several partitions)."""

    def __init__(self, ranges: list[KafkaRange]):
        super().__init__(tuple(r.value for r in ranges))
        self.ranges = list(ranges)


def split(ranges: list[KafkaRange], tasks: int) -> list[KafkaTask]:
    """`ranges` cut into `tasks` tasks of equal size (±1 record), in partition and offset order: a task may take the
    end of one partition and the start of the next. tasks <= 0 (or fewer records than tasks): one task per range."""
    total = sum(r.end - r.start for r in ranges)
    if tasks <= 0 or total < tasks:
        return [KafkaTask([r]) for r in ranges]
    sizes = iter([total // tasks + (i < total % tasks) for i in range(tasks)])  # the first ones take the remainder
    out, current, room = [], [], next(sizes)
    for r in ranges:
        start = r.start
        while start < r.end:
            take = min(room, r.end - start)
            current.append(KafkaRange(r.topic, r.partition, start, start + take))
            start, room = start + take, room - take
            if room == 0:
                out.append(KafkaTask(current))
                current, room = [], next(sizes, 0)
    return out


class KafkaPythonSource(DataSource):
    """Options: bootstrapServers, topic, startingOffsets ("earliest" or offsets JSON), maxEventsPerBatch (0 = all),
    readTasks (0 = one read task per partition with data; n = the batch cut into n equal tasks, see `split`)."""

    @classmethod
    def name(cls) -> str:
        return "shopflow_kafka"

    def schema(self) -> StructType:
        return SOURCE_SCHEMA

    def streamReader(self, schema) -> "KafkaStreamReader":
        return KafkaStreamReader(self.options)  # case-insensitive keys


def admit(start: dict[int, int], high: dict[int, int], max_rows: int | None) -> dict[int, int]:
    """End offsets for one batch: everything up to `high`, or at most `max_rows` shared max-min fairly."""
    available = {p: max(0, high[p] - start.get(p, 0)) for p in high}
    if max_rows is None:
        return {p: start.get(p, 0) + n for p, n in available.items()}
    end, budget = {}, max_rows
    for i, p in enumerate(sorted(available, key=available.get)):
        take = min(available[p], budget // (len(available) - i))
        end[p], budget = start.get(p, 0) + take, budget - take
    return end


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options):
        self.bootstrap = options["bootstrapServers"]
        self.topic = options["topic"]
        self.starting = options.get("startingOffsets", "earliest")
        self.max_events = int(options.get("maxEventsPerBatch", "0")) or None
        self.read_tasks = int(options.get("readTasks", "0"))
        self.stop_file = options.get("stopFile", "")  # while it exists, no new data: the query is stopping
        self.target: dict[int, int] | None = None  # frozen ends under Trigger.AvailableNow
        self.latest: dict[int, int] | None = None

    def initialOffset(self) -> dict:
        high = ko.high_watermarks(self.bootstrap, self.topic)
        earliest = ko.earliest_offsets(self.bootstrap, self.topic, list(high))
        start = {p: earliest[p] for p in high}
        if self.starting != "earliest":
            given = ko.of_topic(json.loads(self.starting), self.topic)
            start |= {p: o for p, o in given.items() if o >= 0}
        return ko.as_offsets(self.topic, start)

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_events) if self.max_events else ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        self.target = self._high_watermarks({})

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        if self.stop_file and os.path.exists(self.stop_file):  # the trigger goes idle: a stop interrupts no batch
            return start
        begin = ko.of_topic(start, self.topic)
        high = self.target if self.target is not None else self._high_watermarks(begin)
        ko.check_not_behind(self.topic, high, begin)
        high = {p: high.get(p, begin.get(p, 0)) for p in set(high) | set(begin)}
        max_rows = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        return ko.as_offsets(self.topic, admit(begin, high, max_rows))

    def reportLatestOffset(self) -> dict | None:
        return ko.as_offsets(self.topic, self.latest) if self.latest is not None else None

    def _high_watermarks(self, hints: dict[int, int]) -> dict[int, int]:
        self.latest = ko.high_watermarks(self.bootstrap, self.topic, hints)
        return self.latest

    def partitions(self, start: dict, end: dict) -> list[KafkaTask]:
        begin, finish = ko.of_topic(start, self.topic), ko.of_topic(end, self.topic)
        return split([KafkaRange(self.topic, p, begin.get(p, 0), e)
                      for p, e in sorted(finish.items()) if e > begin.get(p, 0)], self.read_tasks)

    def read(self, partition: KafkaTask) -> Iterator[pa.RecordBatch]:
        return read_ranges(self.bootstrap, partition.ranges)

    def commit(self, end: dict) -> None:
        """Nothing to do: positions live in Spark's checkpoint and in the Postgres ledger, not in Kafka."""


# librdkafka's fetch.wait.max.ms. Against tansu 10 ms made fetches return a few hundred records each once a partition
# held ~300k events (one reader: ~600 events/s while the broker burnt 1.5 cores; a 1M-event drain stalled); 25 ms and
# more read the same 334k-event partition in 1.6-1.7 s. The wait only applies when the range's data is not there yet.
FETCH_WAIT_MS = 100


def _reader(bootstrap: str) -> Consumer:
    """librdkafka consumer for the data path; assigned partitions only (the group id is never joined or committed)."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "shopflow-stream-reader",
                     "enable.auto.commit": False, "auto.offset.reset": "error", "fetch.wait.max.ms": FETCH_WAIT_MS,
                     "queued.min.messages": 100_000})


def read_ranges(bootstrap: str, ranges: list[KafkaRange],
                timeout_s: float = READ_TIMEOUT_S) -> Iterator[pa.RecordBatch]:
    """Records [start, end) of each range in turn with one consumer, one Arrow batch per consume call (no per-row
    conversion in Python beyond the column lists); fails rather than waiting forever or skipping lost offsets."""
    consumer = _reader(bootstrap)
    try:
        for part in ranges:
            yield from _read(consumer, part, timeout_s)
    finally:
        consumer.close()


def _read(consumer: Consumer, part: KafkaRange, timeout_s: float) -> Iterator[pa.RecordBatch]:
    """One range on an open consumer, which it (re)assigns to the range's partition alone."""
    consumer.assign([TopicPartition(part.topic, part.partition, part.start)])
    position, idle_since = part.start, time.monotonic()
    while position < part.end:
        messages = consumer.consume(num_messages=min(CONSUME_BATCH, part.end - position), timeout=0.5)
        for message in messages:
            # an error of the partition read before the re-assign is stale; one naming no partition is the client's
            if message.error() and message.partition() in (None, part.partition):
                raise read_error(part, position, message.error())
        records = [m for m in messages if m.offset() < part.end and m.partition() == part.partition]
        if records:
            idle_since, position = time.monotonic(), max(position, records[-1].offset() + 1)
            yield record_batch(records)
        elif time.monotonic() - idle_since > timeout_s:
            raise ko.KafkaOffsetError(f"{part.topic}-{part.partition}: no data at offset {position} "
                                      f"(want up to {part.end}) within {timeout_s:.0f} s")
        else:  # control records (transactions) take offsets but reach no consumer
            position = max(position, consumer.position([TopicPartition(part.topic, part.partition)])[0].offset)


def read_error(part: KafkaRange, position: int, error: KafkaError) -> ko.KafkaOffsetError:
    """The error a failed fetch raises: out of the broker's range (auto.offset.reset=error; events deleted by retention,
    or the topic recreated) is not retried, anything else may be."""
    where = f"{part.topic}-{part.partition}: {error} (reading offsets {position}..{part.end})"
    if error.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
        return ko.OffsetsOutOfRange(f"{where}; the broker deleted these events (retention) or the topic was "
                                    f"recreated. Retention: {ko.SKIP_HINT} Recreated: {ko.RESET_HINT}")
    return ko.KafkaOffsetError(where)


# librdkafka timestamp types -> Spark's timestampType (0 CreateTime, 1 LogAppendTime)
_TIMESTAMP_TYPES = {TIMESTAMP_CREATE_TIME: 0, TIMESTAMP_LOG_APPEND_TIME: 1}
# A producer's CreateTime is whatever it sent: one in nanoseconds (time.time_ns()) overflowed the microseconds'
# int64 and failed the read for good. Outside 0..this, the timestamp is NULL, as for a negative one.
_MAX_TIMESTAMP_MS = (2**63 - 1) // 1000


def _micros(kind: int, ms: int) -> int | None:
    return ms * 1000 if kind in _TIMESTAMP_TYPES and 0 <= ms <= _MAX_TIMESTAMP_MS else None


def record_batch(messages) -> pa.RecordBatch:
    """librdkafka messages as the columns of Spark's Kafka source (timestamps ms -> us)."""
    stamps = [m.timestamp() for m in messages]
    columns = [[m.key() for m in messages], [m.value() for m in messages], [m.topic() for m in messages],
               [m.partition() for m in messages], [m.offset() for m in messages],
               [_micros(kind, ms) for kind, ms in stamps],
               [_TIMESTAMP_TYPES.get(kind, -1) for kind, _ in stamps]]
    return pa.RecordBatch.from_arrays([pa.array(c, f.type) for c, f in zip(columns, ARROW_SCHEMA, strict=True)],
                                      schema=ARROW_SCHEMA)
