"""The topic's identity before each micro-batch (`topic_identity.check_unchanged`); the check at a query's start runs
against tansu in tests/integration/test_streaming_recovery.py."""
from __future__ import annotations

import dataclasses

import pytest

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


def test_a_broker_without_topic_ids_gives_none(monkeypatch):
    class Described:
        topic_id = topic_identity.NO_ID

    class Future:
        def result(self, timeout):
            return Described()

    class Admin:
        def describe_topics(self, topics, request_timeout):
            return {"t": Future()}
    monkeypatch.setattr(topic_identity, "AdminClient", lambda config: Admin())
    assert topic_identity.current("b:1", "t") is None
