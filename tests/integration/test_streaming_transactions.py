"""Events from a transactional producer (Kafka Connect's exactly-once sources, Flink): each committed transaction
ends in a control record, which takes an offset no consumer sees; an aborted transaction's events are never applied."""
from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer

from shopflow.streaming import kafka_offsets as ko
from shopflow.streaming import query
from test_streaming_support import pg_rows, stream_case

pytestmark = pytest.mark.integration
__all__ = ["stream_case"]


def _event(email: str, status: str = "Gold") -> bytes:
    return json.dumps({"first_name": "T", "last_name": "X", "email": email, "phone": None,
                       "registration_date": "2024-01-01T00:00:00Z", "loyalty_status": status}).encode()


def _producer(settings, name: str) -> Producer:
    producer = Producer({"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS, "transactional.id": name})
    producer.init_transactions(10)
    return producer


def _send(producer: Producer, settings, emails: list[str], commit: bool, status: str = "Gold") -> None:
    producer.begin_transaction()
    for email in emails:
        producer.produce(settings.KAFKA_TOPIC, key=email.encode(), value=_event(email, status), partition=0)
    (producer.commit_transaction if commit else producer.abort_transaction)(10)


def test_committed_transactions_are_applied_and_their_markers_leave_nothing_pending(spark, stream_case, caplog):
    producer = _producer(stream_case, f"tx-{stream_case.KAFKA_TOPIC}")
    _send(producer, stream_case, ["a@x.io", "b@x.io"], commit=True)
    _send(producer, stream_case, ["c@x.io"], commit=False)  # aborted: never applied
    _send(producer, stream_case, ["d@x.io"], commit=True)
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert [r[0] for r in pg_rows(stream_case, "SELECT email FROM {s}.users ORDER BY 1")] == ["a@x.io", "b@x.io",
                                                                                           "d@x.io"]
    end = ko.high_watermarks(stream_case.KAFKA_BOOTSTRAP_SERVERS, stream_case.KAFKA_TOPIC)[0]
    assert end > 4  # 3 events and their transactions' markers (offsets no consumer sees)
    assert pg_rows(stream_case, "SELECT next_offset FROM {s}.stream_offsets WHERE kafka_partition = 0") == [(end,)]
    assert query.pending_events(stream_case) == 0  # the DAG's next run starts no Spark for nothing

    _send(producer, stream_case, ["e@x.io"], commit=True)  # a restart from the checkpoint: not taken for one ahead
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert "would resume the stream past its positions" not in caplog.text
    assert len(pg_rows(stream_case, "SELECT 1 FROM {s}.users")) == 4 and query.pending_events(stream_case) == 0


def test_an_open_transaction_holds_back_only_its_own_events(spark, stream_case):
    """Planned up to the high watermark, a batch waited for the open transaction's records, which a read_committed
    consumer cannot pass, and failed after the reader's timeout with the committed event before them unapplied."""
    producer = _producer(stream_case, f"tx-open-{stream_case.KAFKA_TOPIC}")
    _send(producer, stream_case, ["a@x.io"], commit=True)
    producer.begin_transaction()
    producer.produce(stream_case.KAFKA_TOPIC, key=b"b@x.io", value=_event("b@x.io"), partition=0)
    producer.flush(10)
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert pg_rows(stream_case, "SELECT email FROM {s}.users") == [("a@x.io",)]
    assert query.pending_events(stream_case) == 0  # the open transaction's event is not readable yet

    producer.commit_transaction(10)
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert pg_rows(stream_case, "SELECT email FROM {s}.users ORDER BY 1") == [("a@x.io",), ("b@x.io",)]
    end = ko.high_watermarks(stream_case.KAFKA_BOOTSTRAP_SERVERS, stream_case.KAFKA_TOPIC)[0]
    assert pg_rows(stream_case, "SELECT next_offset FROM {s}.stream_offsets WHERE kafka_partition = 0") == [(end,)]
