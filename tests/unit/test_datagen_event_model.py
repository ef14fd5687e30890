"""Kafka user events without Kafka: good ones validate, updates reuse an email, each bad kind is really bad."""
from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime, timezone

import pytest

from datagen.event_model import (BAD_KINDS, REQUIRED_FIELDS, EventMix, event_key, iso_utc, make_bad_event,
                                 make_good_event, validate_event)
from datagen.pools import build_pools
from postgresdb.models import LOYALTY_STATUSES

NOW = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
FIELDS = {"first_name", "last_name", "email", "phone", "registration_date", "loyalty_status", "event_time"}


@pytest.fixture(scope="module")
def pools():
    return build_pools(5, per_weight=10)


def test_good_events_have_every_field_and_validate(pools):
    rng = random.Random(1)
    for _ in range(200):
        payload, kind = make_good_event(rng, pools, NOW)
        event = json.loads(payload)
        assert kind == "new" and validate_event(payload) is None
        assert set(event) == FIELDS
        assert event["event_time"] == "2026-06-01T12:00:00.123Z"
        assert datetime.fromisoformat(event["registration_date"]) <= NOW
        assert event["loyalty_status"] in LOYALTY_STATUSES
        assert event_key(payload) == event["email"].encode()


def test_the_key_is_the_email_as_the_stream_job_knows_a_user():
    """`Ann@X.com` and ` ann@x.com` are one user to the job: one key, so one partition, where Kafka keeps the order."""
    keys = {event_key(json.dumps({"email": email}).encode()) for email in ("Ann@X.com", " ann@x.com\t", "ann@x.com")}
    assert keys == {b"ann@x.com"}
    assert event_key(json.dumps({"email": "  "}).encode()) is None


def test_an_update_keeps_the_email_and_changes_the_status(pools):
    rng = random.Random(2)
    first = json.loads(make_good_event(rng, pools, NOW)[0])
    payload, kind = make_good_event(rng, pools, NOW, earlier=first)
    update = json.loads(payload)
    assert kind == "update" and validate_event(payload) is None
    assert update["email"] == first["email"] and update["first_name"] == first["first_name"]
    assert update["loyalty_status"] != first["loyalty_status"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_bad_kind_is_rejected_as_that_kind(pools, kind):
    rng = random.Random(kind)
    for _ in range(50):
        payload, made = make_bad_event(rng, pools, NOW, kind)
        assert made == kind
        assert validate_event(payload) == kind, payload


def test_bad_events_break_what_they_claim(pools):
    rng = random.Random(9)
    broken = make_bad_event(rng, pools, NOW, "broken_json")[0]
    with pytest.raises(ValueError):
        json.loads(broken)
    assert event_key(broken) is None
    missing = json.loads(make_bad_event(rng, pools, NOW, "missing_field")[0])
    assert len(set(REQUIRED_FIELDS) - set(missing)) == 1
    status = json.loads(make_bad_event(rng, pools, NOW, "bad_loyalty_status")[0])["loyalty_status"]
    assert status not in LOYALTY_STATUSES
    with pytest.raises(ValueError, match="unknown bad event kind"):
        make_bad_event(rng, pools, NOW, "sneaky")


@pytest.mark.parametrize("value, expected", [
    (b'{"first_name": "A"}', "missing_field"),
    (b"[]", "broken_json"),
    (b"\xff{}", "broken_json"),
    (json.dumps({"first_name": "A", "last_name": "B", "email": "a@b.co", "registration_date": "2024-01-01T00:00:00",
                 "loyalty_status": "Gold"}).encode(), "bad_registration_date"),  # no UTC offset
    (json.dumps({"first_name": "A", "last_name": "B", "email": "a@b.co", "registration_date": "2024-01-01T00:00:00Z",
                 "loyalty_status": "Gold", "phone": None}).encode(), None),
])
def test_validator_on_hand_written_values(value, expected):
    assert validate_event(value) == expected


def test_the_mix_has_the_asked_fractions_and_updates_reuse_earlier_emails(pools):
    mix = EventMix(random.Random(3), pools, bad_fraction=0.1, duplicate_fraction=0.2)
    events = [mix.next_event(NOW) for _ in range(2000)]
    kinds = Counter(kind for _, kind in events)
    assert 150 <= sum(kinds[k] for k in BAD_KINDS) <= 250
    assert all(kinds[k] > 0 for k in BAD_KINDS)
    assert 250 <= kinds["update"] <= 470 and kinds["new"] + kinds["update"] + sum(kinds[k] for k in BAD_KINDS) == 2000
    seen: set[str] = set()
    for payload, kind in events:
        assert validate_event(payload) == (None if kind in ("new", "update") else kind)
        if kind == "new":
            seen.add(json.loads(payload)["email"])
        elif kind == "update":
            assert json.loads(payload)["email"] in seen


def test_every_update_in_a_mix_changes_the_status_the_email_has_now(pools):
    """The mix drew the updated user from every version it had sent, so an update could restore an older status
    and keep the current one (27 % of updates at --duplicate-fraction 0.9)."""
    mix, status, updates = EventMix(random.Random(4), pools, duplicate_fraction=0.9, remember=50), {}, 0
    for _ in range(3000):
        payload, kind = mix.next_event(NOW)
        event = json.loads(payload)
        if kind == "update":
            updates += 1
            assert event["loyalty_status"] != status[event["email"]], event
        status[event["email"]] = event["loyalty_status"]
    assert updates > 2500


def test_the_mix_is_deterministic_for_a_seed(pools):
    def draw(seed):
        mix = EventMix(random.Random(seed), pools, bad_fraction=0.3)
        return [mix.next_event(NOW) for _ in range(50)]
    assert draw(1) == draw(1) and draw(1) != draw(2)


def test_iso_utc_converts_to_utc_and_formats_millis():
    moment = datetime.fromisoformat("2026-01-02T05:04:05.678901+02:00")
    assert iso_utc(moment) == "2026-01-02T03:04:05Z"
    assert iso_utc(moment, millis=True) == "2026-01-02T03:04:05.678Z"
