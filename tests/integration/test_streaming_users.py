"""The users stream against the real broker and Postgres: exact counts, latest wins, reruns change nothing."""
from __future__ import annotations

import json
import random
import time

import pyarrow as pa
import pytest
from kafka import KafkaProducer

from shopflow import db
from shopflow.streaming import kafka_offsets as ko
from shopflow.streaming import ledger
from shopflow.streaming import query
from shopflow.streaming.kafka_source import ARROW_SCHEMA, KafkaStreamReader
from test_streaming_support import (assert_exact, make_events, pg_rows, pipeline_runs, produce, snapshot, start_job,
                                    stream_case, stored_rejects)

pytestmark = pytest.mark.integration
__all__ = ["stream_case"]  # the fixture, imported for pytest


def test_high_watermarks_are_exact_where_end_offsets_lag(stream_case):
    produce(stream_case, [(str(i % 7).encode(), b"x" * 50) for i in range(3000)])
    high = ko.high_watermarks(stream_case.KAFKA_BOOTSTRAP_SERVERS, stream_case.KAFKA_TOPIC)
    assert sorted(high) == [0, 1, 2]
    assert sum(high.values()) == 3000


def test_read_tasks_spanning_partitions_read_every_record_once(stream_case):
    produce(stream_case, [(str(i % 7).encode(), str(i).encode()) for i in range(3000)])
    reader = KafkaStreamReader({"bootstrapServers": stream_case.KAFKA_BOOTSTRAP_SERVERS,
                                "topic": stream_case.KAFKA_TOPIC, "readTasks": "2"})
    tasks = reader.partitions(reader.initialOffset(), reader.latestOffset(reader.initialOffset(), None))
    assert len(tasks) == 2 and sum(len(t.ranges) for t in tasks) == 4  # a partition is split between the tasks
    read = [pa.Table.from_batches(list(reader.read(t)), schema=ARROW_SCHEMA) for t in tasks]
    assert [t.num_rows for t in read] == [1500, 1500]
    records = pa.concat_tables(read)
    assert sorted(int(v) for v in records.column("value").to_pylist()) == list(range(3000))
    assert len(set(zip(records.column("partition").to_pylist(), records.column("offset").to_pylist()))) == 3000


def test_1000_events_exactly_once_and_a_second_run_changes_nothing(spark, stream_case):
    events, expected_users, malformed = make_events(1000)
    produce(stream_case, events)

    query.run(spark, stream_case, query.AVAILABLE_NOW)

    assert_exact(stream_case, events, expected_users, malformed)
    assert len(malformed) == 50 and len(expected_users) < 950  # duplicates were merged
    batches = pg_rows(stream_case, "SELECT batch_id, events_read, events_rejected FROM {s}.stream_batches ORDER BY 1")
    assert [b[0] for b in batches] == list(range(len(batches))) and len(batches) >= 4  # 300 events per batch
    assert sum(b[1] for b in batches) == 1000 and sum(b[2] for b in batches) == 50
    runs = pipeline_runs(stream_case)
    assert [r[0] for r in runs] == ["ok"] * len(batches)
    assert sum(r[1] for r in runs) == 1000 and sum(r[3] for r in runs) == 50
    assert json.loads(runs[-1][4])["lag"] == 0
    assert sum(json.loads(r[4])["events_rejected"] for r in runs) == 50  # the task log's line says it too

    before = snapshot(stream_case)
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    assert snapshot(stream_case) == before


def test_rejected_reasons_name_the_broken_rule(spark, stream_case):
    events, expected_users, malformed = make_events(200)
    produce(stream_case, events)
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    reasons = {bytes(v) if v is not None else None: r for v, r in stored_rejects(stream_case)}
    assert reasons[None] == "value is null"
    assert reasons[b'[{"email": "x@y.io"}]'] == "value is not a single JSON object"
    assert reasons[malformed[0]].startswith("value is not valid JSON")
    assert "email missing or empty" in reasons[malformed[1]]
    assert reasons[malformed[5]] == "value is not valid UTF-8"


def test_new_events_after_a_run_update_only_what_changed(spark, stream_case):
    events, _, _ = make_events(100)
    produce(stream_case, events)
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    before = {row[1]: row for row in snapshot(stream_case)[0]}
    target = next(iter(before))
    update = json.dumps({"first_name": "New", "last_name": "Name", "email": target.upper(), "phone": None,
                         "registration_date": "2020-02-02T02:02:02Z", "loyalty_status": "Silver"}).encode()
    produce(stream_case, [(target.encode(), update)])

    query.run(spark, stream_case, query.AVAILABLE_NOW)

    after = {row[1]: row for row in snapshot(stream_case)[0]}
    changed = [email for email in after if after[email] != before[email]]
    assert changed == [target]
    assert after[target][0] == before[target][0]  # same user_id: updated in place
    row = pg_rows(stream_case, f"SELECT first_name, loyalty_status FROM {{s}}.users WHERE email = '{target}'")
    assert row == [("New", "Silver")]


def test_registration_dates_keep_every_microsecond_in_the_accepted_years(spark, stream_case):
    # (a date more than a day after the event was sent is a dead letter: tests/unit/test_streaming_events.py)
    dates = {"a@x.io": "1000-01-01T00:00:00.000001Z", "b@x.io": "1684-06-15T12:34:56.789013Z",
             "c@x.io": "2024-02-29T23:59:59.999999Z", "d@x.io": "2025-12-31T23:59:59.999999Z"}
    produce(stream_case, [(email.encode(), json.dumps({
        "first_name": "T", "last_name": "Ime", "email": email, "phone": None, "registration_date": when,
        "loyalty_status": "Gold"}).encode()) for email, when in dates.items()])
    query.run(spark, stream_case, query.AVAILABLE_NOW)
    stored = pg_rows(stream_case, "SELECT email, to_char(registration_date AT TIME ZONE 'UTC', "
                                  "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM {s}.users ORDER BY email")
    assert dict(stored) == dates


# The job with a driver that may fetch at most 1 MiB per job's results: dead letters far larger than that in total
# must still be stored, byte for byte, in the batch's transaction (they are fetched a bounded part at a time).
SMALL_DRIVER_RESULTS = """
import os, sys
os.environ["PYSPARK_SUBMIT_ARGS"] = "--conf spark.driver.maxResultSize=1m pyspark-shell"
from shopflow.jobs.stream_users import main
sys.exit(main(["--master", "local[1]", "--max-events", "20000"]))
"""


def test_dead_letters_larger_than_the_driver_may_fetch_at_once_are_all_stored(stream_case, tmp_path):
    """One batch: large rejects each beside small ones (cut by count, the part holding the large ones alone was over
    the limit), then 15,000 tiny ones (counted by their key and value bytes only, a part of them pickled to more
    than the limit)."""
    events, expected_users, _ = make_events(60)
    rng = random.Random(3)
    big = [b"{" + rng.randbytes(150_000) for _ in range(30)]  # 4.5 MB that do not compress, not JSON
    small = [b"not json %d" % i for i in range(15_270)]
    mixed = [value for i in range(0, 30, 10) for value in big[i:i + 10] + small[i * 9:i * 9 + 90]] + small[270:]
    produce(stream_case, [(b"big", value) for value in mixed] + events)
    job = start_job(stream_case, tmp_path / "job.log", code=SMALL_DRIVER_RESULTS)
    assert job.wait(timeout=300) == 0, (tmp_path / "job.log").read_text()[-3000:]
    stored = [bytes(v) for v, _ in stored_rejects(stream_case) if v is not None]
    assert sorted(v for v in stored if len(v) > 150_000) == sorted(big)
    assert set(small) <= set(stored) and len(stored) == len(set(stored))
    order = pg_rows(stream_case, "SELECT batch_id, kafka_partition, kafka_offset FROM {s}.rejected_user_events "
                                 "ORDER BY rejected_id")
    assert order == sorted(order)  # inserted in Kafka's order, batch by batch
    assert len(pg_rows(stream_case, "SELECT 1 FROM {s}.users")) == len(expected_users)


def _insert_user(settings, email: str) -> int:
    return pg_rows(settings, "INSERT INTO {s}.users (first_name, last_name, email, registration_date, loyalty_status) "
                             f"VALUES ('Ann', 'Lee', '{email}', '2024-01-01', 'Bronze') RETURNING user_id")[0][0]


def test_a_user_stored_with_capitals_is_the_one_its_lower_cased_events_update(spark, stream_case):
    user_id = _insert_user(stream_case, "Ann.Lee@Example.com")  # written by another client, not lower-cased
    event = {"first_name": "Ann", "last_name": "Lee", "email": "ann.lee@example.com", "phone": None,
             "registration_date": "2024-01-01T00:00:00Z", "loyalty_status": "Gold"}
    produce(stream_case, [(b"ann.lee@example.com", json.dumps(event).encode())])

    query.run(spark, stream_case, query.AVAILABLE_NOW)

    stored = pg_rows(stream_case, "SELECT user_id, email, loyalty_status FROM {s}.users")
    assert stored == [(user_id, "Ann.Lee@Example.com", "Gold")]  # updated in place, the email as stored
    with pytest.raises(Exception, match="users_email_lower_key"):  # nor can a client add a second one
        _insert_user(stream_case, "ANN.LEE@example.com")


def test_users_whose_emails_differ_only_in_case_stop_the_stream_before_it_reads(stream_case, tmp_path):
    pg_rows(stream_case, "DROP INDEX {s}.users_email_lower_key; SELECT 1")  # a source from before the key
    first, second = _insert_user(stream_case, "ann@x.io"), _insert_user(stream_case, "Ann@X.io")
    warnings = db.apply_postgres_schema(stream_case)  # `make up` and the generators go on without the key
    assert warnings == [f"{stream_case.POSTGRES_SCHEMA}.users holds emails that differ only in case: "
                        "users_email_lower_key not made, the stream will not start"]
    produce(stream_case, [(b"ann@x.io", b'{"email": "ann@x.io"}')])

    job = start_job(stream_case, tmp_path / "job.log")

    assert job.wait(timeout=120) == 3
    log = (tmp_path / "job.log").read_text()
    assert f"differ only in case, 1 group (user_id email: {first} ann@x.io, {second} Ann@X.io)" in log
    assert pg_rows(stream_case, "SELECT count(*) FROM {s}.stream_offsets") == [(0,)]  # nothing read, nothing lost
    assert pg_rows(stream_case, "SELECT count(*) FROM {s}.rejected_user_events") == [(0,)]
    pg_rows(stream_case, f"DELETE FROM {{s}}.users WHERE user_id = {second}; SELECT 1")  # merged
    with pytest.raises(ledger.EmailKeyMissing, match="lacks users_email_lower_key.*apply it"):  # the stream builds
        query.ensure_tables(stream_case)  # no index on `users`: that locks out its writers (`make up` does)
    db.apply_postgres_schema(stream_case)
    query.ensure_tables(stream_case)


def test_a_user_is_one_email_under_postgres_lower_for_stored_users_and_events_alike(spark, stream_case):
    """Java's lower() is not Postgres' (a final Σ is ς to Java, σ to Postgres; İ is i + U+0307 to Java): events
    lower-cased by Spark missed users another client stored with capitals, and two events of one user made two
    users. Of one user's events, whatever their case, the latest wins: in a partition the highest offset, across
    partitions the later Kafka timestamp."""
    nikos, ipek = _insert_user(stream_case, "ΝΙΚΟΣ@x.io"), _insert_user(stream_case, "İPEK@x.io")
    now = int(time.time() * 1000)
    sent = [("ΝΙΚΟΣ@x.io", "Nikos", 0, 0), ("İPEK@x.io", "Ipek", 0, 0),
            ("ΑΣ@x.io", "Replaced", 1, 9), ("ασ@x.io", "Latest", 1, 1),  # one partition: the offset, not the time
            ("Bo@x.io", "Latest", 0, 9), ("bo@x.io", "Earlier", 2, 8),  # across partitions: the later time
            # p0's latest of Cy is CY's (time 2), p1's at time 3 is later: not cy's at time 4, replaced in p0
            ("cy@x.io", "Replaced", 0, 4), ("CY@x.io", "Earlier", 0, 2), ("CY@x.io", "Latest", 1, 3)]
    producer = KafkaProducer(bootstrap_servers=stream_case.KAFKA_BOOTSTRAP_SERVERS,
                             max_in_flight_requests_per_connection=1)
    for email, name, partition, seconds in sent:
        event = {"first_name": name, "last_name": "Lee", "email": email, "registration_date": "2024-01-01",
                 "loyalty_status": "Gold"}
        producer.send(stream_case.KAFKA_TOPIC, value=json.dumps(event).encode(), partition=partition,
                      timestamp_ms=now + 1000 * seconds)
    producer.flush()
    producer.close()

    query.run(spark, stream_case, query.AVAILABLE_NOW)

    rows = pg_rows(stream_case, "SELECT user_id, email, first_name FROM {s}.users ORDER BY user_id")
    assert rows[:2] == [(nikos, "ΝΙΚΟΣ@x.io", "Nikos"), (ipek, "İPEK@x.io", "Ipek")]  # updated, emails as stored
    assert sorted(row[1:] for row in rows[2:]) == [  # one new user each, its email lower-cased by Postgres
        ("bo@x.io", "Latest"), ("cy@x.io", "Latest"), ("ασ@x.io", "Latest")]
    assert pg_rows(stream_case, "SELECT sum(users_upserted) FROM {s}.stream_batches") == [(5,)]  # 9 rows staged
