"""Continuous streaming: the job runs with `--continuous`; after a first small batch and a warm-up of
`warmup_s` seconds at the measured rate (fresh executor JVMs compile Spark's code paths during their first minute:
batches of the same size take 3-5x longer then), events are produced at a fixed rate for `seconds`; latency =
commit time of the micro-batch that applied the event (`stream_batches.committed_at` of the first batch whose end
offset in the event's partition lies past the event's offset: its users upsert commits in that transaction) minus
the event's `event_time` (set by the producer when it is sent). Only events sent after the warm-up count.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shopflow.config import PROJECT_ROOT, Settings
from shopflow.db import pg_connection

from .common import Measure, python_env, spark_submit_command, wait_for_idle_cluster
from .streaming import JOB_FILE, env_of, scratch

WARMUP_EVENTS = 50


def _produce(settings: Settings, count: int, rate: float, seed: int) -> None:
    subprocess.run([sys.executable, "-m", "datagen.events", "--count", str(count), "--rate", str(rate),
                    "--duplicate-fraction", "0", "--seed", str(seed)], env=os.environ | env_of(settings),
                   check=True, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)


def _applied(settings: Settings) -> int:
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COALESCE(SUM(events_read), 0) FROM {settings.POSTGRES_SCHEMA}.stream_batches")
        return int(cur.fetchone()[0])


def _wait_applied(settings: Settings, events: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _applied(settings) >= events:
                return
        except Exception:  # the ledger table appears when the job starts
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the continuous job applied fewer than {events} events in {timeout_s:.0f} s")


def _event_times(settings: Settings) -> list[tuple[int, int, str]]:
    """(partition, offset, event_time) of every event on the topic."""
    from kafka import TopicPartition

    from shopflow.streaming import kafka_offsets as ko
    consumer = ko.open_consumer(settings.KAFKA_BOOTSTRAP_SERVERS)
    partitions = ko.topic_partitions(consumer, settings.KAFKA_TOPIC)
    assigned = [TopicPartition(settings.KAFKA_TOPIC, p) for p in partitions]
    consumer.assign(assigned)
    consumer.seek_to_beginning()
    ends, out, deadline = consumer.end_offsets(assigned), [], time.monotonic() + 120
    # to the end offsets, not until the consumer's 1 s without a record: a broker pause ended that read early, and
    # the latencies came from the events read so far
    while any(consumer.position(tp) < ends[tp] for tp in assigned):
        if time.monotonic() > deadline:
            raise RuntimeError(f"reading the topic back did not reach its end offsets {ends} in 120 s")
        for records in consumer.poll(timeout_ms=1000).values():
            out += [(r.partition, r.offset, json.loads(r.value)["event_time"]) for r in records]
    consumer.close()
    return out


def _latencies(settings: Settings, since_event_time: str, sent: int) -> tuple[int, float, float, float]:
    """Each event joined to the batch that applied it by its Kafka position (not by its user's email: a later event
    for the same email moves the row's `updated_at`, and an earlier one would be timed to that later batch)."""
    schema = settings.POSTGRES_SCHEMA
    rows = _event_times(settings)
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bench_events (kafka_partition int, kafka_offset bigint, event_time timestamptz)")
        cur.copy_expert("COPY bench_events FROM STDIN", io.StringIO("".join(f"{p}\t{o}\t{t}\n" for p, o, t in rows)))
        cur.execute(f"""
            WITH lat AS (
                SELECT b.committed_at, EXTRACT(EPOCH FROM b.committed_at - e.event_time) AS s
                FROM bench_events e
                CROSS JOIN LATERAL (SELECT MIN(committed_at) AS committed_at FROM {schema}.stream_batches
                                    WHERE (end_offsets -> %s ->> e.kafka_partition::text)::bigint > e.kafka_offset) b
                WHERE e.event_time >= %s)
            SELECT COUNT(*), COUNT(committed_at), percentile_cont(0.5) WITHIN GROUP (ORDER BY s),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY s), MAX(s) FROM lat""",
                    (settings.KAFKA_TOPIC, since_event_time))
        count, applied, p50, p95, worst = cur.fetchone()
    if count != sent:
        raise RuntimeError(f"{count} events on the topic after the warm-up, where {sent} were sent")
    if applied != count:
        raise RuntimeError(f"{count - applied} of the {count} measured events are in no committed batch's range")
    return int(count), float(p50), float(p95), float(worst)


def measure_continuous(base: Settings, logs: Path, schema: str, rate: float = 1000, seconds: float = 60,
                       warmup_s: float = 30, trigger_s: float | None = None) -> dict:
    """`trigger_s`: the job's trigger interval, by default the deployed one (STREAMING_TRIGGER_SECONDS)."""
    from datetime import datetime, timezone
    with tempfile.TemporaryDirectory(prefix="bench-stream-cont-") as checkpoint:
        settings = scratch(base, schema, checkpoint)
        trigger_s = trigger_s or settings.STREAMING_TRIGGER_SECONDS
        _produce(settings, WARMUP_EVENTS, 100, seed=11)  # creates the topic; the first batch warms the job up
        wait_for_idle_cluster(settings)
        log = logs / "stream_continuous.log"
        with open(log, "w") as out:
            arguments = ["--continuous", "--trigger-seconds", f"{trigger_s:g}"]
            job = subprocess.Popen(spark_submit_command(JOB_FILE, arguments, settings, streaming=True),
                                   env=os.environ | env_of(settings) | python_env(), stdout=out,
                                   stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True)
        try:
            _wait_applied(settings, WARMUP_EVENTS, timeout_s=240)
            warm = int(rate * warmup_s)
            if warm:
                _produce(settings, warm, rate, seed=13)
            since = datetime.now(timezone.utc).isoformat()
            start = time.monotonic()
            _produce(settings, int(rate * seconds), rate, seed=12)
            produced_s = time.monotonic() - start
            _wait_applied(settings, WARMUP_EVENTS + warm + int(rate * seconds), timeout_s=180)
        finally:
            os.killpg(job.pid, signal.SIGTERM)
            try:
                job.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(job.pid, signal.SIGKILL)
        count, p50, p95, worst = _latencies(settings, since, int(rate * seconds))
    return {"stream_continuous": Measure(f"stream: continuous {rate:g} ev/s for {seconds:g} s", count, produced_s,
                                         {"p50_latency_s": round(p50, 3), "p95_latency_s": round(p95, 3),
                                          "max_latency_s": round(worst, 3), "trigger_s": trigger_s,
                                          "warmup_s": warmup_s})}
