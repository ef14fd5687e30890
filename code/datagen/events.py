"""Produce JSON user events to the Kafka topic KAFKA_TOPIC on KAFKA_BOOTSTRAP_SERVERS.

    python -m datagen.events                          one event every KAFKA_EVENT_INTERVAL_SECONDS, forever
    python -m datagen.events --count 200 --rate 50    burst: 200 events at 50 events/s, then a summary and exit
    options: --interval S  --bad-fraction F  --duplicate-fraction F  --seed N

- Creates the topic when missing (KAFKA_TOPIC_PARTITIONS partitions, replication factor 1).
- Fields: first_name, last_name, email, phone, registration_date, loyalty_status, event_time (see
  datagen.event_model). The key is the email. --duplicate-fraction (default 0.1) re-sends earlier emails with
  changed fields (updates); --bad-fraction (default 0) mixes in malformed events of the kinds in BAD_KINDS.
- With --rate (burst mode) events go through librdkafka (confluent-kafka) with the Java client's key -> partition
  map; without --rate, every event is logged with its partition and offset (kafka-python). A summary is printed
  on exit (also on Ctrl-C / SIGTERM, after flushing). Exit codes: 0 sent; 1 Kafka unreachable or sends failed;
  2 bad setting/argument.
"""
from __future__ import annotations

import itertools
import random
import signal
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Callable

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from shopflow.config import Settings
from shopflow.config_values import EVENT_INTERVAL_MAX_S

from .cli import (EXIT_UNREACHABLE, OneLineParser, fail, fraction, non_negative_int, positive_float,
                  settings_or_exit)
from .event_model import BAD_KINDS, GOOD_KINDS, EventMix, event_key
from .pools import build_pools

PROG = "datagen.events"
CONNECT_TIMEOUT_MS = 10_000


def parse_args(argv: list[str] | None):
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=non_negative_int, help="send this many events, then exit (default: forever)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=positive_float, help="events per second (burst mode: no per-event log)")
    pace.add_argument("--interval", type=positive_float,
                      help="seconds between events when no --rate (default: KAFKA_EVENT_INTERVAL_SECONDS)")
    parser.add_argument("--bad-fraction", type=fraction, default=0.0, help="share of malformed events (0..1)")
    parser.add_argument("--duplicate-fraction", type=fraction, default=0.1,
                        help="share of good events that update an earlier email (0..1, default 0.1)")
    parser.add_argument("--seed", type=non_negative_int, help="random seed (default: a fresh one, printed); a seed "
                        "used before sends its users again, which the stream applies as updates (dates moved)")
    args = parser.parse_args(argv)
    if (args.rate and 1 / args.rate > EVENT_INTERVAL_MAX_S) or (args.interval or 0) > EVENT_INTERVAL_MAX_S:
        # the setting KAFKA_EVENT_INTERVAL_SECONDS has the same limit
        parser.error(f"one event a day ({EVENT_INTERVAL_MAX_S} s between events) is the slowest pace")
    return args


def ensure_topic(settings: Settings) -> bool:
    """Create the topic when missing; True when this call created it."""
    admin = KafkaAdminClient(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS.split(","),
                             request_timeout_ms=CONNECT_TIMEOUT_MS, bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
                             client_id=PROG)
    try:
        admin.create_topics([NewTopic(settings.KAFKA_TOPIC, settings.KAFKA_TOPIC_PARTITIONS, 1)])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()


def make_producer(settings: Settings) -> KafkaProducer:
    # a record the broker has not taken within CONNECT_TIMEOUT_MS fails for good (the default retries for 2 min): a
    # send that failed is never delivered later, so the next attempt cannot duplicate it
    return KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS.split(","), client_id=PROG,
                         acks="all", linger_ms=0, bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
                         request_timeout_ms=CONNECT_TIMEOUT_MS // 2, delivery_timeout_ms=CONNECT_TIMEOUT_MS)


class _BurstSender:
    """Burst mode (no per-event log): librdkafka (confluent-kafka), which sends 1M events in seconds where
    kafka-python takes minutes. `murmur2_random` is the Java client's (and kafka-python's) key -> partition map, so
    an email's events land where they always did. Idempotent, as kafka-python is by default: without it a retried
    request could land after a later one, and an email's older event would win."""

    def __init__(self, settings: Settings):
        from confluent_kafka import Producer
        self.topic, self.failed = settings.KAFKA_TOPIC, 0
        self.producer = Producer({"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS, "client.id": PROG,
                                  "acks": "all", "enable.idempotence": True, "linger.ms": 20,
                                  "partitioner": "murmur2_random", "message.timeout.ms": 3 * CONNECT_TIMEOUT_MS})

    def _delivered(self, error, _message) -> None:
        if error is not None:
            self.failed += 1

    def send(self, payload: bytes, kind: str) -> None:
        from confluent_kafka import KafkaException
        while True:
            try:
                self.producer.produce(self.topic, value=payload, key=event_key(payload), on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.05)
            except KafkaException:  # refused at once (the producer fenced by a broker restarted empty): a traceback
                self.failed += 1  # lost the summary; counted failed like a delivery that failed
                break
        self.producer.poll(0)

    def close(self) -> None:
        left = self.producer.flush(3 * CONNECT_TIMEOUT_MS / 1000)
        self.failed += left  # still queued: never delivered


class _LoggedSender:
    """Sends one event, waits for the broker's answer and prints where the event went. After a failed send it starts
    over with a new producer (and creates the topic again when missing): a restarted broker (tansu keeps topics in
    memory) refuses the old producer's id for good. The event is sent once more on the new producer."""

    def __init__(self, settings: Settings, say: Callable[[str], None]):
        self.settings, self.topic, self.say = settings, settings.KAFKA_TOPIC, say
        self.producer: KafkaProducer | None = make_producer(settings)
        self.failed = 0

    def send(self, payload: bytes, kind: str) -> None:
        key = event_key(payload)
        for _attempt in range(2):
            try:
                if self.producer is None:
                    ensure_topic(self.settings)
                    self.producer = make_producer(self.settings)
                future = self.producer.send(self.topic, value=payload, key=key)
                meta = future.get(timeout=2 * CONNECT_TIMEOUT_MS / 1000)  # the producer's own timeout comes first
                where = f"{meta.topic}[{meta.partition}]@{meta.offset}"
                break
            except KafkaError as exc:
                where = f"FAILED ({exc})"
                self._drop_producer()
        else:
            self.failed += 1
        self.say(f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S}Z {kind:<21} key={(key or b'-').decode()} {where}")

    def _drop_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except KafkaError:  # records still queued: they expire (delivery timeout) and are not sent again
                pass

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(timeout=CONNECT_TIMEOUT_MS / 1000)
            self.producer.close(timeout=CONNECT_TIMEOUT_MS / 1000)


CATCH_UP_S = 1.0  # a lag made up by sending faster; a longer one is skipped
PROGRESS_S = 30  # a line this often in a burst (--rate), which logs no event


def produce(settings: Settings, mix: EventMix, count: int | None, interval: float, log_each: bool = False,
            say: Callable[[str], None] = print) -> tuple[Counter, int, float]:
    """Send `count` events (None: until interrupted), one every `interval` s; returns (kinds, failed, seconds).
    Behind by more than a second (and an interval: a broker down, the process stopped), it goes on from now: the
    events it missed are not sent at once when it catches up. Shorter lags are made up, so a burst keeps its rate."""
    sender = _LoggedSender(settings, say) if log_each else _BurstSender(settings)
    kinds, started = Counter(), time.monotonic()
    schedule = told = started
    try:
        for index in itertools.count() if count is None else range(count):
            wait = schedule + index * interval - time.monotonic()
            if wait > 0:  # sleep(0) would still be a system call per event
                time.sleep(wait)
            elif wait < -max(interval, CATCH_UP_S):
                schedule -= wait
            payload, kind = mix.next_event(datetime.now(timezone.utc))
            sender.send(payload, kind)
            kinds[kind] += 1
            if not log_each and (now := time.monotonic()) - told >= PROGRESS_S:  # a burst logs no event
                say(f"{PROG}: sent {index + 1:,} events in {now - started:.0f} s ({(index + 1) / (now - started):,.0f}"
                    f"/s of the {1 / interval:,.0f}/s asked), {sender.failed:,} failed so far")
                told = now
    except KeyboardInterrupt:
        say(f"{PROG}: interrupted, flushing")
    finally:
        sender.close()
    return kinds, sender.failed, time.monotonic() - started


def summary(topic: str, kinds: Counter, failed: int, seconds: float) -> str:
    sent = sum(kinds.values())
    parts = ", ".join(f"{kind} {kinds[kind]}" for kind in GOOD_KINDS + BAD_KINDS if kinds[kind])
    return (f"{PROG}: sent {sent} events to {topic} in {seconds:.1f} s ({sent / max(seconds, 1e-9):.1f}/s): "
            f"{parts or 'none'}; bad {sum(kinds[k] for k in BAD_KINDS)}; failed {failed}")


def _stop_on_sigterm() -> None:
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_or_exit(PROG)
    seed = random.SystemRandom().randrange(2**31) if args.seed is None else args.seed
    interval = 1 / args.rate if args.rate else (args.interval or settings.KAFKA_EVENT_INTERVAL_SECONDS)
    mix = EventMix(random.Random(seed), build_pools(seed), args.bad_fraction, args.duplicate_fraction)
    _stop_on_sigterm()
    try:
        created = ensure_topic(settings)
        _say(f"{PROG}: topic {settings.KAFKA_TOPIC} {'created' if created else 'exists'} on "
             f"{settings.KAFKA_BOOTSTRAP_SERVERS}; seed {seed}, one event every {interval:g} s")
        kinds, failed, seconds = produce(settings, mix, args.count, interval, log_each=not args.rate, say=_say)
    except KafkaError as exc:
        fail(PROG, f"cannot reach Kafka at {settings.KAFKA_BOOTSTRAP_SERVERS}: {exc}", EXIT_UNREACHABLE)
    except KeyboardInterrupt:  # while it connected (up to 10 s, the broker slow or down), or a second one while it
        fail(PROG, "interrupted", 130)  # flushed: one line, not a traceback
    _say(summary(settings.KAFKA_TOPIC, kinds, failed, seconds))
    return EXIT_UNREACHABLE if failed else 0


if __name__ == "__main__":
    sys.exit(main())
