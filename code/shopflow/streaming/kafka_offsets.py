"""Kafka offsets through kafka-python, without consumer groups (partitions are assigned directly).

Offsets travel as `{topic: {"<partition>": next_offset}}`, the JSON shape of Spark's Kafka source
(`startingOffsets`, progress reports), so the ledger, both sources and the checkpoints speak one format.

The end of a partition is the high watermark read from a fetch response, not `end_offsets()`: the local broker
(tansu) answers ListOffsets "latest" with a stale value after batched produces (PLATFORM.md), the fetch response
carries the true one.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

Offsets = dict[str, dict[str, int]]
EARLIEST = -2  # Spark's Kafka source: "-2 as an offset refers to earliest"
_BOOTSTRAP = threading.Lock()


class KafkaOffsetError(RuntimeError):
    """The broker did not answer in time, or a partition went backwards (topic recreated, broker restarted)."""


class OffsetsOutOfRange(KafkaOffsetError):
    """A committed position lies outside its partition's offsets: only a reset of the stream state helps, a retry
    fails the same way."""


class OffsetsWentBack(OffsetsOutOfRange):
    """A partition's end is below the committed position (topic recreated, broker lost its data)."""


class OffsetsDeleted(OffsetsOutOfRange):
    """A partition's earliest offset is above the committed position: the broker deleted events (retention) before
    the stream read them."""


SKIP_HINT = ("Go on from the earliest offsets the broker still has (python -m shopflow.jobs.stream_users "
             "--skip-deleted); the other partitions keep their positions.")
RESET_HINT = ("Reset the stream state (python -m shopflow.jobs.stream_users --reset) to start over from the earliest "
              "offsets.")


class BrokerUnreachable(RuntimeError):
    """No broker answered at the bootstrap address (not a KafkaOffsetError: callers that treat those as "no topic
    yet" must not read a stopped broker that way)."""


def open_consumer(bootstrap_servers: str, **config) -> KafkaConsumer:
    defaults = {"group_id": None, "enable_auto_commit": False, "fetch_max_wait_ms": 50,
                "request_timeout_ms": 30000, "consumer_timeout_ms": 1000, "bootstrap_timeout_ms": 10000}
    # kafka-python logs each failed connection attempt at ERROR (dozens while it backs off); the one error that
    # matters is raised below. One bootstrap at a time, so that each restores the level it found.
    quiet = logging.getLogger("kafka.net")
    with _BOOTSTRAP:
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            return KafkaConsumer(bootstrap_servers=bootstrap_servers, **(defaults | config))
        except (KafkaTimeoutError, KafkaConnectionError) as exc:
            raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from None
        finally:
            quiet.setLevel(level)


def topic_partitions(consumer: KafkaConsumer, topic: str, timeout_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        if time.monotonic() > deadline:
            raise KafkaOffsetError(f"topic {topic!r} has no partitions after {timeout_s:.0f} s (does it exist?)")
        consumer.poll(timeout_ms=200)  # refreshes metadata


def _probe_positions(consumer: KafkaConsumer, tps: list[TopicPartition], hints: dict[int, int]) -> None:
    # Fetch from one record before the best guess of the end, so a non-empty partition answers at once.
    guesses = consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, max(0, max(hints.get(tp.partition, 0), guesses.get(tp, 0)) - 1))


def _stable_offsets(consumer: KafkaConsumer) -> dict[int, int]:
    """{partition: last stable offset}, filled from the consumer's fetch responses as they arrive. kafka-python keeps
    their high watermark (`highwater`) but not their last stable offset (fetch v4+): its response parser is wrapped on
    this one consumer. Empty if that parser is not where this kafka-python version keeps it."""
    stable: dict[int, int] = {}
    fetcher = getattr(consumer, "_fetcher", None)
    parse = getattr(fetcher, "_parse_fetched_data", None)
    if parse is None:
        return stable

    def recording(completed_fetch):
        offset = getattr(completed_fetch.partition_data, "last_stable_offset", -1)
        if offset is not None and offset >= 0:
            stable[completed_fetch.topic_partition.partition] = offset
        return parse(completed_fetch)

    fetcher._parse_fetched_data = recording
    return stable


@contextmanager
def _answered(bootstrap_servers: str, topic: str) -> Iterator[None]:
    """kafka-python's own timeouts and lost connections after the bootstrap (a broker overloaded or stopped between
    the connect and the offsets request) as a KafkaOffsetError: one line and exit 2 from the stream job, and a stop
    the query's failure handling knows, instead of a traceback."""
    try:
        yield
    except (KafkaTimeoutError, KafkaConnectionError) as exc:
        # kafka-python's errors print their class name first
        raise KafkaOffsetError(f"{topic!r}: the broker at {bootstrap_servers} did not answer ({exc})") from None


def high_watermarks(bootstrap_servers: str, topic: str, hints: dict[int, int] | None = None,
                    timeout_s: float = 30.0) -> dict[int, int]:
    """{partition: end} of every partition of `topic`, taken from fetch responses: the high watermark, or the last
    stable offset below it while a transaction is open there. A read_committed consumer cannot pass an open
    transaction's first record: a batch planned up to the high watermark waited for it and failed after the reader's
    timeout (a Flink sink keeps one open for a whole checkpoint interval)."""
    consumer = open_consumer(bootstrap_servers, auto_offset_reset="earliest", max_poll_records=1,
                             isolation_level="read_committed")
    stable = _stable_offsets(consumer)
    try:
        with _answered(bootstrap_servers, topic):
            tps = [TopicPartition(topic, p) for p in topic_partitions(consumer, topic, timeout_s)]
            consumer.assign(tps)
            _probe_positions(consumer, tps, hints or {})
            deadline = time.monotonic() + timeout_s
            while any(consumer.highwater(tp) is None for tp in tps):
                if time.monotonic() > deadline:
                    raise KafkaOffsetError(f"no fetch response for {topic!r} within {timeout_s:.0f} s")
                consumer.poll(timeout_ms=100, max_records=1)
        return {tp.partition: min(consumer.highwater(tp), stable.get(tp.partition, consumer.highwater(tp)))
                for tp in tps}
    finally:
        consumer.close()


def earliest_offsets(bootstrap_servers: str, topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = open_consumer(bootstrap_servers)
    try:
        with _answered(bootstrap_servers, topic):
            found = consumer.beginning_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in found.items()}
    finally:
        consumer.close()


def starting_offsets(topic: str, partitions: list[int], committed: dict[int, int]) -> Offsets:
    """Where a query without a checkpoint starts: the committed position, else the earliest offset."""
    return {topic: {str(p): committed.get(p, EARLIEST) for p in partitions}}


def as_offsets(topic: str, positions: dict[int, int]) -> Offsets:
    return {topic: {str(p): int(o) for p, o in sorted(positions.items())}}


def of_topic(offsets: Offsets, topic: str) -> dict[int, int]:
    return {int(p): int(o) for p, o in offsets.get(topic, {}).items()}


def check_not_behind(topic: str, high: dict[int, int], positions: dict[int, int]) -> None:
    """Raises OffsetsWentBack when a partition's end offset is below its committed position (partitions the broker
    did not report are left alone)."""
    for p, position in sorted(positions.items()):
        if high.get(p, position) < position:
            raise OffsetsWentBack(
                f"{topic}-{p}: the broker's end offset {high.get(p)} is below the committed position {position}; the "
                f"topic was recreated or the broker lost its data. {RESET_HINT}")


def deleted_unread(earliest: dict[int, int], positions: dict[int, int]) -> dict[int, int]:
    """{partition: earliest offset} of the partitions whose earliest offset is above their committed position (the
    events between were deleted unread; partitions the broker did not report are left alone)."""
    return {p: earliest[p] for p, position in sorted(positions.items()) if earliest.get(p, position) > position}


def check_not_deleted(topic: str, earliest: dict[int, int], positions: dict[int, int]) -> None:
    """Raises OffsetsDeleted for the first partition `deleted_unread` gives."""
    if deleted := deleted_unread(earliest, positions):
        p, first = next(iter(deleted.items()))
        raise OffsetsDeleted(
            f"{topic}-{p}: the broker's earliest offset {first} is above the committed position {positions[p]}; "
            f"{first - positions[p]} events were deleted (retention) before the stream read them and are lost. "
            f"{SKIP_HINT}")


def lag(high: dict[int, int], positions: dict[int, int]) -> dict[int, int]:
    """Events still to read per partition (high watermark minus committed position, never negative)."""
    return {p: max(0, hw - positions.get(p, 0)) for p, hw in sorted(high.items())}
