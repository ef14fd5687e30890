"""Helpers of the users-stream integration tests (no tests here): a scratch topic + schema + checkpoint per test,
1,000 deterministic events (5 % malformed, duplicate emails) with the state they must produce, and readers of
what the stream wrote."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from shopflow import db
from shopflow.stack.binaries import tansu_binary
from shopflow.streaming import query

BAD_EVENTS = (
    b'{"first_name": "Ann", "last_name": "Lee", "email": "ann@exa',  # truncated JSON
    b'{"first_name": "Ann", "last_name": "Lee", "registration_date": "2024-01-01T00:00:00Z", "loyalty_status": "Gold"}',
    b'{"first_name": "A", "last_name": "B", "email": "no-at.example.com", "registration_date": "2024-01-01", '
    b'"loyalty_status": "Gold"}',
    b'{"first_name": "A", "last_name": "B", "email": "x@y.io", "registration_date": "2024-01-01", '
    b'"loyalty_status": "Platinum"}',
    b'{"first_name": "A", "last_name": "B", "email": "x@y.io", "registration_date": "31/02/2024", '
    b'"loyalty_status": "Gold"}',
    b'\xff\xfe{"email": "x@y.io"} \xc3\x28',  # not UTF-8: must be stored byte for byte
    None,  # a null value (tombstone)
    b'{"first_name": 42, "last_name": "B", "email": "x@y.io", "registration_date": "2024-01-01", '
    b'"loyalty_status": "Gold"}',
    b'[{"email": "x@y.io"}]',
    b'{"first_name": "A", "last_name": "B", "email": "x@y.io", "registration_date": "2024-01-01", '
    b'"loyalty_status": "Gold", "phone": "' + b"9" * 51 + b'"}',
)


def make_events(count: int = 1000, seed: int = 7):
    """[(key, value)] in send order, the expected users {email: row} (last valid event per email wins) and the
    malformed values. Every 20th event is malformed; emails repeat, in varied case and padding."""
    rng, start = random.Random(seed), datetime(2023, 3, 1, tzinfo=timezone.utc)
    sent, users, malformed = [], {}, []
    for i in range(count):
        if i % 20 == 0:
            value = BAD_EVENTS[(i // 20) % len(BAD_EVENTS)]
            sent.append((b"bad", value))
            malformed.append(value)
            continue
        email = f"user{rng.randrange(count // 3)}@Example.com"
        registered = start + timedelta(minutes=rng.randrange(10**6), microseconds=rng.randrange(10**6))
        phone = rng.choice([None, "", f" +1 555 {i:04d} "])
        fields = {"first_name": f" Zoë{i} ", "last_name": "Ñúñez", "email": rng.choice([email, email.upper(),
                  f"  {email.lower()}\t"]), "phone": phone, "registration_date": registered.isoformat(),
                  "loyalty_status": rng.choice(["Gold", "Silver", " Bronze "]), "event_time": "2024-01-01T00:00:00Z"}
        key = email.lower().encode()
        sent.append((key, json.dumps(fields, ensure_ascii=False).encode()))
        users[email.lower()] = (f"Zoë{i}", "Ñúñez", email.lower(), (phone or "").strip() or None, registered,
                                fields["loyalty_status"].strip())
    return sent, users, malformed


def produce(settings, events) -> None:
    # One request in flight: events of one key keep their send order (the latest-wins model relies on it).
    producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, linger_ms=5,
                             max_in_flight_requests_per_connection=1)
    for key, value in events:
        producer.send(settings.KAFKA_TOPIC, key=key, value=value)
    producer.flush()
    producer.close()


@contextmanager
def scratch_run_log(settings, tag: str):
    """`settings` with MYSQL_DATABASE a scratch `test_stream_<tag>`, dropped afterwards: the stream's pipeline_runs
    rows of a test stay out of the live run log (a stack beside the tests shows it on its dashboard)."""
    database = f"test_stream_{tag}"
    with db.mysql_connection(settings, autocommit=True) as conn:
        conn.cursor().execute(f"CREATE DATABASE `{database}`")
    try:
        yield dataclasses.replace(settings, MYSQL_DATABASE=database)
    finally:
        with db.mysql_connection(settings, autocommit=True) as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")


@pytest.fixture()
def stream_case(postgres, mysql, kafka, tmp_path):
    """Settings pointing at a new 3-partition topic, a scratch schema, a scratch run log database and a checkpoint
    under tmp_path."""
    tag = uuid.uuid4().hex[:8]
    with scratch_run_log(postgres, tag) as run_log:
        yield from _stream_case(run_log, tag, tmp_path)


def _stream_case(base, tag: str, tmp_path):
    settings = dataclasses.replace(base, KAFKA_TOPIC=f"users-test-{tag}", POSTGRES_SCHEMA=f"t_stream_{tag}",
                                   STREAMING_CHECKPOINT_DIR=str(tmp_path / "checkpoint"),
                                   STREAMING_MAX_EVENTS_PER_BATCH=300)
    admin = KafkaAdminClient(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
    try:
        admin.create_topics([NewTopic(settings.KAFKA_TOPIC, settings.KAFKA_TOPIC_PARTITIONS, 1)])
        db.apply_postgres_schema(settings)
        query.ensure_tables(settings)
        yield settings
        with db.pg_connection(settings) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {settings.POSTGRES_SCHEMA} CASCADE")
        admin.delete_topics([settings.KAFKA_TOPIC])
    finally:
        admin.close()


def pg_rows(settings, sql: str) -> list[tuple]:
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(sql.format(s=settings.POSTGRES_SCHEMA))
        return cur.fetchall()


def stored_users(settings) -> dict:
    rows = pg_rows(settings, "SELECT first_name, last_name, email, phone, registration_date, loyalty_status "
                             "FROM {s}.users")
    return {row[2]: row for row in rows}


def stored_rejects(settings) -> list[tuple]:
    return pg_rows(settings, "SELECT raw_value, reason FROM {s}.rejected_user_events ORDER BY kafka_offset")


def snapshot(settings) -> tuple:
    """Everything a second run must leave alone, change tracking included."""
    return (pg_rows(settings, "SELECT user_id, email, updated_at, change_txid FROM {s}.users ORDER BY user_id"),
            pg_rows(settings, "SELECT rejected_id, kafka_partition, kafka_offset FROM {s}.rejected_user_events "
                              "ORDER BY rejected_id"),
            pg_rows(settings, "SELECT ledger_id, batch_id FROM {s}.stream_batches ORDER BY ledger_id"),
            pg_rows(settings, "SELECT kafka_partition, next_offset FROM {s}.stream_offsets ORDER BY 1"))


def pipeline_runs(settings) -> list[tuple]:
    with db.mysql_connection(settings) as conn:
        cur = conn.cursor()
        cur.execute("SELECT status, rows_read, rows_written, rows_rejected, detail FROM pipeline_runs "
                    "WHERE job = 'stream_users' AND detail LIKE %s ORDER BY run_id", (f'%"{settings.KAFKA_TOPIC}"%',))
        return cur.fetchall()


def _bytes_order(value) -> tuple:
    return (0, b"") if value is None else (1, bytes(value))


def assert_exact(settings, events: list, expected_users: dict, malformed: list) -> None:
    """Every event applied once: the expected users, exactly the malformed values (byte for byte), and the
    committed positions at the end of the topic."""
    users = stored_users(settings)
    assert len(users) == len(expected_users)
    assert users == expected_users
    rejects = stored_rejects(settings)
    assert sorted((_bytes_order(v) for v, _ in rejects)) == sorted(_bytes_order(v) for v in malformed)
    assert all(reason for _, reason in rejects)
    assert pg_rows(settings, "SELECT sum(next_offset) FROM {s}.stream_offsets")[0][0] == len(events)


def start_job(settings, log_path, code: str | None = None, args: tuple[str, ...] = ()) -> subprocess.Popen:
    """The job as a separate process group (JVM and Python workers included), so SIGKILL takes all of it."""
    env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": settings.KAFKA_BOOTSTRAP_SERVERS, "KAFKA_TOPIC": settings.KAFKA_TOPIC,
                        "POSTGRES_SCHEMA": settings.POSTGRES_SCHEMA, "MYSQL_DATABASE": settings.MYSQL_DATABASE,
                        "STREAMING_CHECKPOINT_DIR": settings.STREAMING_CHECKPOINT_DIR,
                        "STREAMING_MAX_EVENTS_PER_BATCH": "100", "PYSPARK_PYTHON": sys.executable}
    argv = ["-c", code] if code else ["-m", "shopflow.jobs.stream_users", "--master", "local[1]", *args]
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, *argv], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            break
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_private_broker(port: int) -> subprocess.Popen:
    """A tansu of the test's own (memory storage), to stop and restart without touching the stack's broker."""
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                               "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return broker
        except OSError:
            assert time.monotonic() < deadline and broker.poll() is None, "a private tansu did not start"
            time.sleep(0.1)
