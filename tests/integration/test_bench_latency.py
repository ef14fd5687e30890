"""The continuous run's latency: each event is timed to the commit of the batch that applied it, found by its Kafka
position in the ledger's offset ranges."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from kafka import KafkaProducer
from test_streaming_support import stream_case  # noqa: F401

from bench.stream_latency import _latencies
from shopflow import db

pytestmark = pytest.mark.integration


def test_two_events_of_one_user_are_each_timed_to_their_own_batch(stream_case):  # noqa: F811
    """The same email in two batches: the first event is timed to the first batch. The harness joined events to
    `users` by email and timed both to the first commit after the user's last update, the first one 4 s late."""
    settings, start = stream_case, datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
    for seconds in (0, 4):
        event = {"first_name": "A", "last_name": "B", "email": "same@example.com", "registration_date": "2024-01-01",
                 "loyalty_status": "Gold", "event_time": (start + timedelta(seconds=seconds)).isoformat()}
        producer.send(settings.KAFKA_TOPIC, json.dumps(event).encode(), partition=0)
    producer.flush()
    producer.close()
    others = {str(p): 0 for p in range(1, settings.KAFKA_TOPIC_PARTITIONS)}
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        for batch, (end, committed_s) in enumerate(((1, 1.5), (2, 5.25))):
            ranges = {settings.KAFKA_TOPIC: {"0": end, **others}}
            cur.execute(f"INSERT INTO {settings.POSTGRES_SCHEMA}.stream_batches (stream, batch_id, start_offsets, "
                        "end_offsets, events_read, users_upserted, users_changed, events_rejected, committed_at) "
                        "VALUES ('users', %s, %s, %s, 1, 1, 1, 0, %s)",
                        (batch, json.dumps({}), json.dumps(ranges), start + timedelta(seconds=committed_s)))
    count, p50, p95, worst = _latencies(settings, start.isoformat(), sent=2)
    assert (count, p50, worst) == (2, 1.375, 1.5)  # 1.5 s and 1.25 s
    assert p95 == pytest.approx(1.4875)
    with pytest.raises(RuntimeError, match="2 events on the topic after the warm-up, where 3 were sent"):
        _latencies(settings, start.isoformat(), sent=3)  # a short read of the topic was measured as it came


def test_an_event_no_batch_applied_is_an_error_not_left_out(stream_case):  # noqa: F811
    settings = stream_case
    producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
    producer.send(settings.KAFKA_TOPIC, json.dumps({"event_time": "2026-01-05T12:00:00+00:00"}).encode(), partition=0)
    producer.flush()
    producer.close()
    with pytest.raises(RuntimeError, match="1 of the 1 measured events are in no committed batch's range"):
        _latencies(settings, "2026-01-05T00:00:00+00:00", sent=1)
