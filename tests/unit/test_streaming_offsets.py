"""Offset arithmetic of the Kafka source and the COPY encoding of the sink (no servers)."""
from __future__ import annotations

import csv
import logging
import pickle

import pyarrow as pa
import pytest
from confluent_kafka import KafkaError
from pyspark.sql.pandas.types import to_arrow_schema
from unit_support import closed_port

from shopflow.streaming import kafka_offsets as ko
from shopflow.streaming.kafka_source import (SOURCE_SCHEMA, KafkaPythonSource, KafkaRange, KafkaStreamReader, _read,
                                             KafkaTask, admit, read_error, record_batch, split)
from shopflow.streaming.ledger import _csv


def test_admit_everything_without_a_limit():
    assert admit({0: 5, 1: 0}, {0: 9, 1: 3, 2: 4}, None) == {0: 9, 1: 3, 2: 4}


def test_admit_shares_the_limit_max_min_fairly():
    # partition 1 has little to give; what it leaves goes to the others
    assert admit({0: 0, 1: 0, 2: 0}, {0: 100, 1: 2, 2: 100}, 10) == {0: 4, 1: 2, 2: 4}
    assert sum(admit({0: 0, 1: 0, 2: 0}, {0: 100, 1: 100, 2: 100}, 10).values()) == 10


def test_admit_never_goes_past_the_high_watermark_or_backwards():
    assert admit({0: 7}, {0: 7}, 10) == {0: 7}
    assert admit({0: 7}, {0: 9}, 1) == {0: 8}


def test_starting_offsets_fall_back_to_earliest():
    assert ko.starting_offsets("t", [0, 1, 2], {1: 40}) == {"t": {"0": -2, "1": 40, "2": -2}}
    assert ko.of_topic({"t": {"0": 3}, "u": {"0": 9}}, "t") == {0: 3}
    assert ko.lag({0: 10, 1: 5}, {0: 4}) == {0: 6, 1: 5}


def test_reader_and_ranges_pickle_without_consumers():
    reader = KafkaStreamReader({"bootstrapServers": "h:1", "topic": "t", "maxEventsPerBatch": "100"})
    clone = pickle.loads(pickle.dumps(reader))
    assert (clone.topic, clone.max_events, clone.target) == ("t", 100, None)
    assert clone.getDefaultReadLimit().max_rows == 100
    task = pickle.loads(pickle.dumps(KafkaTask([KafkaRange("t", 2, 10, 20)])))
    assert [(r.topic, r.partition, r.start, r.end) for r in task.ranges] == [("t", 2, 10, 20)]
    tasks = reader.partitions({"t": {"0": 5, "1": 3}}, {"t": {"0": 5, "1": 8}})
    assert [_spans(t) for t in tasks] == [[(1, 3, 8)]]  # empty ranges skipped
    assert KafkaPythonSource.name() == "shopflow_kafka"


def _spans(task: KafkaTask) -> list[tuple[int, int, int]]:
    return [(r.partition, r.start, r.end) for r in task.ranges]


def test_read_tasks_cut_the_batch_evenly_across_partition_borders():
    ranges = [KafkaRange("t", 0, 0, 40), KafkaRange("t", 1, 5, 35), KafkaRange("t", 2, 7, 37)]  # 40 + 30 + 30
    assert [_spans(t) for t in split(ranges, 2)] == [[(0, 0, 40), (1, 5, 15)], [(1, 15, 35), (2, 7, 37)]]
    for n in range(1, 12):
        tasks = split(ranges, n)
        sizes = [sum(r.end - r.start for r in t.ranges) for t in tasks]
        assert len(tasks) == n and max(sizes) - min(sizes) <= 1 and sum(sizes) == 100
        spans = [s for t in tasks for s in _spans(t)]  # every offset exactly once, in order
        for p, r in enumerate(ranges):
            mine = [s for s in spans if s[0] == p]
            assert mine[0][1] == r.start and mine[-1][2] == r.end
            assert all(a[2] == b[1] for a, b in zip(mine, mine[1:]))


def test_read_tasks_off_or_more_than_records_keep_one_task_per_partition():
    ranges = [KafkaRange("t", 0, 0, 2), KafkaRange("t", 1, 0, 1)]
    assert [_spans(t) for t in split(ranges, 0)] == [[(0, 0, 2)], [(1, 0, 1)]]
    assert [_spans(t) for t in split(ranges, 5)] == [[(0, 0, 2)], [(1, 0, 1)]]
    assert split([], 2) == []
    reader = KafkaStreamReader({"bootstrapServers": "h:1", "topic": "t", "readTasks": "2"})
    tasks = reader.partitions({"t": {"0": 0, "1": 0}}, {"t": {"0": 6, "1": 2}})
    assert [_spans(t) for t in tasks] == [[(0, 0, 4)], [(0, 4, 6), (1, 0, 2)]]


def test_committed_position_above_the_broker_end_fails_loudly(monkeypatch):
    reader = KafkaStreamReader({"bootstrapServers": "h:1", "topic": "t"})
    monkeypatch.setattr(ko, "high_watermarks", lambda *a, **k: {0: 3})
    with pytest.raises(ko.OffsetsWentBack, match="below the committed position"):
        reader.latestOffset({"t": {"0": 10}}, None)


def test_a_committed_position_below_the_broker_earliest_offset_counts_the_deleted_events():
    ko.check_not_deleted("t", {0: 5, 1: 0}, {0: 5, 1: 3, 2: 9})  # at or above the earliest; 2 not reported
    with pytest.raises(ko.OffsetsDeleted, match=r"t-1: .* earliest offset 12 .* position 3; 9 events were deleted"):
        ko.check_not_deleted("t", {0: 5, 1: 12}, {0: 5, 1: 3})


@pytest.mark.parametrize("code, no_retry", [(KafkaError._AUTO_OFFSET_RESET, True),
                                            (KafkaError.OFFSET_OUT_OF_RANGE, True),
                                            (KafkaError._TRANSPORT, False)])
def test_a_fetch_out_of_the_broker_range_is_not_retried(code, no_retry):
    error = read_error(KafkaRange("t", 1, 3, 10), 4, KafkaError(code))
    assert isinstance(error, ko.OffsetsOutOfRange) is no_retry and isinstance(error, ko.KafkaOffsetError)
    assert str(error).startswith("t-1: ") and "(reading offsets 4..10)" in str(error)
    assert ("--reset" in str(error)) is no_retry


def test_available_now_freezes_the_target(monkeypatch):
    reader = KafkaStreamReader({"bootstrapServers": "h:1", "topic": "t"})
    ends = iter([{0: 5}, {0: 50}])
    monkeypatch.setattr(ko, "high_watermarks", lambda *a, **k: next(ends))
    reader.prepareForTriggerAvailableNow()
    assert reader.latestOffset({"t": {"0": 0}}, None) == {"t": {"0": 5}}
    assert reader.latestOffset({"t": {"0": 5}}, None) == {"t": {"0": 5}}  # nothing new: the query ends


def test_copy_csv_keeps_null_apart_from_text_with_quotes_commas_and_newlines():
    table = pa.table({"a": ["Zoë"], "b": pa.array([None], pa.string()), "c": ['a "b", c\nd'], "d": [12]})
    text = _csv(table).getvalue().decode()
    assert text == '"Zoë",,"a ""b"", c\nd","12"\n'
    assert list(csv.reader(text.splitlines(keepends=True))) == [["Zoë", "", 'a "b", c\nd', "12"]]


class _Message:
    """What confluent-kafka's Message answers (methods, not attributes)."""

    def __init__(self, key, value, topic, partition, offset, timestamp, error=None):
        self._fields = (key, value, topic, partition, offset, timestamp)
        self._error = error

    def error(self): return self._error  # noqa: E704

    def key(self): return self._fields[0]  # noqa: E704
    def value(self): return self._fields[1]  # noqa: E704
    def topic(self): return self._fields[2]  # noqa: E704
    def partition(self): return self._fields[3]  # noqa: E704
    def offset(self): return self._fields[4]  # noqa: E704
    def timestamp(self): return self._fields[5]  # noqa: E704


def test_record_batch_has_the_arrow_schema_spark_expects():
    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE
    batch = record_batch([_Message(b"k", b"\xff", "t", 1, 7, (TIMESTAMP_CREATE_TIME, 1_700_000_000_123)),
                          _Message(None, None, "t", 1, 8, (TIMESTAMP_NOT_AVAILABLE, -1)),
                          _Message(b"k", b"{}", "t", 1, 9, (TIMESTAMP_LOG_APPEND_TIME, 0))])
    assert batch.schema.equals(to_arrow_schema(SOURCE_SCHEMA, timezone="UTC"))
    assert batch.column("timestamp").to_pylist()[0].isoformat() == "2023-11-14T22:13:20.123000+00:00"
    assert batch.to_pydict()["value"] == [b"\xff", None, b"{}"] and batch.column("timestamp")[1].as_py() is None
    assert batch.to_pydict()["timestampType"] == [0, -1, 1] and batch.to_pydict()["offset"] == [7, 8, 9]


def test_a_create_time_beyond_the_microseconds_range_is_null_not_a_failed_read():
    from confluent_kafka import TIMESTAMP_CREATE_TIME
    nanoseconds = 1_700_000_000_123_456_789  # a producer that sent time.time_ns() as its timestamp
    batch = record_batch([_Message(b"k", b"{}", "t", 0, 1, (TIMESTAMP_CREATE_TIME, nanoseconds)),
                          _Message(b"k", b"{}", "t", 0, 2, (TIMESTAMP_CREATE_TIME, (2**63 - 1) // 1000))])
    assert batch.column("timestamp")[0].as_py() is None and batch.column("timestamp")[1].is_valid

class _Consumer:
    """Answers `consume` with the given lists of messages in turn (what `_read` asks of librdkafka's Consumer)."""

    def __init__(self, *calls):
        self.calls, self.assigned = list(calls), None

    def assign(self, partitions): self.assigned = partitions  # noqa: E704
    def consume(self, num_messages, timeout): return self.calls.pop(0) if self.calls else []  # noqa: E704


def _records(partition, offsets):
    from confluent_kafka import TIMESTAMP_CREATE_TIME
    return [_Message(None, b"{}", "t", partition, o, (TIMESTAMP_CREATE_TIME, 0)) for o in offsets]


def test_read_skips_a_stale_error_and_stale_records_of_the_partition_read_before():
    stale = _Message(None, None, "t", 0, 9, (0, -1), error=KafkaError(KafkaError.OFFSET_OUT_OF_RANGE))
    consumer = _Consumer([stale] + _records(0, [10]) + _records(1, [5, 6]), _records(1, [7]))
    batches = list(_read(consumer, KafkaRange("t", 1, 5, 8), timeout_s=1))
    assert [o for b in batches for o in b.to_pydict()["offset"]] == [5, 6, 7]
    assert {b for batch in batches for b in batch.to_pydict()["partition"]} == {1}


@pytest.mark.parametrize("partition", [1, None])
def test_read_fails_on_an_error_of_its_partition_or_of_the_client(partition):
    error = _Message(None, None, "t", partition, 5, (0, -1), error=KafkaError(KafkaError.OFFSET_OUT_OF_RANGE))
    with pytest.raises(ko.OffsetsOutOfRange, match="t-1: .*Broker: Offset out of range.* deleted these events"):
        list(_read(_Consumer([error]), KafkaRange("t", 1, 5, 8), timeout_s=1))


def test_a_stopped_broker_is_one_clear_error_not_no_topic(caplog):
    address = f"127.0.0.1:{closed_port()}"
    with caplog.at_level(logging.DEBUG, logger="kafka"):
        with pytest.raises(ko.BrokerUnreachable, match=f"cannot reach Kafka at {address}"):
            ko.open_consumer(address, bootstrap_timeout_ms=1500)
    # kafka-python's per-attempt connection errors stay out of the log; the raised error is the one message
    assert not [r for r in caplog.records if r.name.startswith("kafka.net") and r.levelno >= logging.WARNING]
    assert not issubclass(ko.BrokerUnreachable, ko.KafkaOffsetError)  # query.topic_partitions reads those as "no topic"


@pytest.mark.parametrize("call", ["earliest", "high_watermarks"])
def test_a_broker_that_stops_answering_after_the_connect_is_an_offset_error(monkeypatch, call):
    """kafka-python's KafkaTimeoutError from `beginning_offsets` / `end_offsets` went past the stream job's one-line
    exits (KafkaOffsetError) as a traceback."""
    from kafka.errors import KafkaTimeoutError

    class Stalled:
        def partitions_for_topic(self, _topic):
            return {0}

        def assign(self, _tps):
            pass

        def beginning_offsets(self, _tps):
            raise KafkaTimeoutError("Failed to get offsets by timestamps in 30000 ms")

        end_offsets = beginning_offsets

        def close(self):
            pass

    monkeypatch.setattr(ko, "open_consumer", lambda *args, **kwargs: Stalled())
    stalled = (r"^'users-data': the broker at 127\.0\.0\.1:1 did not answer \(KafkaTimeoutError: Failed to get offsets "
               r"by timestamps in 30000 ms\)$")  # kafka-python's class name once, not twice
    with pytest.raises(ko.KafkaOffsetError, match=stalled):
        if call == "earliest":
            ko.earliest_offsets("127.0.0.1:1", "users-data", [0])
        else:
            ko.high_watermarks("127.0.0.1:1", "users-data")


@pytest.mark.parametrize("position, kept", [(300, False), (500, True)])
def test_a_checkpoint_without_a_committed_batch_resumes_where_sparks_kafka_source_first_started(tmp_path, position,
                                                                                                kept):
    """Spark's Kafka source (compose's STREAMING_SOURCE=kafka) keeps the offsets of its first start in sources/0/0 and
    starts batch 0 there at every restart. A first run that failed before its batch committed, then Postgres restored
    to older positions: the checkpoint was kept (no commit to compare), and the events between were skipped."""
    import dataclasses
    import json

    from shopflow.config import get_settings
    from shopflow.streaming import offset_log
    from shopflow.streaming.query import drop_checkpoint_ahead

    settings = dataclasses.replace(get_settings(), STREAMING_CHECKPOINT_DIR=str(tmp_path / "checkpoint"))
    topic, checkpoint = settings.KAFKA_TOPIC, settings.streaming_checkpoint_dir
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "offsets" / "0").write_text(f'v1\n{{"batchWatermarkMs":0}}\n{{"{topic}":{{"0":900}}}}')
    (checkpoint / "sources" / "0").mkdir(parents=True)
    (checkpoint / "sources" / "0" / "0").write_bytes(b"\0v1\n" + json.dumps({topic: {"0": 500}}).encode())
    assert offset_log.resumes_at(checkpoint) == {topic: {"0": 500}}
    drop_checkpoint_ahead(settings, {topic: {"0": position}})
    assert checkpoint.exists() == kept
