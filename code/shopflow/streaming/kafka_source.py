"""A Kafka streaming source on PySpark 4's Python Data Source API, over kafka-python (`format("shopflow_kafka")`).

Used where Spark's Kafka connector jar is not available (the local stack). It yields the connector's columns
(key, value, topic, partition, offset, timestamp, timestampType) and its offset JSON, so the rest of the job is
one code path for both sources.

- Offsets are per-partition Kafka offsets: `{topic: {"<partition>": next_offset}}`.
- `latestOffset` takes the partition ends from fetch-response high watermarks (not `end_offsets()`, see
  kafka_offsets) and honours the read limit (`maxEventsPerBatch` -> ReadMaxRows), shared fairly between partitions.
- Trigger.AvailableNow: `prepareForTriggerAvailableNow` freezes the target ends; the query drains up to them and ends.
- Reader objects are pickled to the planner and to executors: no consumer lives on them; `read()` opens its own,
  assigned to one partition (no consumer group), reads [start, end) and closes it.
- A partition whose end is below the committed position (topic recreated, in-memory broker restarted) fails the
  query with a clear message instead of skipping or re-reading silently (like the connector's failOnDataLoss).
"""
from __future__ import annotations

import json
import time
from typing import Iterator

import pyarrow as pa
from kafka import TopicPartition
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


class KafkaRange(InputPartition):
    def __init__(self, topic: str, partition: int, start: int, end: int):
        super().__init__((topic, partition, start, end))
        self.topic, self.partition, self.start, self.end = topic, partition, start, end


class KafkaPythonSource(DataSource):
    """Options: bootstrapServers, topic, startingOffsets ("earliest" or offsets JSON), maxEventsPerBatch (0 = all)."""

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
        begin = ko.of_topic(start, self.topic)
        high = self.target if self.target is not None else self._high_watermarks(begin)
        for p, position in begin.items():
            if high.get(p, position) < position:
                raise ko.KafkaOffsetError(
                    f"{self.topic}-{p}: the broker's end offset {high.get(p)} is below the committed position "
                    f"{position}; the topic was recreated or the broker lost its data. Reset the stream state "
                    f"(python -m shopflow.jobs.stream_users --reset) to start over from the earliest offsets.")
        high = {p: high.get(p, begin.get(p, 0)) for p in set(high) | set(begin)}
        max_rows = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        return ko.as_offsets(self.topic, admit(begin, high, max_rows))

    def reportLatestOffset(self) -> dict | None:
        return ko.as_offsets(self.topic, self.latest) if self.latest is not None else None

    def _high_watermarks(self, hints: dict[int, int]) -> dict[int, int]:
        self.latest = ko.high_watermarks(self.bootstrap, self.topic, hints)
        return self.latest

    def partitions(self, start: dict, end: dict) -> list[KafkaRange]:
        begin, finish = ko.of_topic(start, self.topic), ko.of_topic(end, self.topic)
        return [KafkaRange(self.topic, p, begin.get(p, 0), e)
                for p, e in sorted(finish.items()) if e > begin.get(p, 0)]

    def read(self, partition: KafkaRange) -> Iterator[pa.RecordBatch]:
        return read_range(self.bootstrap, partition)

    def commit(self, end: dict) -> None:
        """Nothing to do: positions live in Spark's checkpoint and in the Postgres ledger, not in Kafka."""


def read_range(bootstrap: str, part: KafkaRange, timeout_s: float = READ_TIMEOUT_S) -> Iterator[pa.RecordBatch]:
    """Records [start, end) of one partition, one Arrow batch per poll (no per-row conversion in Python);
    fails rather than waiting forever or skipping lost offsets."""
    consumer = ko.open_consumer(bootstrap, auto_offset_reset="none", max_poll_records=5000)
    tp = TopicPartition(part.topic, part.partition)
    try:
        consumer.assign([tp])
        consumer.seek(tp, part.start)
        position, idle_since = part.start, time.monotonic()
        while position < part.end:
            records = [r for r in consumer.poll(timeout_ms=500).get(tp, []) if r.offset < part.end]
            if records:
                idle_since = time.monotonic()
                yield record_batch(records)
            elif time.monotonic() - idle_since > timeout_s:
                raise ko.KafkaOffsetError(f"{part.topic}-{part.partition}: no data at offset {position} "
                                          f"(want up to {part.end}) within {timeout_s:.0f} s")
            position = max(position, consumer.position(tp))
    finally:
        consumer.close()


def record_batch(records) -> pa.RecordBatch:
    """kafka-python ConsumerRecords as the columns of Spark's Kafka source (timestamps ms -> us)."""
    columns = [[r.key for r in records], [r.value for r in records], [r.topic for r in records],
               [r.partition for r in records], [r.offset for r in records],
               [r.timestamp * 1000 if r.timestamp >= 0 else None for r in records],
               [r.timestamp_type for r in records]]
    return pa.RecordBatch.from_arrays([pa.array(c, f.type) for c, f in zip(columns, ARROW_SCHEMA, strict=True)],
                                      schema=ARROW_SCHEMA)
