"""Which topic the committed positions belong to. A topic deleted and created again under the same name starts its
offsets at 0 again: while it holds fewer events than the old positions, its end offsets are below them and the stream
fails (`kafka_offsets.check_not_behind`); once it holds more, nothing in the offsets tells, and the stream went on from
the old positions, skipping the new topic's events below them without a word. The broker gives every topic an id
(KIP-516; tansu and Kafka 2.8+ do): it is recorded beside the positions (`stream_topics`), compared when a query
starts and before each micro-batch is applied. A broker that gives no id leaves the check to the offsets, as before.
Positions committed before the id was recorded (a schema from before this check) adopt the id the broker gives at the
next start: a topic created again before then cannot be told.
"""
from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from shopflow.config import Settings
from shopflow.db import pg_connection
from shopflow.streaming import ledger
from shopflow.streaming.kafka_offsets import RESET_HINT, BrokerUnreachable, OffsetsWentBack

NO_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # the all-zero id: a broker without topic ids
TIMEOUT_S = 10.0


def current(bootstrap_servers: str, topic: str) -> str | None:
    """The broker's id of `topic` now; None when the broker gives none. No answer is BrokerUnreachable (the job's
    one line and exit 2, retried), not None: a check skipped once would be skipped for the whole query. A client per
    call (≈ 2 ms against tansu, 0.2 ms reused): one kept for the process logged its reconnects to stderr for as long
    as the broker was gone."""
    # log_level 5 (notice): its info line "Purging 1 unserved events from background queue" at each close (a DAG
    # run's task log) said nothing about the stream; its warnings and errors stay
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 5})
    try:  # the future's own wait a little longer than the request's: librdkafka's timeout is the one that speaks
        described = admin.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT_S)[topic].result(
            TIMEOUT_S + 5)
    except KafkaException as error:
        if error.args and isinstance(error.args[0], KafkaError) and error.args[0].code() == \
                KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise OffsetsWentBack(f"{topic}: the topic was deleted; the committed positions were its. {RESET_HINT}") \
                from None
        raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap_servers}: describing topic {topic} failed "
                                f"({error})") from None
    except TimeoutError:  # concurrent.futures' (the builtin since 3.11): not a KafkaException
        raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap_servers}: describing topic {topic} took over "
                                f"{TIMEOUT_S + 5:g} s") from None
    found = str(described.topic_id)
    return None if found == NO_ID else found


def recreated(topic: str, committed_for: str, now: str) -> OffsetsWentBack:
    return OffsetsWentBack(
        f"{topic}: the topic was deleted and created again (its id is now {now}; the committed positions are for "
        f"{committed_for}); its offsets started over at 0, and the new topic's events below the old positions would "
        f"be skipped. {RESET_HINT}")


def check_at_start(settings: Settings, stream: str) -> str | None:
    """Compares the topic's id with the one its positions were committed for (raises OffsetsWentBack when they
    differ and positions exist) and records it (the first time, or after a reset), under the stream's lock. Returns
    the id, for `check_unchanged`."""
    schema, topic = settings.POSTGRES_SCHEMA, settings.KAFKA_TOPIC
    now = current(settings.KAFKA_BOOTSTRAP_SERVERS, topic)
    if now is None:
        return None
    with pg_connection(settings) as conn, conn.cursor() as cur:
        ledger.lock_stream(cur, schema, stream)
        recorded = ledger.topic_id(cur, schema, stream, topic)
        if recorded not in (None, now) and topic in ledger.committed_positions(cur, schema, stream):
            raise recreated(topic, recorded, now)
        if recorded != now:
            ledger.record_topic_id(cur, schema, stream, topic, now)
    return now


def check_unchanged(settings: Settings, started_with: str | None) -> None:
    """Before a micro-batch is applied: the topic is still the one the query started on."""
    if started_with is None:
        return
    now = current(settings.KAFKA_BOOTSTRAP_SERVERS, settings.KAFKA_TOPIC)
    if now is not None and now != started_with:
        raise recreated(settings.KAFKA_TOPIC, started_with, now)
