"""A batch's dead letters, from the executors into Postgres on the sink's cursor, a bounded part at a time.

A batch holds up to `STREAMING_MAX_EVENTS_PER_BATCH` rejects, each raw and up to the broker's message size: collected
at once they could exceed the driver's memory or `spark.driver.maxResultSize`, and the same planned batch would then
fail on every retry. Rejects are cut into parts by their bytes (a running sum per Kafka partition, in offset order), one
part per Spark partition (an identity partitioner: no part shares one), fetched one after the other; a part holds at
most `fetch_bytes` plus its last row, whatever the mix of large and small rejects (a row weighs its key, value, reason
and topic plus a fixed overhead: `events.reject_bytes`).
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shopflow.streaming import events as ev
from shopflow.streaming import ledger

REJECT_FETCH_BYTES = 8 << 20
COLUMNS = ("value", "key", "reason", "topic", "partition", "offset")


def fetch_bytes(spark) -> int:
    """Bytes of dead letters fetched at a time: a quarter of `spark.driver.maxResultSize` (what one Spark job may
    return to the driver), at most REJECT_FETCH_BYTES."""
    limit = spark.sparkContext._jvm.org.apache.spark.network.util.JavaUtils.byteStringAsBytes(
        spark.sparkContext.getConf().get("spark.driver.maxResultSize", "1g"))
    return min(REJECT_FETCH_BYTES, limit // 4) if limit > 0 else REJECT_FETCH_BYTES


def part_bases(sizes: dict[tuple[str, int], int], part: int) -> tuple[dict[tuple[str, int], int], int]:
    """{(topic, partition): its first part's number} and the number of parts: each Kafka partition's rejects take
    ceil(bytes / part) parts (at least one), in Kafka's order (rejected_id follows it)."""
    bases, total = {}, 0
    for key in sorted(sizes):
        bases[key], total = total, total + max(1, -(-sizes[key] // part))
    return bases, total


def write(cur, schema: str, batch_id: int, fresh: DataFrame, sizes: dict[tuple[str, int], int]) -> int:
    """Inserts the rejects of `fresh` (unapplied validated rows); `sizes`: their bytes per (topic, partition), from
    the batch summary. Returns how many."""
    rows = fresh.transform(ev.rejected_events).select(*COLUMNS, F.unix_micros("timestamp").alias("micros"))
    part = fetch_bytes(fresh.sparkSession)
    if sum(sizes.values()) <= part:
        return ledger.insert_rejects(cur, schema, batch_id, [tuple(r) for r in rows.collect()])
    bases, parts = part_bases(sizes, part)
    base = F.create_map(*[x for (topic, p), b in bases.items() for x in (F.lit(f"{topic}:{p}"), F.lit(b))])
    # every row weighs > 0, so `before` stays below its partition's total and the number below base + its parts
    # (partitionBy's modulo would otherwise wrap a row into part 0)
    weight = ev.reject_bytes()
    before = F.sum(weight).over(Window.partitionBy("topic", "partition").orderBy("offset")) - weight
    number = base[F.concat_ws(":", "topic", F.col("partition").cast("string"))] + F.floor(before / part)
    keyed = rows.select(number.cast("int").alias("_part"), *rows.columns).rdd.map(lambda r: (r[0], tuple(r[1:])))
    ordered = keyed.partitionBy(parts, lambda n: n).mapPartitions(  # (part, row) pairs, in Kafka's order
        lambda pairs: sorted(pairs, key=lambda pair: (pair[1][3], pair[1][4], pair[1][5])))
    written, chunk, current = 0, [], None
    for number, row in ordered.toLocalIterator(prefetchPartitions=False):  # one INSERT per part
        if number != current and chunk:
            written, chunk = written + ledger.insert_rejects(cur, schema, batch_id, chunk), []
        chunk.append(row)
        current = number
    return written + ledger.insert_rejects(cur, schema, batch_id, chunk)
