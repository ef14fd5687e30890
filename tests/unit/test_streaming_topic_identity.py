"""The topic's identity before each micro-batch (`topic_identity.check_unchanged`); the check at a query's start runs
against tansu in tests/integration/test_streaming_recovery.py."""
from __future__ import annotations

import dataclasses

import pytest
from confluent_kafka import KafkaError, KafkaException

from shopflow.config import get_settings
from shopflow.streaming import kafka_offsets as ko
from shopflow.streaming import topic_identity


@pytest.mark.parametrize("started_with, now, fails", [
    ("A", "A", False),
    ("A", "B", True),  # deleted and created again while the query ran
    ("A", None, False),  # the broker gave no id this time: the offsets' own checks stay
    (None, "B", False),  # the query started without one: nothing to compare
])
def test_a_batch_of_a_topic_created_again_under_the_running_query_fails(monkeypatch, started_with, now, fails):
    asked = []
    monkeypatch.setattr(topic_identity, "current", lambda servers, topic: asked.append(topic) or now)
    settings = dataclasses.replace(get_settings(), KAFKA_TOPIC="users-data")
    if fails:
        with pytest.raises(ko.OffsetsWentBack, match=r"users-data: the topic was deleted and created again \(its id "
                                                     r"is now B; the committed positions are for A\)"):
            topic_identity.check_unchanged(settings, started_with)
    else:
        topic_identity.check_unchanged(settings, started_with)
    assert asked == ([] if started_with is None else ["users-data"])


def _broker(monkeypatch, answer):
    """An admin client whose describe_topics future gives `answer` (an exception is raised by `result`)."""
    class Future:
        def result(self, timeout):
            if isinstance(answer, BaseException):
                raise answer
            return answer

    class Admin:
        def describe_topics(self, topics, request_timeout):
            return {"t": Future()}
    monkeypatch.setattr(topic_identity, "AdminClient", lambda config: Admin())


def test_a_broker_without_topic_ids_gives_none(monkeypatch):
    class Described:
        topic_id = topic_identity.NO_ID
    _broker(monkeypatch, Described())
    assert topic_identity.current("b:1", "t") is None


@pytest.mark.parametrize("answer, error, message", [
    (TimeoutError(), ko.BrokerUnreachable, r"cannot reach Kafka at b:1: describing topic t took over 15 s"),
    (KafkaException(KafkaError(KafkaError._TRANSPORT)), ko.BrokerUnreachable, "cannot reach Kafka at b:1: describing"),
    (KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)), ko.OffsetsWentBack, "t: the topic was deleted"),
])
def test_no_answer_is_an_error_not_an_unchecked_query(monkeypatch, answer, error, message):
    """Before: any failure gave None, and the per-batch check was off for the whole query; a timeout of the future
    (the builtin TimeoutError, no KafkaException) was a traceback."""
    _broker(monkeypatch, answer)
    with pytest.raises(error, match=message):
        topic_identity.current("b:1", "t")
