"""Streaming: drain a pre-produced backlog with the streaming job against the bound of a bare psycopg COPY of the
same parsed rows. The continuous fixed-rate latency run is `stream_latency.py`.

Scratch: Postgres schema `<schema>` (users table + the stream's tables), topic `bench-users-<epoch>`, a temporary
checkpoint, MySQL database `test_<schema>` (the job's `pipeline_runs` rows: the live run log never sees the bench);
the run's cleanup drops the schema and the database and deletes the topics.
Drain timed: from the job's query start (its log line, after the session started) to the last batch's commit in the
stream's ledger (`stream_batches.committed_at`); the first batch's time and the steady rate are reported apart.
Bound timed: the COPY only.
"""
from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from shopflow.config import PROJECT_ROOT, Settings
from shopflow.db import apply_postgres_schema, pg_connection

from .common import Measure, drop_database, recreate_database, spark_submit
from .settle import settle

JOB_FILE = PROJECT_ROOT / "code" / "shopflow" / "jobs" / "stream_users.py"
USER_COLUMNS = ("first_name", "last_name", "email", "phone", "registration_date", "loyalty_status")


TOPIC_PREFIX = "bench-users-"


def scratch(base: Settings, schema: str, checkpoint: str) -> Settings:
    recreate_database(base, run_log_database(schema), with_tables=False)
    settings = dataclasses.replace(base, POSTGRES_SCHEMA=schema, KAFKA_TOPIC=f"{TOPIC_PREFIX}{int(time.time())}",
                                   STREAMING_CHECKPOINT_DIR=checkpoint, MYSQL_DATABASE=run_log_database(schema))
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    apply_postgres_schema(settings)
    return settings


def run_log_database(schema: str) -> str:
    return f"test_{schema}"


def drop_scratch(base: Settings, schema: str) -> None:
    with pg_connection(base) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    drop_database(base, run_log_database(schema))


def delete_topics(base: Settings) -> list[str]:
    """The bench's topics (this run's and any a killed run left): the broker keeps topics in memory, a 1M-event
    backlog ~0.3 GB of it until `make down`."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=base.KAFKA_BOOTSTRAP_SERVERS)
    try:
        topics = sorted(t for t in admin.list_topics() if t.startswith(TOPIC_PREFIX))
        if topics:
            admin.delete_topics(topics)
        return topics
    finally:
        admin.close()


def env_of(settings: Settings) -> dict:
    return {"POSTGRES_SCHEMA": settings.POSTGRES_SCHEMA, "KAFKA_TOPIC": settings.KAFKA_TOPIC,
            "STREAMING_CHECKPOINT_DIR": settings.STREAMING_CHECKPOINT_DIR, "MYSQL_DATABASE": settings.MYSQL_DATABASE}


def produce(settings: Settings, count: int, rate: float) -> float:
    import os
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "datagen.events", "--count", str(count), "--rate", str(rate),
                    "--seed", "7"], env=os.environ | env_of(settings), check=True, cwd=PROJECT_ROOT,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def consume_parsed(settings: Settings) -> list[tuple]:
    """Every event of the topic, parsed to the users columns (what the stream writes), read with the stream's own
    librdkafka range reader, one partition after the other."""
    from shopflow.streaming import kafka_offsets as ko
    from shopflow.streaming.kafka_source import KafkaRange, read_ranges
    bootstrap, topic = settings.KAFKA_BOOTSTRAP_SERVERS, settings.KAFKA_TOPIC
    high = ko.high_watermarks(bootstrap, topic)
    earliest = ko.earliest_offsets(bootstrap, topic, list(high))
    rows: list[tuple] = []
    for partition, end in sorted(high.items()):
        for batch in read_ranges(bootstrap, [KafkaRange(topic, partition, earliest[partition], end)]):
            for value in batch.column("value").to_pylist():
                doc = json.loads(value)
                rows.append(tuple(doc.get(c) for c in USER_COLUMNS))
    return rows


def copy_bound(settings: Settings, rows: list[tuple]) -> tuple[float, tuple[float, float]]:
    """Seconds of a bare COPY of `rows` into an empty copy of users, and its wall-clock window."""
    text = io.StringIO("".join("\t".join("\\N" if v is None else str(v) for v in row) + "\n" for row in rows))
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {settings.POSTGRES_SCHEMA}.users_copy_bound AS "
                    f"SELECT {', '.join(USER_COLUMNS)} FROM {settings.POSTGRES_SCHEMA}.users WITH NO DATA")
        conn.commit()
        start, began = time.monotonic(), time.time()
        cur.copy_expert(f"COPY {settings.POSTGRES_SCHEMA}.users_copy_bound ({', '.join(USER_COLUMNS)}) FROM STDIN",
                        text, size=1 << 20)
        conn.commit()
        return time.monotonic() - start, (began, time.time())


def query_started(log: Path) -> datetime:
    """The job's log line when its streaming query starts (after the session): the drain's t0 (UTC)."""
    for line in log.read_text().splitlines():
        if "shopflow.streaming.query: users stream (" in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=timezone.utc)
    raise RuntimeError(f"no query start line in {log}")


def drain_timing(settings: Settings, started: datetime) -> dict:
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT committed_at, events_read FROM {settings.POSTGRES_SCHEMA}.stream_batches "
                    f"ORDER BY committed_at")
        batches = cur.fetchall()
    if not batches:
        raise RuntimeError("the stream applied no batch")
    first, last = batches[0][0], batches[-1][0]
    after_first = sum(n for _, n in batches[1:])
    steady = after_first / (last - first).total_seconds() if len(batches) > 1 else None
    return {"seconds": (last - started).total_seconds(), "events": sum(n for _, n in batches),
            "batches": len(batches), "first_batch_s": round((first - started).total_seconds(), 3),
            "steady_events_per_s": None if steady is None else round(steady, 1)}


def measure_streaming(base: Settings, logs: Path, events: int, schema: str) -> dict[str, Measure]:
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as checkpoint:
        settings = scratch(base, schema, checkpoint)
        produce_s = produce(settings, events, rate=1_000_000)
        log = logs / "stream_drain.log"
        code, wall = spark_submit(JOB_FILE, [], settings, log, extra_env=env_of(settings) | {"TZ": "UTC"},
                                  streaming=True)
        if code != 0:
            raise RuntimeError(f"stream_users exited {code}, see {log}")
        started = query_started(log)
        timing = drain_timing(settings, started)
        consume_start = time.monotonic()
        rows = consume_parsed(settings)
        consume_s = time.monotonic() - consume_start
        quiet = settle(settings)  # the drain's 1M upserts leave WAL, dirty pages and an autovacuum due (settle.py)
        copy_s, copy_window = copy_bound(settings, rows)
    drain_s = timing.pop("seconds")
    return {
        "stream_drain": Measure("stream: drain backlog (Spark job)", timing.pop("events"), drain_s,
                                timing | {"wall_s": round(wall, 3), "produce_s": round(produce_s, 3),
                                          "topic": settings.KAFKA_TOPIC},
                                window=(started.timestamp(), started.timestamp() + drain_s)),
        "stream_bound": Measure("stream bound: psycopg COPY parsed rows", len(rows), copy_s,
                                {"note": "all parsed events, plain COPY (no upsert, no ledger)"} | quiet,
                                window=copy_window),
        # Informative, not in the ratios: what one plain Python process does for the part the bound leaves out.
        "stream_bound_consume": Measure("stream: librdkafka consume + json parse + COPY", len(rows),
                                        consume_s + copy_s, {"consume_and_parse_s": round(consume_s, 3)}),
    }
