"""Postgres side of one micro-batch, all on the caller's cursor (one transaction): users upsert, dead letters,
committed positions and the batch ledger. Tables: postgresdb/streaming_ddl.py."""
from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg2 import Binary
from psycopg2.extras import execute_values

from postgresdb.streaming_ddl import (REJECTED_USER_EVENTS, STREAM_BATCHES, STREAM_OFFSETS, STREAM_TOPICS,
                                      USERS_EMAIL_KEY)

from shopflow.streaming.kafka_offsets import Offsets

USER_FIELDS = ("first_name", "last_name", "email", "phone", "loyalty_status")
_CHANGED = ("first_name", "last_name", "phone", "registration_date", "loyalty_status")


def lock_stream(cur, schema: str, stream: str) -> None:
    """Serializes writers of one stream (a second job on the same topic waits, then finds its rows applied)."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"shopflow.stream:{schema}.{stream}",))


def committed_positions(cur, schema: str, stream: str) -> Offsets:
    cur.execute(f"SELECT kafka_topic, kafka_partition, next_offset FROM {schema}.{STREAM_OFFSETS} WHERE stream = %s",
                (stream,))
    positions: Offsets = {}
    for topic, partition, offset in cur.fetchall():
        positions.setdefault(topic, {})[str(partition)] = int(offset)
    return positions


class EmailKeyMissing(RuntimeError):
    """`users` lacks the unique index on lower(email) the upsert needs, mostly because users' emails differ only in
    case: an event's lower-cased email would name more than one."""


def check_email_identity(cur, schema: str) -> None:
    """Raises EmailKeyMissing when `users` lacks its `lower(email)` key: naming the rows that differ only in case
    (`postgresdb.streaming_ddl.email_identity` could not make it), or, with none, asking for the source's DDL."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NULL",
                (f"{schema}.users", f"{schema}.{USERS_EMAIL_KEY}"))
    if not cur.fetchone()[0]:
        return
    cur.execute(f"SELECT string_agg(user_id || ' ' || email, ', ' ORDER BY user_id), count(*) OVER () "
                f"FROM {schema}.users GROUP BY lower(email) HAVING count(*) > 1 ORDER BY lower(email) LIMIT 5")
    if groups := cur.fetchall():
        count = groups[0][1]
        raise EmailKeyMissing(
            f"{schema}.users holds users whose emails differ only in case, {count} group{'s' * (count > 1)} "
            f"(user_id email: {'; '.join(users for users, _ in groups)}{'; …' * (count > len(groups))}): the stream "
            "matches a user by the lower-cased email and cannot tell which one an event is for. Merge or correct "
            f"them (SELECT lower(email), array_agg(user_id) FROM {schema}.users GROUP BY 1 HAVING count(*) > 1), "
            "then run it again; no event was read")
    raise EmailKeyMissing(f"{schema}.users lacks {USERS_EMAIL_KEY}, its unique index on lower(email) (the stream's "
                          "identity of a user, made by the source's DDL): apply it (`make up`; compose: the datagen "
                          "service), then run it again; no event was read")


def _csv(table: pa.Table) -> io.BytesIO:
    """CSV for COPY: every value quoted, NULL left bare, so an empty string and NULL stay distinct (pyarrow writes
    it in C++: no per-row Python)."""
    out = io.BytesIO()
    pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    out.seek(0)
    return out


def _from_micros(column: str) -> str:
    """Epoch microseconds -> timestamptz, exact for any year: `micros * interval '1 microsecond'` multiplies in
    float8 and is off by microseconds beyond 2^53 of them (before 1685 or after 2255). Whole seconds times 10^6 stay
    within float8's exact integers up to year ~20000."""
    return (f"timestamptz 'epoch' + ({column} / 1000000) * interval '1 second' "
            f"+ ({column} % 1000000) * interval '1 microsecond'")


def upsert_users(cur, schema: str, users: pa.Table) -> tuple[int, int, int]:
    """users: USER_FIELDS, registration_date as epoch microseconds, then the event's Kafka partition, offset and
    timestamp (epoch microseconds or NULL), in this order: at most one row per email as sent and partition (the
    highest offset). A user is an email equal but for case under Postgres' lower(), for the stored users and the
    events alike: of a user's events the latest wins (in a partition the highest offset, across partitions the later
    Kafka timestamp, then the higher partition); a stored user keeps its email as stored, a new one gets it
    lower-cased. Returns (users, inserted, updated); an event equal to the stored row updates nothing, so change
    tracking (updated_at / change_txid) only moves on real changes. One row per lower(email) reaches the insert: two
    would fail the batch ("cannot affect row a second time") at every replay."""
    if not users.num_rows:
        return 0, 0, 0
    cur.execute("CREATE TEMP TABLE stream_users_stage (first_name text, last_name text, email text, phone text, "
                "loyalty_status text, registration_micros bigint, kafka_partition int, kafka_offset bigint, "
                "sent_micros bigint) ON COMMIT DROP")
    cur.copy_expert("COPY stream_users_stage FROM STDIN WITH (FORMAT csv)", _csv(users))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _CHANGED)
    stored, incoming = (", ".join(f"{alias}.{c}" for c in _CHANGED) for alias in ("u", "EXCLUDED"))
    cur.execute(f"""
        INSERT INTO {schema}.users AS u (first_name, last_name, email, phone, registration_date, loyalty_status)
        SELECT first_name, last_name, lower(email), phone, {_from_micros("registration_micros")}, loyalty_status
        FROM (SELECT DISTINCT ON (lower(email)) *
              FROM (SELECT DISTINCT ON (lower(email), kafka_partition) * FROM stream_users_stage
                    ORDER BY lower(email), kafka_partition, kafka_offset DESC) AS latest_in_partition
              ORDER BY lower(email), sent_micros DESC NULLS LAST, kafka_partition DESC) AS latest
        ON CONFLICT ((lower(email))) DO UPDATE SET {updates}
        WHERE ({stored}) IS DISTINCT FROM ({incoming})
        RETURNING (xmax = 0) AS inserted""")
    flags = [inserted for (inserted,) in cur.fetchall()]
    cur.execute("SELECT count(DISTINCT lower(email)) FROM stream_users_stage")  # those equal to their event included
    return cur.fetchone()[0], sum(flags), len(flags) - sum(flags)


def insert_rejects(cur, schema: str, batch_id: int, rows: list[tuple]) -> int:
    """rows: (value bytes, key bytes, reason, topic, partition, offset, kafka timestamp epoch micros or None). The
    timestamp is exact between 1685 and 2255 (`* interval '1 microsecond'`, see `_from_micros`): a broker's own
    times are; a producer's CreateTime further out may be a few microseconds off in this record only."""
    if not rows:
        return 0
    values = [(_bytes(v), _bytes(k), reason, topic, partition, offset, micros, batch_id)
              for v, k, reason, topic, partition, offset, micros in rows]
    execute_values(cur, f"""
        INSERT INTO {schema}.{REJECTED_USER_EVENTS} (raw_value, raw_key, reason, kafka_topic, kafka_partition,
            kafka_offset, kafka_timestamp, batch_id) VALUES %s""",
        values, template="(%s, %s, %s, %s, %s, %s, timestamptz 'epoch' + %s * interval '1 microsecond', %s)")
    return len(values)


def _bytes(value):
    return None if value is None else Binary(bytes(value))


def advance(cur, schema: str, stream: str, batch_id: int, end_offsets: Offsets) -> None:
    rows = [(stream, topic, int(p), offset, batch_id)
            for topic, parts in end_offsets.items() for p, offset in parts.items()]
    execute_values(cur, f"""
        INSERT INTO {schema}.{STREAM_OFFSETS} (stream, kafka_topic, kafka_partition, next_offset, batch_id) VALUES %s
        ON CONFLICT (stream, kafka_topic, kafka_partition) DO UPDATE
        SET next_offset = GREATEST({STREAM_OFFSETS}.next_offset, EXCLUDED.next_offset),
            batch_id = EXCLUDED.batch_id, updated_at = clock_timestamp()""", rows)


def record_batch(cur, schema: str, stream: str, batch_id: int, start: Offsets, end: Offsets, counts: dict) -> None:
    cur.execute(f"""
        INSERT INTO {schema}.{STREAM_BATCHES} (stream, batch_id, start_offsets, end_offsets, events_read,
            users_upserted, users_changed, events_rejected)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (stream, batch_id, json.dumps(start), json.dumps(end), counts["events_new"], counts["users_upserted"],
         counts["users_inserted"] + counts["users_updated"], counts["events_rejected"]))


def move_positions(cur, schema: str, stream: str, topic: str, positions: dict[int, int]) -> None:
    """Sets the given partitions' positions (past events the broker deleted unread)."""
    for partition, position in sorted(positions.items()):
        cur.execute(f"UPDATE {schema}.{STREAM_OFFSETS} SET next_offset = %s, updated_at = clock_timestamp() "
                    "WHERE stream = %s AND kafka_topic = %s AND kafka_partition = %s",
                    (position, stream, topic, partition))


def reset_positions(cur, schema: str, stream: str) -> int:
    """Forget where the stream is (after the topic was recreated); applied rows and the ledger history stay."""
    cur.execute(f"DELETE FROM {schema}.{STREAM_OFFSETS} WHERE stream = %s", (stream,))
    removed = cur.rowcount
    cur.execute(f"DELETE FROM {schema}.{STREAM_TOPICS} WHERE stream = %s", (stream,))
    return removed


def topic_id(cur, schema: str, stream: str, topic: str) -> str | None:
    """The id of the topic the stream's positions in `topic` belong to, as recorded (None: none yet)."""
    cur.execute(f"SELECT topic_id FROM {schema}.{STREAM_TOPICS} WHERE stream = %s AND kafka_topic = %s",
                (stream, topic))
    row = cur.fetchone()
    return row[0] if row else None


def record_topic_id(cur, schema: str, stream: str, topic: str, topic_id: str) -> None:
    cur.execute(f"""
        INSERT INTO {schema}.{STREAM_TOPICS} (stream, kafka_topic, topic_id) VALUES (%s, %s, %s)
        ON CONFLICT (stream, kafka_topic)
        DO UPDATE SET topic_id = EXCLUDED.topic_id, recorded_at = clock_timestamp()""",
                (stream, topic, topic_id))
