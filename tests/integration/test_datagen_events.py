"""`datagen.events` against a real Kafka-protocol broker, each test on a topic of its own.

The topic is read back by assigning its partitions directly (no consumer group: the broker's group join is
slow) until nothing new arrives for a while (end offsets are not trusted, see PLATFORM.md).
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from datagen.event_model import BAD_KINDS, EventMix, validate_event
from datagen.events import ensure_topic, produce
from datagen.pools import build_pools
from shopflow.config import Settings
from shopflow.streaming import kafka_offsets as ko
from test_streaming_support import free_port, start_private_broker

pytestmark = pytest.mark.integration


@pytest.fixture
def topic_settings(kafka):
    """A topic of its own, deleted afterwards (the broker keeps topics in memory until `make down`)."""
    settings = dataclasses.replace(kafka, KAFKA_TOPIC=f"datagen-it-{uuid.uuid4().hex[:10]}")
    yield settings
    admin = KafkaAdminClient(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
    try:
        if settings.KAFKA_TOPIC in admin.list_topics():
            admin.delete_topics([settings.KAFKA_TOPIC])
    finally:
        admin.close()


def _partitions(consumer: KafkaConsumer, topic: str, timeout: float = 10.0) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout
    while not (partitions := consumer.partitions_for_topic(topic)):
        assert time.monotonic() < deadline, f"topic {topic} has no partitions"
        time.sleep(0.2)
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def consume_all(settings: Settings, quiet_seconds: float = 0.5, timeout_s: float = 120.0) -> list:
    """Every record up to each partition's end (read from a fetch response: tansu's ListOffsets lags), then any
    arriving within `quiet_seconds` more. A stop after 2 quiet seconds counted from the assign ended early once
    when the first fetch was slow to answer (as bench/stream_latency.py found)."""
    ends = ko.high_watermarks(settings.KAFKA_BOOTSTRAP_SERVERS, settings.KAFKA_TOPIC)
    consumer = KafkaConsumer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS.split(","), group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        tps = _partitions(consumer, settings.KAFKA_TOPIC)
        consumer.assign(tps)
        records, deadline = [], time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends.get(tp.partition, 0) for tp in tps):
            assert time.monotonic() < deadline, f"not every record up to {ends} within {timeout_s:.0f} s"
            records += [r for part in consumer.poll(timeout_ms=300).values() for r in part]
        quiet_until = time.monotonic() + quiet_seconds
        while time.monotonic() < quiet_until:
            records += [r for part in consumer.poll(timeout_ms=100).values() for r in part]
        return records
    finally:
        consumer.close()


def test_a_burst_with_bad_events_arrives_as_sent(topic_settings):
    assert ensure_topic(topic_settings) is True
    assert ensure_topic(topic_settings) is False  # "already exists" is tolerated
    mix = EventMix(random.Random(5), build_pools(5), bad_fraction=0.1, duplicate_fraction=0.1)
    sent, failed, _ = produce(topic_settings, mix, count=200, interval=1 / 500)
    records = consume_all(topic_settings)

    assert failed == 0 and sum(sent.values()) == len(records) == 200
    received = Counter(validate_event(r.value) or "good" for r in records)
    assert received == Counter({"good": sent["new"] + sent["update"]} | {k: sent[k] for k in BAD_KINDS if sent[k]})
    assert 8 <= sum(sent[k] for k in BAD_KINDS) <= 35 and sent["update"] > 0
    good = [r for r in records if validate_event(r.value) is None]
    assert all(r.key == json.loads(r.value)["email"].encode() for r in good)
    assert len({r.partition for r in records}) == topic_settings.KAFKA_TOPIC_PARTITIONS > 1
    partitions = topic_settings.KAFKA_TOPIC_PARTITIONS  # the Java client's map: an email's events stay in order
    assert all(r.partition == (murmur2(r.key) & 0x7FFFFFFF) % partitions for r in records if r.key)


def test_the_cli_creates_the_topic_logs_each_event_and_summarizes(topic_settings):
    env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": topic_settings.KAFKA_BOOTSTRAP_SERVERS,
                        "KAFKA_TOPIC": topic_settings.KAFKA_TOPIC}
    result = subprocess.run([sys.executable, "-m", "datagen.events", "--count", "3", "--interval", "0.2",
                             "--seed", "4", "--duplicate-fraction", "0"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"topic {topic_settings.KAFKA_TOPIC} created" in lines[0]
    assert len([line for line in lines if " new " in line and f"{topic_settings.KAFKA_TOPIC}[" in line]) == 3
    assert "sent 3 events" in lines[-1] and "new 3" in lines[-1] and "failed 0" in lines[-1]
    records = consume_all(topic_settings)
    assert sorted(json.loads(r.value)["email"] for r in records) == sorted(
        line.split("key=")[1].split()[0] for line in lines if "key=" in line)


def test_the_event_service_carries_on_after_the_broker_restarts(settings):
    """The stack's eventgen (one logged event at a time) outlives a stop and restart of the in-memory broker: after
    failed sends its producer is void for good on the new broker, so it starts over with a new producer and creates
    the topic again, with KAFKA_TOPIC_PARTITIONS partitions."""
    port = free_port()
    topic_settings = dataclasses.replace(settings, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
                                         KAFKA_TOPIC="datagen-restart")
    broker, lines, result = start_private_broker(port), [], []
    try:
        ensure_topic(topic_settings)
        mix = EventMix(random.Random(3), build_pools(3), bad_fraction=0.0, duplicate_fraction=0.0)
        producing = threading.Thread(target=lambda: result.append(
            produce(topic_settings, mix, count=40, interval=0.25, log_each=True, say=lines.append)))
        producing.start()
        _wait_for(lambda: len(lines) >= 3, "three events sent")
        broker.kill()
        broker.wait()
        _wait_for(lambda: any("FAILED" in line for line in lines), "a failed send while the broker is down")
        restarted_at = len(lines)  # before the restart: the generator sends its backlog as soon as the port opens
        broker = start_private_broker(port)  # empty: no topic, no producer ids
        producing.join(timeout=240)
        assert not producing.is_alive()
        _kinds, failed, _seconds = result[0]
        assert failed == sum("FAILED" in line for line in lines)
        after_restart = lines[restarted_at:]
        assert len(after_restart) >= 10 and all("FAILED" not in line for line in after_restart[1:]), "\n".join(lines)
        records = consume_all(topic_settings)
        assert sorted(r.key.decode() for r in records) == sorted(
            line.split("key=")[1].split()[0] for line in lines[restarted_at:] if "FAILED" not in line)
        consumer = KafkaConsumer(bootstrap_servers=topic_settings.KAFKA_BOOTSTRAP_SERVERS, group_id=None)
        try:  # created again by the generator, not auto-created by a produce with the broker's partition count
            assert len(consumer.partitions_for_topic(topic_settings.KAFKA_TOPIC)) == \
                topic_settings.KAFKA_TOPIC_PARTITIONS
        finally:
            consumer.close()
    finally:
        broker.kill()
        broker.wait()


def _wait_for(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
