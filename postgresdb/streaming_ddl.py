"""Postgres tables of the Kafka -> `users` stream: dead letters, committed positions and the batch ledger.

All three are written in the same transaction as the users upsert, which is what makes the stream exactly-once:
`stream_offsets` is the committed position per Kafka partition (rows below it are already applied and are skipped
on replay), `stream_batches` is one row per applied micro-batch (batch id, offset range, counts).
`stream_topics` holds the broker's id of the topic those positions belong to (written when a query starts, not per
batch). These tables are not replicated (they are not in `models.TABLES`) and carry no change tracking.
`users_email_lower_key` is the stream's identity of a user (`email_identity`, applied with the source's DDL). Every
statement is idempotent.
"""
from __future__ import annotations

from . import guarded

REJECTED_USER_EVENTS = "rejected_user_events"
STREAM_OFFSETS = "stream_offsets"
STREAM_BATCHES = "stream_batches"
STREAM_TOPICS = "stream_topics"
USERS_EMAIL_KEY = "users_email_lower_key"


def email_identity(schema: str = "source") -> str:
    """A unique index on `lower(email)`, the conflict target of the stream's upsert (`ledger.upsert_users`): the
    stream matches users by it, so a user another client wrote as `Ann@X.com` is the one `ann@x.com`'s events update,
    and a second user whose email differs only in case is refused. Part of the source's DDL (`postgres_ddl`: `make
    up`, the generators, with their lock timeout), not of the stream's: building it locks out the writers of `users`.
    Made when missing; a source already holding such emails goes on without it (a WARNING) and the stream refuses
    to start, naming them (`ledger.check_email_identity`), as it does while the index is missing."""
    users, key = f"{schema}.users", f"{schema}.{USERS_EMAIL_KEY}"
    warning = f"{users} holds emails that differ only in case: {USERS_EMAIL_KEY} not made, the stream will not start"
    return f"""DO $$ BEGIN
    IF to_regclass('{users}') IS NOT NULL AND to_regclass('{key}') IS NULL THEN
        BEGIN
            CREATE UNIQUE INDEX {USERS_EMAIL_KEY} ON {users} (lower(email));
        EXCEPTION WHEN unique_violation THEN
            RAISE WARNING '{warning}';
        END;
    END IF;
END $$"""


def streaming_ddl(schema: str = "source") -> list[str]:
    return [
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        # raw_value is bytea: the bytes exactly as received, including broken UTF-8 and NUL bytes.
        f"""CREATE TABLE IF NOT EXISTS {schema}.{REJECTED_USER_EVENTS} (
    rejected_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raw_value bytea NULL,
    raw_key bytea NULL,
    reason text NOT NULL,
    kafka_topic text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    kafka_timestamp timestamptz NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    batch_id bigint NULL
)""",
        # Not unique: after a reset (topic recreated, offsets restart at 0) the same offsets come again. Replays
        # are excluded by stream_offsets, written in the same transaction.
        guarded.index(schema, REJECTED_USER_EVENTS, ("kafka_topic", "kafka_partition", "kafka_offset"),
                      name=f"ix_{REJECTED_USER_EVENTS}_source"),
        f"""CREATE TABLE IF NOT EXISTS {schema}.{STREAM_OFFSETS} (
    stream text NOT NULL,
    kafka_topic text NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset bigint NOT NULL,
    batch_id bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (stream, kafka_topic, kafka_partition)
)""",
        f"""CREATE TABLE IF NOT EXISTS {schema}.{STREAM_BATCHES} (
    ledger_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream text NOT NULL,
    batch_id bigint NOT NULL,
    start_offsets jsonb NOT NULL,
    end_offsets jsonb NOT NULL,
    events_read bigint NOT NULL,
    users_upserted bigint NOT NULL,
    users_changed bigint NOT NULL,
    events_rejected bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
)""",
        guarded.index(schema, STREAM_BATCHES, ("stream", "batch_id"), name=f"ix_{STREAM_BATCHES}_stream_batch"),
        # The broker's id of the topic the positions were committed in (KIP-516): a topic deleted and created again
        # gets a new one, and its offsets restart at 0 (streaming/topic_identity.py).
        f"""CREATE TABLE IF NOT EXISTS {schema}.{STREAM_TOPICS} (
    stream text NOT NULL,
    kafka_topic text NOT NULL,
    topic_id text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (stream, kafka_topic)
)""",
    ]
