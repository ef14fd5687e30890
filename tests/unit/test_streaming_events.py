"""parse / validate / latest-wins / replay filter of the users stream, on tiny inline frames."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pyspark.testing import assertDataFrameEqual

from shopflow.streaming import events as ev

RAW = "key binary, value binary, topic string, partition int, offset bigint, timestamp timestamp"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
NOT_A_TIMESTAMP = f"registration_date missing or not a timestamp like {ev.TIMESTAMP_EXAMPLE}"
FUTURE = "registration_date more than 1 day after the event was sent (its Kafka timestamp)"


def ts(seconds: int) -> datetime:
    return T0.replace(second=seconds)


def event(**fields) -> bytes:
    base = {"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com", "phone": "+1 555 0100",
            "registration_date": "2024-01-02T03:04:05+00:00", "loyalty_status": "Gold"}
    return json.dumps({k: v for k, v in (base | fields).items() if v is not ...}).encode()


def raw_frame(spark, values, partition=0, start=0):
    rows = [(None, v, "t", partition, start + i, ts(i)) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, RAW)


NOT_JSON = ("value is not valid JSON (or has duplicate keys, a lone surrogate escape such as \\ud83d, over 1,000 "
            "levels of nesting, a number of over 1,000 digits or over 16 MiB parsed, Spark's limit)")


def test_parse_reports_why_a_value_is_not_an_event(spark):
    values = [event(), b"not json", b"\xff\xfe{\"a\": 1}", None, b"[1, 2]",
              event(first_name=123), b'{"email": "a@b.co"} trailing', b'{"email": "a", "email": "b"}',
              event(note="\ud83d"), event(size=int("9" * 1001)), b""]  # half an emoji; past the number limit
    parsed = raw_frame(spark, values).transform(ev.parse_events)
    got = parsed.select("offset", "parse_error", "first_name", "email")
    expected = spark.createDataFrame([
        (0, None, "Ann", "ann@example.com"),
        (1, NOT_JSON, None, None),
        (2, "value is not valid UTF-8", None, None),
        (3, "value is null", None, None),
        (4, "value is not a single JSON object", None, None),
        (5, "first_name is not a JSON string", None, None),
        (6, "value is not a single JSON object", None, None),
        (7, NOT_JSON, None, None),
        (8, NOT_JSON, None, None),
        (9, NOT_JSON, None, None),
        (10, "value is empty (0 bytes)", None, None),  # was NOT_JSON's list of the parser's limits
    ], "offset bigint, parse_error string, first_name string, email string")
    assertDataFrameEqual(got, expected)


def test_a_value_holding_more_than_one_json_value_is_a_dead_letter_whole(spark):
    """Spark's parser reads the first value and ignores the rest: two events in one message (concatenated, or
    newline-delimited) must not give the first and drop the second unseen, not even when the message carries a
    marker of the kind the parse wraps values in; around the object, only JSON's own whitespace."""
    from pyspark.sql import functions as F

    a, b = event(), event(email="bo@example.com")
    tag_of_a = spark.range(1).select(F.xxhash64(F.lit(a.decode())).cast("string")).first()[0].encode()
    values = [a + b, a + b"\n" + b, a + b"] [" + b, a + b"," + b, a + b',"\\u0000' + tag_of_a + b'"]' + b,
              a + b',"\\u0000shopflow:end"]' + b, a + "\u00a0".encode(), a + b"\n", b" \t" + a + b"\r\n "]
    parsed = raw_frame(spark, values).transform(ev.parse_events)
    got = [(r.parse_error, r.email) for r in parsed.orderBy("offset").collect()]
    assert got == [("value is not a single JSON object", None)] * 7 + [(None, "ann@example.com")] * 2


def test_parse_keeps_json_null_and_absent_optional_fields_as_null(spark):
    parsed = raw_frame(spark, [event(phone=None), event(phone=...)]).transform(ev.parse_events)
    expected = spark.createDataFrame([(0, None, None), (1, None, None)],
                                     "offset bigint, parse_error string, phone string")
    assertDataFrameEqual(parsed.select("offset", "parse_error", "phone"), expected)


def test_validate_normalizes_a_valid_event(spark):
    value = event(first_name="\u00a0 Ann\u2003", email=" Ann.Lee@Example.COM\t", phone="  ", loyalty_status=" Silver",
                  registration_date="2024-01-02T05:04:05+02:00")
    got = raw_frame(spark, [value]).transform(ev.parse_events).transform(ev.validate_events)
    expected = spark.createDataFrame(
        [("Ann", "Lee", "Ann.Lee@Example.COM", None, datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "Silver",
          None)],
        "first_name string, last_name string, email string, phone string, registration_date timestamp, "
        "loyalty_status string, reason string")
    assertDataFrameEqual(got.select(*expected.columns), expected)


@pytest.mark.parametrize("fields, reason", [
    ({"email": ...}, "email missing or empty"),
    ({"email": "not-an-email"}, "email malformed"),
    ({"email": "a@b"}, "email malformed"),
    ({"email": "a@example.c0m"}, "email malformed"),
    ({"email": "a@example.xn--"}, "email malformed"),
    ({"email": "ann@example.xn--p1ai"}, None),  # an internationalized top-level domain (.рф) in its ASCII form
    ({"first_name": " ", "last_name": ""}, "first_name missing or empty; last_name missing or empty"),
    ({"loyalty_status": "gold"}, "loyalty_status must be one of Gold, Silver, Bronze"),
    ({"registration_date": "yesterday"}, NOT_A_TIMESTAMP),
    ({"registration_date": ...}, NOT_A_TIMESTAMP),
    ({"registration_date": "T10:00"}, NOT_A_TIMESTAMP),  # Spark's cast read it as today at 10:00
    ({"registration_date": "2024"}, NOT_A_TIMESTAMP),  # the cast read January 1
    ({"registration_date": "2024-05"}, NOT_A_TIMESTAMP),  # the cast read May 1
    ({"registration_date": "2024-01-01x"}, NOT_A_TIMESTAMP),
    ({"registration_date": "2024-02-30T10:00:00Z"}, NOT_A_TIMESTAMP),  # the shape passes, the cast refuses
    ({"registration_date": "-5000-01-01T00:00:00Z"}, "registration_date outside the years 1000-9999 (UTC)"),
    ({"registration_date": "0999-12-31T23:59:59Z"}, "registration_date outside the years 1000-9999 (UTC)"),
    ({"registration_date": "+10000-01-01T00:00:00Z"}, "registration_date outside the years 1000-9999 (UTC)"),
    # later than the event was sent (T0, 2024-05-01 12:00), beyond a day of clock skew: "9999-01-01" as "unknown"
    ({"registration_date": "2024-05-02T12:00:00.000001Z"}, FUTURE),
    ({"registration_date": "9999-12-31T23:59:59.999999Z"}, FUTURE),
    ({"registration_date": "2024-05-02T12:00:00Z"}, None),
    ({"last_name": "x" * 101}, "last_name longer than 100 characters"),
    ({"phone": "1\u00002"}, "phone contains NUL"),
    ({"email": "a@" + "a." * 5000 + "com"}, "email longer than 255 characters"),  # overflowed the regex's stack
    ({"email": "a@" + "a." * 125 + "com"}, None),  # 255 characters, 126 labels: the pattern still judges it
])
def test_validate_rejects_each_broken_rule(spark, fields, reason):
    got = raw_frame(spark, [event(**fields)]).transform(ev.parse_events).transform(ev.validate_events)
    assert [r.reason for r in got.select("reason").collect()] == [reason]  # (Python has no year 10000)


@pytest.mark.parametrize("registered, stored", [
    ("1000-01-01T00:00:00Z", datetime(1000, 1, 1)), ("2024-01-31", datetime(2024, 1, 31)),
    ("2024-01-31 12:30", datetime(2024, 1, 31, 12, 30)),
    ("2024-01-31T12:30:15+02:00", datetime(2024, 1, 31, 10, 30, 15)), ("2024-01-31T12:30:15-0130", datetime(
        2024, 1, 31, 14, 0, 15)), ("2024-01-31T12:30:15.5Z", datetime(2024, 1, 31, 12, 30, 15, 500000)),
    ("2024-1-5", datetime(2024, 1, 5)), ("2024-01-31T10", datetime(2024, 1, 31, 10)),
    ("2024-01-31 12:30:15 UTC", datetime(2024, 1, 31, 12, 30, 15))])  # Ruby's Time#to_s of a UTC time
def test_registration_dates_of_the_accepted_shapes_are_valid(spark, registered, stored):
    got = raw_frame(spark, [event(registration_date=registered)]).transform(ev.parse_events).transform(
        ev.validate_events)
    assert [(r.reason, r.registration_date) for r in got.collect()] == [(None, stored)]


def test_without_a_kafka_timestamp_a_registration_date_is_judged_by_its_years_alone(spark):
    """A record without a timestamp has -1 ms, which Spark's Kafka source gives as 1969-12-31 23:59:59.999 UTC. The
    last millisecond of 9999 is 'infinity' to the replica, which the source refuses: such an event failed its batch
    on every retry (it passed here, the upsert refused it)."""
    no_timestamp = datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)
    rows = [(None, event(registration_date=registered), "t", 0, i, no_timestamp) for i, registered in
            enumerate(["9999-12-31T23:59:59.998999Z", "9999-12-31T23:59:59.999Z", "+10000-01-01T00:00:00Z"])]
    got = spark.createDataFrame(rows, RAW).transform(ev.parse_events).transform(ev.validate_events)
    outside = "registration_date outside the years 1000-9999 (UTC)"
    assert [r.reason for r in got.orderBy("offset").select("reason").collect()] == [
        None, outside, outside]  # (Python has no year 10000)


def test_parse_error_is_the_reason_and_rejected_rows_keep_raw_bytes(spark):
    broken = b"\xc3\x28 not utf-8"
    validated = raw_frame(spark, [event(), broken]).transform(ev.parse_events).transform(ev.validate_events)
    rejected = validated.transform(ev.rejected_events)
    expected = spark.createDataFrame([(None, broken, "t", 0, 1, ts(1), "value is not valid UTF-8")],
                                     RAW + ", reason string")
    assertDataFrameEqual(rejected, expected)
    assert validated.transform(ev.valid_users).count() == 1


def test_latest_per_email_highest_offset_wins_within_a_partition(spark):
    """Across partitions, and between emails equal but for case, Postgres picks (tests/integration, upsert)."""
    rows = [("a@x.io", "A1", 0, 10, ts(9)), ("a@x.io", "A2", 0, 11, ts(5)),  # timestamp regresses: offset wins
            ("b@x.io", "B1", 1, 3, ts(1)), ("b@x.io", "B2", 2, 7, ts(2)), ("B@x.io", "B3", 2, 8, ts(3)),
            ("d@x.io", None, 1, 5, ts(4))]
    users = spark.createDataFrame(rows, "email string, first_name string, partition int, offset bigint, "
                                        "timestamp timestamp")
    expected = spark.createDataFrame([("a@x.io", "A2"), ("b@x.io", "B1"), ("b@x.io", "B2"), ("B@x.io", "B3"),
                                      ("d@x.io", None)], "email string, first_name string")
    assertDataFrameEqual(users.transform(ev.latest_per_email).select("email", "first_name"), expected)


def test_a_kafka_timestamp_in_sparks_last_day_is_judged_not_overflowed(spark):
    """A producer's CreateTime within a day of Spark's largest timestamp, which the reader keeps: the future-date
    rule added its day to it and overflowed a long, and the batch failed at every retry, valid events or not."""
    from pyspark.sql import functions as F

    from shopflow.streaming.kafka_source import _MAX_TIMESTAMP_MS
    frame = raw_frame(spark, [event(), event(loyalty_status="Nope")]).withColumn(
        "timestamp", F.timestamp_micros(F.lit((_MAX_TIMESTAMP_MS - 1000) * 1000)))
    got = frame.transform(ev.parse_events).transform(ev.validate_events).orderBy("offset")
    reasons = [r.reason for r in got.select("reason").collect()]  # (Python has no year 294247)
    assert reasons == [None, "loyalty_status must be one of Gold, Silver, Bronze"]


def test_unapplied_drops_rows_below_the_committed_position(spark):
    frame = spark.createDataFrame([(None, b"x", "t", p, o, T0) for p, o in [(0, 4), (0, 5), (1, 0), (2, 9)]], RAW)
    got = frame.transform(ev.unapplied({"t": {"0": 5, "2": 10}})).select("partition", "offset")
    assertDataFrameEqual(got, spark.createDataFrame([(0, 5), (1, 0)], "partition int, offset bigint"))
    assert frame.transform(ev.unapplied({})).count() == 4


def test_batch_summary_counts_read_unapplied_and_rejected_rows_per_partition(spark):
    """Partition 0: offset 4 applied already, 5 rejected, 6 valid; 1: no committed position; 2: all applied. The
    rejected rows' key, value, reason and topic bytes are summed with a fixed overhead per row (a NULL counts 0): they
    size the sink's fetch of dead letters."""
    rows = [(0, 4, "bad", b"k", b"xx"), (0, 5, "email malformed", b"k", b"abc"), (0, 6, None, b"k", b"long value"),
            (1, 0, None, None, b"v"), (2, 9, "value is null", b"kk", None)]
    frame = spark.createDataFrame([("t", *row) for row in rows],
                                  "topic string, partition int, offset bigint, reason string, key binary, value binary")
    expected = spark.createDataFrame(
        [("t", 0, 3, 5, 7, 2, 1, 1 + 3 + 15 + 1 + 256), ("t", 1, 1, 0, 1, 1, 0, None),
         ("t", 2, 1, None, None, 0, 0, None)],
        "topic string, partition int, read bigint, first_offset bigint, next_offset bigint, events bigint, "
        "rejected bigint, rejected_bytes bigint")
    assertDataFrameEqual(frame.transform(ev.batch_summary({"t": {"0": 5, "2": 10}})), expected)
    everything = frame.transform(ev.batch_summary({})).orderBy("partition").collect()
    assert [(r.read, r.events, r.rejected, r.rejected_bytes) for r in everything] == [
        (3, 3, 2, (1 + 2 + 3 + 1 + 256) + (1 + 3 + 15 + 1 + 256)), (1, 1, 0, None), (1, 1, 1, 2 + 13 + 1 + 256)]


def test_whitespace_trim_strips_exactly_what_java_unicode_whitespace_matches(spark):
    """The trims use a character list (trim only scans the ends): every code point of the Basic Multilingual Plane
    is stripped by it exactly when the regular expression `(?U)^\\s+|\\s+$` strips it (the rule it replaced)."""
    from pyspark.sql import functions as F

    points = [c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    frame = spark.createDataFrame([(c, f"{chr(c)}x{chr(c)}") for c in points], "c int, s string")
    differ = frame.filter(ev._trim("s") != F.regexp_replace("s", r"(?U)^\s+|\s+$", ""))  # the job's own trim
    assert [r.c for r in differ.collect()] == []
    assert frame.filter(F.col("s") != ev._trim("s")).count() == len(ev.WHITESPACE)


def test_the_kafka_source_without_its_connector_is_one_clear_error(spark, settings):
    """STREAMING_SOURCE=kafka (the compose deployment's) in a Spark without the connector jar: say what to set."""
    import dataclasses

    from shopflow.streaming import source

    with pytest.raises(source.SourceUnavailable, match="Use STREAMING_SOURCE=python"):
        source.source_frame(spark, dataclasses.replace(settings, STREAMING_SOURCE="kafka"), {"t": {"0": -2}})
