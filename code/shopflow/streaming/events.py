"""Pure transforms of raw Kafka rows (key, value, topic, partition, offset, timestamp) into users and dead letters.

    validated = events.transform(parse_events).transform(validate_events)   (the streaming frame; cached per batch)
    validated.transform(batch_summary(positions))          rows read, unapplied spans, rejects per partition
    validated.transform(unapplied(positions))
        -> valid_users(...).transform(latest_per_email)   upserted into source.users
        -> rejected_events(...)                            source.rejected_user_events

Every row leaves `validate_events` with `reason` NULL (valid) or the list of what is wrong: nothing is dropped.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from postgresdb.models import DATETIME_END, LOYALTY_STATUSES, USERS, epoch_micros

SOURCE_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")

# The event as the generator sends it: JSON strings only; nullable = optional.
EVENT_SCHEMA = StructType([
    StructField("first_name", StringType(), nullable=False),
    StructField("last_name", StringType(), nullable=False),
    StructField("email", StringType(), nullable=False),
    StructField("phone", StringType(), nullable=True),
    StructField("registration_date", StringType(), nullable=False),
    StructField("loyalty_status", StringType(), nullable=False),
])
USER_COLUMNS = tuple(f.name for f in EVENT_SCHEMA.fields)
# Whitespace of any kind (Unicode too: no-break space, em space...): the Unicode White_Space property, what Java's
# `(?U)\s` matches (Python's str.strip() also strips U+001C..U+001F). Trimmed with btrim, which scans the ends: the
# regular expression `(?U)^\s+|\s+$` it replaces was tried at every position of the value (in the profile of a
# 100k-event batch the largest item after the JSON parsing). btrim is Spark's StringTrim, as trim(col, chars) is, minus
# the latter's deprecation warning (Spark 4: "Two-parameter TRIM/LTRIM/RTRIM function signatures are deprecated").
WHITESPACE = ("\t\n\u000b\f\r \u0085\u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
              + "\u2028\u2029\u202f\u205f\u3000")
# What the MySQL replica's DATETIME stores (Postgres stores wider ranges, but a user it cannot replicate would stop
# the replication of `users`; a year Postgres refuses, e.g. -5000, would fail its batch on every retry)
REGISTRATION_YEARS = (1000, 9999)
FUTURE_TOLERANCE_DAYS = 1  # a producer's clock ahead of the broker's
# registration_date starts with a whole date (year, month, day); Spark's timestamp cast reads the rest (a time after
# 'T' or a space, a zone; none: UTC) and judges the values (month 13, hour 25). The cast alone also read "2024" and
# "2024-05" (the first of the month) and "T10:00" (today at 10:00: a value that depended on the day the batch ran).
TIMESTAMP_SHAPE = r"^[+-]?[0-9]{4,6}-[0-9]{1,2}-[0-9]{1,2}([T ]|$)"
TIMESTAMP_EXAMPLE = "2024-01-31T12:00:00Z"
# the top-level label: letters, or an internationalized one in its ASCII form (`xn--p1ai`, .рф; was refused)
EMAIL_PATTERN = r"^[^@\s]+@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,}|xn--[a-z0-9-]{1,59})$"


# what else makes Spark's JSON parser fail (its own limits, and \ud83d without its pair: half an emoji)
NOT_JSON = ("value is not valid JSON (or has duplicate keys, a lone surrogate escape such as \\ud83d, over 1,000 "
            "levels of nesting, a number of over 1,000 digits or over 16 MiB parsed, Spark's limit)")


def is_unapplied(positions: dict[str, dict[str, int]]) -> Column:
    """True for a row at or above the committed position of its partition."""
    if not positions:
        return F.lit(True)
    pairs = [x for t, parts in positions.items() for p, o in parts.items() for x in (F.lit(f"{t}:{p}"), F.lit(int(o)))]
    position = F.create_map(*pairs)[F.concat_ws(":", "topic", F.col("partition").cast("string"))]
    return F.col("offset") >= F.coalesce(position, F.lit(0))


def unapplied(positions: dict[str, dict[str, int]]):
    """Rows at or above the committed position of their partition (a replayed batch keeps none)."""
    def transform(events: DataFrame) -> DataFrame:
        return events.filter(is_unapplied(positions)) if positions else events
    return transform


def _json_type(doc: Column, field: str) -> Column:
    """STRING, BIGINT, OBJECT<...>, VOID (JSON null), or NULL when the field is absent."""
    return F.schema_of_variant(F.variant_get(doc, f"$[0].{field}", "variant"))


def parse_events(events: DataFrame) -> DataFrame:
    """Adds `parse_error` (NULL when the value is a UTF-8 JSON object, alone, whose fields have the schema's JSON
    types) and one string column per field of EVENT_SCHEMA (NULL when absent or JSON null)."""
    text = events.select(*SOURCE_COLUMNS, F.try_validate_utf8(F.col("value").cast("string")).alias("_text"))
    # Each value is parsed as the first element of a JSON array that ends with a marker made of the value's own hash
    # (a value cannot hold its own hash, so none can fake the end). Spark's JSON parser reads one value and ignores
    # whatever follows it, so `{A}{B}` (two events in one message) parsed alone would give A and drop B unseen;
    # wrapped, the parser must get past the whole value to reach the marker, and anything after the first value makes
    # the message a dead letter. Only JSON's own whitespace (space, tab, CR, LF) may surround the object.
    tagged = text.select("*", F.xxhash64("_text").cast("string").alias("_tag"))
    wrapped = F.concat(F.lit("["), F.col("_text"), F.lit(',"\\u0000'), F.col("_tag"), F.lit('"]'))
    docs = tagged.select("*", F.try_parse_json(wrapped).alias("_doc"))
    doc, marker = F.col("_doc"), F.concat(F.lit("\u0000"), F.col("_tag"))
    alone = F.coalesce(F.try_variant_get(doc, "$[1]", "string") == marker, F.lit(False)) & F.isnull(
        F.try_variant_get(doc, "$[2]", "variant"))  # the marker right after the value, nothing after the marker
    is_object = alone & F.startswith(F.schema_of_variant(F.variant_get(doc, "$[0]", "variant")), F.lit("OBJECT"))
    type_errors = F.concat_ws("; ", *[
        F.when(~_json_type(doc, f.name).isin("STRING", "VOID"), F.lit(f"{f.name} is not a JSON string"))
        for f in EVENT_SCHEMA.fields])
    typed = docs.select("*", type_errors.alias("_type_errors"))
    parse_error = (F.when(F.col("value").isNull(), F.lit("value is null"))
                   .when(F.length("value") == 0, F.lit("value is empty (0 bytes)"))
                   .when(F.col("_text").isNull(), F.lit("value is not valid UTF-8"))
                   .when(doc.isNull() & F.try_parse_json("_text").isNull(),  # parsed alone only when wrapped failed
                         F.lit(NOT_JSON))
                   .when(doc.isNull() | ~is_object, F.lit("value is not a single JSON object"))
                   .when(F.col("_type_errors") != "", F.col("_type_errors")))
    checked = typed.select("*", parse_error.alias("parse_error"))
    fields = [F.when(F.col("parse_error").isNull(), F.try_variant_get(doc, f"$[0].{f.name}", "string")).alias(f.name)
              for f in EVENT_SCHEMA.fields]
    return checked.select(*SOURCE_COLUMNS, "parse_error", *fields)


def _trim(column: str) -> Column:
    return F.btrim(F.col(column), F.lit(WHITESPACE))


def _timestamp(text: Column) -> Column:
    """The timestamp of a value of TIMESTAMP_SHAPE (UTC when it has no offset), else NULL."""
    return F.when(text.rlike(TIMESTAMP_SHAPE), F.try_to_timestamp(text))


def _length_rule(column: str, value: Column) -> Column:
    limit = USERS.column(column).length
    return F.when(F.length(value) > limit, F.lit(f"{column} longer than {limit} characters"))


def _rules(first: Column, last: Column, email: Column, phone: Column, status: Column, registered: Column,
           sent: Column) -> list:
    statuses = ", ".join(LOYALTY_STATUSES)
    rules = [F.when(F.coalesce(first, F.lit("")) == "", F.lit("first_name missing or empty")),
             F.when(F.coalesce(last, F.lit("")) == "", F.lit("last_name missing or empty")),
             F.when(F.coalesce(email, F.lit("")) == "", F.lit("email missing or empty"))
              # too long: its own rule says so. Java's regex recurses once per repeat of the domain's group, and
              # ~5,000 labels ("a@a.a.a…") overflow a task thread's stack: the batch failed for good
              .when(F.length(email) > USERS.column("email").length, F.lit(None).cast("string"))
              .when(~F.lower(email).rlike(EMAIL_PATTERN), F.lit("email malformed")),
             F.when(~F.coalesce(status, F.lit("")).isin(*LOYALTY_STATUSES),
                    F.lit(f"loyalty_status must be one of {statuses}")),
             F.when(registered.isNull(),
                    F.lit(f"registration_date missing or not a timestamp like {TIMESTAMP_EXAMPLE}"))
              .when(~F.year(registered).between(*REGISTRATION_YEARS),  # the session's time zone is UTC
                    F.lit(f"registration_date outside the years {REGISTRATION_YEARS[0]}-{REGISTRATION_YEARS[1]} "
                          "(UTC)"))
              # a registration later than the event itself (9999-01-01 as "unknown"): the weekly mart's calendar ran
              # to it, ~416,000 empty weeks; Kafka's timestamp, so that a replayed event is judged the same. A record
              # without one (-1: old message format) comes as 1969-12-31 23:59:59.999: judged by the years alone.
              # The day goes on the registration (its years checked): a CreateTime in Spark's last day overflowed
              .when((F.unix_micros(sent) >= 0) & (registered - F.expr(f"INTERVAL {FUTURE_TOLERANCE_DAYS} DAY") > sent),
                    F.lit(f"registration_date more than {FUTURE_TOLERANCE_DAYS} day after the event was sent (its "
                          "Kafka timestamp)"))
              # without a Kafka timestamp: the last millisecond of 9999 is Postgres' 'infinity' to the replica, which
              # the source refuses (its batch failed on every retry)
              .when(registered >= F.timestamp_micros(F.lit(epoch_micros(DATETIME_END))),
                    F.lit(f"registration_date outside the years {REGISTRATION_YEARS[0]}-{REGISTRATION_YEARS[1]} "
                          "(UTC)"))]
    for name, value in (("first_name", first), ("last_name", last), ("email", email), ("phone", phone)):
        rules += [_length_rule(name, value), F.when(F.contains(value, F.lit("\u0000")), F.lit(f"{name} contains NUL"))]
    return rules


def validate_events(parsed: DataFrame) -> DataFrame:
    """Normalizes the fields (trimmed; empty phone -> NULL; registration_date a timestamp) and adds `reason`: NULL
    for a valid event, else every rule it breaks, `; `-separated. The email keeps its case: Postgres lower-cases it
    (ledger.upsert_users), as it does the stored emails it is matched with; Java's lower() differs from it (a final
    Σ is ς to Java, σ to Postgres; İ is i + U+0307 to Java), and a lower-cased event missed its user."""
    normalized = parsed.select(
        *SOURCE_COLUMNS, "parse_error", _trim("first_name").alias("first_name"), _trim("last_name").alias("last_name"),
        _trim("email").alias("email"), F.nullif(_trim("phone"), F.lit("")).alias("phone"),
        _timestamp(_trim("registration_date")).alias("registration_date"),
        _trim("loyalty_status").alias("loyalty_status"))
    rules = _rules(*(F.col(c) for c in ("first_name", "last_name", "email", "phone", "loyalty_status",
                                         "registration_date", "timestamp")))
    judged = normalized.select("*", F.concat_ws("; ", *rules).alias("_rules"))
    reason = F.coalesce(F.col("parse_error"), F.nullif(F.col("_rules"), F.lit("")))
    return judged.select(*SOURCE_COLUMNS, *USER_COLUMNS, reason.alias("reason"))


def valid_users(validated: DataFrame) -> DataFrame:
    return validated.filter(F.col("reason").isNull()).drop("reason")


def rejected_events(validated: DataFrame) -> DataFrame:
    return validated.filter(F.col("reason").isNotNull()).select(*SOURCE_COLUMNS, "reason")


def latest_per_email(users: DataFrame) -> DataFrame:
    """One row per email (as sent, trimmed) and partition: the highest offset (Kafka's order). Postgres picks among
    what is left, by its lower(email) (ledger.upsert_users): across partitions the later Kafka timestamp, then the
    higher partition. Only the step within a partition is done here: done per email before Postgres groups the
    emails equal but for case, the step across partitions could pick an event a later one in its partition had
    replaced."""
    in_partition = Window.partitionBy("email", "partition").orderBy(F.col("offset").desc())
    return users.withColumn("_rank", F.row_number().over(in_partition)).filter("_rank = 1").drop("_rank")


# A rejected row's fields besides its key, value, reason and topic, with their serialization (three numbers, pickle's
# per-row overhead): measured at up to ~240 bytes for the smallest rows
REJECT_ROW_OVERHEAD = 256


def reject_bytes() -> Column:
    """What a rejected row weighs when fetched to the driver, about (never 0: see dead_letters)."""
    return (F.coalesce(F.length("value"), F.lit(0)) + F.coalesce(F.length("key"), F.lit(0))
            + F.coalesce(F.length("reason"), F.lit(0)) + F.length("topic") + F.lit(REJECT_ROW_OVERHEAD))


def batch_summary(positions: dict[str, dict[str, int]]):
    """Per partition of a validated batch: rows read (`read`), and of the unapplied rows the first offset, the next
    offset (last + 1), their count (`events`), how many are rejected and what they weigh (`rejected_bytes`, see
    `reject_bytes`; NULL when none): one job tells the sink what a batch holds."""
    def transform(validated: DataFrame) -> DataFrame:
        fresh = is_unapplied(positions)
        rejected = fresh & F.col("reason").isNotNull()
        return (validated.groupBy("topic", "partition")
                .agg(F.count(F.lit(1)).alias("read"), F.min(F.when(fresh, F.col("offset"))).alias("first_offset"),
                     (F.max(F.when(fresh, F.col("offset"))) + 1).alias("next_offset"),
                     F.count(F.when(fresh, F.lit(1))).alias("events"),
                     F.count(F.when(rejected, F.lit(1))).alias("rejected"),
                     F.sum(F.when(rejected, reject_bytes())).alias("rejected_bytes")))
    return transform
