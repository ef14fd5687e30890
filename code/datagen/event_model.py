"""User events for the Kafka topic (no Kafka here): good ones, updates of earlier ones, recognizably bad ones.

An event is a UTF-8 JSON object: first_name, last_name, email, phone (may be null), registration_date
(ISO-8601 UTC), loyalty_status (Gold/Silver/Bronze) and event_time (ISO-8601 UTC with milliseconds, when it was
made; for latency measurement). Every maker returns (payload bytes, kind); `validate_event` names the same kinds,
so tests can verify each event the generator makes is what it claims to be. It classifies these events only: what
the streaming job accepts is decided by its own rules (`shopflow.streaming.events`), which differ on events this
module never makes (a zone other than UTC, a trimmed loyalty status, a name over the column's length, ...).
"""
from __future__ import annotations

import json
import random
import re
from collections import OrderedDict
from datetime import datetime, timedelta, timezone

from postgresdb.models import LOYALTY_STATUSES

from .pools import Pools

REQUIRED_FIELDS = ("first_name", "last_name", "email", "registration_date", "loyalty_status")
GOOD_KINDS = ("new", "update")
BAD_KINDS = ("broken_json", "missing_field", "bad_loyalty_status", "bad_email", "bad_registration_date")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BAD_STATUSES = ("Platinum", "Diamond", "VIP")
BAD_DATES = ("not-a-date", "2024-13-45T25:61:00Z", "31/02/2024", "yesterday")
REGISTERED_WITHIN = timedelta(days=3 * 365)


def iso_utc(moment: datetime, millis: bool = False) -> str:
    """'2026-01-02T03:04:05Z', or with millis '2026-01-02T03:04:05.678Z'."""
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}Z" if millis else f"{text}Z"


def new_user(rng: random.Random, pools: Pools, now: datetime) -> dict:
    person = rng.choice(pools.people)
    registered = now - timedelta(seconds=rng.randrange(int(REGISTERED_WITHIN.total_seconds())))
    return {"first_name": person.first_name, "last_name": person.last_name,
            # The random token keeps emails apart from each other and from the bulk-loaded users.
            "email": f"{person.email_local}.{rng.getrandbits(40):010x}@{person.email_domain}",
            "phone": None if rng.random() < 0.1 else rng.choice(pools.phones),
            "registration_date": iso_utc(registered), "loyalty_status": rng.choice(LOYALTY_STATUSES)}


def updated_user(rng: random.Random, pools: Pools, earlier: dict) -> dict:
    """The same email with a new loyalty status and phone."""
    status = rng.choice([s for s in LOYALTY_STATUSES if s != earlier["loyalty_status"]])
    return {**earlier, "loyalty_status": status, "phone": rng.choice(pools.phones)}


def encode(fields: dict, now: datetime) -> bytes:
    return json.dumps({**fields, "event_time": iso_utc(now, millis=True)}, ensure_ascii=False).encode("utf-8")


def make_good_event(rng: random.Random, pools: Pools, now: datetime, earlier: dict | None = None):
    """A valid event: a new user ('new'), or an update of the `earlier` user's fields ('update')."""
    if earlier is None:
        return encode(new_user(rng, pools, now), now), "new"
    return encode(updated_user(rng, pools, earlier), now), "update"


def _broken_json(rng: random.Random, user: dict, now: datetime) -> bytes:
    text = encode(user, now).decode("utf-8")
    # A strict prefix of a JSON object is never valid JSON: its closing brace is missing.
    return text[:rng.randint(len(text) // 3, 2 * len(text) // 3)].encode("utf-8")


def _bad_email(rng: random.Random, email: str) -> str:
    local, domain = email.split("@")
    return rng.choice((f"{local}.{domain}", f"{local}@", f"@{domain}", f"{local}@@{domain}"))


def make_bad_event(rng: random.Random, pools: Pools, now: datetime, kind: str | None = None):
    """An invalid event of `kind` (one of BAD_KINDS; random when None)."""
    kind = kind or rng.choice(BAD_KINDS)
    user = new_user(rng, pools, now)
    if kind == "broken_json":
        return _broken_json(rng, user, now), kind
    if kind == "missing_field":
        del user[rng.choice(REQUIRED_FIELDS)]
    elif kind == "bad_loyalty_status":
        user["loyalty_status"] = rng.choice(BAD_STATUSES)
    elif kind == "bad_email":
        user["email"] = _bad_email(rng, user["email"])
    elif kind == "bad_registration_date":
        user["registration_date"] = rng.choice(BAD_DATES)
    else:
        raise ValueError(f"unknown bad event kind {kind!r}; expected one of {', '.join(BAD_KINDS)}")
    return encode(user, now), kind


def _is_utc_timestamp(value) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).utcoffset() == timedelta(0)
    except ValueError:
        return False


def validate_event(payload: bytes) -> str | None:
    """None for a valid event, else the bad kind it is (one of BAD_KINDS)."""
    try:
        event = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "broken_json"
    if not isinstance(event, dict):
        return "broken_json"
    if any(not isinstance(event.get(name), str) or not event[name].strip() for name in REQUIRED_FIELDS):
        return "missing_field"
    if not EMAIL_PATTERN.match(event["email"]):
        return "bad_email"
    if event["loyalty_status"] not in LOYALTY_STATUSES:
        return "bad_loyalty_status"
    if not _is_utc_timestamp(event["registration_date"]):
        return "bad_registration_date"
    return None


def event_key(payload: bytes) -> bytes | None:
    """The Kafka key: the email as the stream job knows a user (trimmed, lower-cased), as UTF-8 bytes, when the
    payload has one. So every event of one user lands in one partition, where Kafka keeps their order: the job
    orders events of one email in different partitions only within a micro-batch (by Kafka timestamp), and across
    batches applies them in batch order."""
    try:
        email = json.loads(payload.decode("utf-8")).get("email")
    except (UnicodeDecodeError, ValueError, AttributeError):
        return None
    return email.strip().lower().encode("utf-8") if isinstance(email, str) and email.strip() else None


class EventMix:
    """Draws events: bad with `bad_fraction`, else an update of a recent good one with `duplicate_fraction`."""

    def __init__(self, rng: random.Random, pools: Pools, bad_fraction: float = 0.0,
                 duplicate_fraction: float = 0.1, remember: int = 1000):
        self.rng, self.pools = rng, pools
        self.bad_fraction, self.duplicate_fraction = bad_fraction, duplicate_fraction
        # the latest fields of the `remember` emails sent most recently: an update changes what the email has now (a
        # list of every version let it draw an older one, and 2-27 % of updates kept the current loyalty status)
        self.recent: OrderedDict[str, dict] = OrderedDict()
        self.remember = remember

    def next_event(self, now: datetime) -> tuple[bytes, str]:
        if self.rng.random() < self.bad_fraction:
            return make_bad_event(self.rng, self.pools, now)
        earlier = None
        if self.recent and self.rng.random() < self.duplicate_fraction:
            earlier = self.rng.choice(list(self.recent.values()))
        payload, kind = make_good_event(self.rng, self.pools, now, earlier)
        fields = {k: v for k, v in json.loads(payload).items() if k != "event_time"}
        self.recent.pop(fields["email"], None)
        self.recent[fields["email"]] = fields
        if len(self.recent) > self.remember:
            self.recent.popitem(last=False)
        return payload, kind
