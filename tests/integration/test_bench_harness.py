"""`make bench` harness at a tiny scale: it runs, and its JSON has the required shape with positive numbers.

Every measure, the streaming ones on a backlog of 2,000 events and a continuous run of 5 s at 100 events/s, ≈ 3 min
here; SHOPFLOW_BENCH_TEST_QUICK=1 runs generation and the bound only (≈ 20 s). Speed itself is never asserted:
benchmarks are not tests.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cpu import PERIOD_S
from bench.streaming import TOPIC_PREFIX
from postgresdb.models import TABLES
from shopflow.config import PROJECT_ROOT, get_settings
from shopflow.db import pg_connection
from shopflow.stack import supervisor
from shopflow.stack.bootstrap import mariadb_root

pytestmark = pytest.mark.integration

SCHEMA = "bench_test_source"
PREFIX = "test_benchtest"
RATIO_KEYS = {"replication_full_vs_bound", "replication_full_vs_naive", "replication_full_vs_peer",
              "replication_incremental_vs_full", "stream_drain_vs_bound", "stream_p95_latency_s",
              "marts_spark_vs_duckdb"}
EVERYTHING = os.environ.get("SHOPFLOW_BENCH_TEST_QUICK") != "1"
STREAM_EVENTS, STREAM_RATE, STREAM_SECONDS = 2000, 100, 5


@pytest.fixture(scope="module")
def bench_result(postgres, mysql, tmp_path_factory):
    results = tmp_path_factory.mktemp("bench-results")
    skip = "" if EVERYTHING else "ours,naive,peer,marts,streaming"
    # --allow-busy: earlier tests may have left Airflow running (the refusal has its own test below)
    run = subprocess.run([sys.executable, "-m", "bench.run", "--scale", "0.05", "--skip", skip, "--allow-busy",
                          "--stream-events", str(STREAM_EVENTS), "--stream-rate", str(STREAM_RATE),
                          "--stream-seconds", str(STREAM_SECONDS), "--stream-warmup", "2",
                          "--source-schema", SCHEMA, "--target-prefix", PREFIX, "--results-dir", str(results)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with pg_connection(postgres) as conn, conn.cursor() as cur:
        cur.execute("SELECT " + " + ".join(f"(SELECT COUNT(*) FROM {SCHEMA}.{table.name})" for table in TABLES))
        source_rows = cur.fetchone()[0]
        cur.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
    [dated] = results.glob("20*.json")  # latest.json and latest.png (the README's chart): a run measuring all
    assert (results / "latest.json").exists() == EVERYTHING, run.stdout[-2000:]
    if EVERYTHING:
        assert (results / "latest.json").read_text() == dated.read_text()
    return json.loads(dated.read_text()), results, run.stdout, source_rows


def test_the_run_leaves_no_scratch_database_or_schema_behind(bench_result, postgres):
    """The README promises the scratch databases are dropped: nothing checked it."""
    assert [d for d in mariadb_root(postgres, "SHOW DATABASES").split() if d.startswith(PREFIX)] == []
    with pg_connection(postgres) as conn, conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{SCHEMA}%",))
        assert cur.fetchall() == []  # the source (dropped by the fixture) and the stream's scratch schema


def test_result_has_required_keys_and_ratio_names(bench_result):
    result, results, stdout, _ = bench_result
    assert {"scale", "machine", "versions", "measures", "ratios", "notes"} <= result.keys()
    assert set(result["ratios"]) == RATIO_KEYS
    assert result["machine"]["cores"] >= 1 and result["machine"]["ram_gib"] > 0
    assert result["versions"]["postgres"] and result["versions"]["mysql"] and result["versions"]["pyspark"]
    assert not EVERYTHING or (results / "latest.png").stat().st_size > 1000
    assert "replication_full_vs_bound" in stdout  # the on-screen table


def test_every_measure_has_positive_numbers(bench_result):
    result, _, _, source_rows = bench_result
    names = {m["name"] for m in result["measures"]}
    assert any(name.startswith("bound") for name in names)
    for measure in result["measures"]:
        assert {"name", "rows", "seconds", "rows_per_s"} <= measure.keys()
        assert measure["rows"] > 0 and measure["seconds"] > 0 and measure["rows_per_s"] > 0, measure
        assert measure["settle_s"] >= 0 and measure["innodb_flushed"] is True, measure  # started on quiet servers
    bounds = [m for m in result["measures"] if m["name"].startswith("bound")]
    assert len(bounds) == 3  # into the replica's own tables, into tables without FK indexes, three tables at once
    assert all(bound["rows"] == source_rows for bound in bounds)  # every source row crossed the pipe
    for bound in bounds:  # --repeat 2 (the default): both attempts kept, the fastest reported
        assert len(bound["attempts_s"]) == 2 and bound["seconds"] == min(bound["attempts_s"]), bound
    timed = bounds if not EVERYTHING else [m for m in result["measures"]
                                           if "librdkafka" not in m["name"] and "continuous" not in m["name"]]
    for measure in (m for m in timed if m["seconds"] >= 0.2):  # the machine's CPU in the window (bench/cpu.py)
        most = result["machine"]["cores"] * (1 + 2 * PERIOD_S / measure["seconds"]) + 0.1  # interpolated edges
        assert 0 < measure["cpu_core_s"] and 0 < measure["cpu_cores_busy"] <= most, measure


def test_missing_measures_are_null_with_a_reason(bench_result):
    result, _, _, _ = bench_result
    if not EVERYTHING:
        assert result["ratios"]["replication_full_vs_bound"] is None
        assert result["ratios"]["stream_drain_vs_bound"] is None
        assert any(note.startswith("naive: not measured: skipped") for note in result["notes"])
        assert any(note.startswith("streaming drain: not measured") for note in result["notes"])
    else:
        assert not [note for note in result["notes"] if "not measured" in note]
        for key in RATIO_KEYS:  # the drain against a bound COPY of 2,000 rows (milliseconds) can round to 0.000
            assert result["ratios"][key] >= 0 if key == "stream_drain_vs_bound" else result["ratios"][key] > 0, key
        incremental = next(m for m in result["measures"] if m["name"].startswith("ours: replication incremental"))
        assert len(incremental["attempts_s"]) == 2, incremental  # each attempt after its own 1 % change


@pytest.mark.skipif(not EVERYTHING, reason="SHOPFLOW_BENCH_TEST_QUICK=1: the bound only")
def test_each_measure_moved_the_rows_it_claims_and_the_ratios_are_its_own(bench_result):
    """Every copy of the source (ours, naive, dlt) carried all its rows; the incremental run changed 1 % of them;
    the marts measures read the same replica rows; the ratios are the ones of the measures above them."""
    result, _, _, source_rows = bench_result
    by_name = {m["name"]: m for m in result["measures"]}
    full, naive, peer, incremental, bound, spark, duckdb = (by_name[name] for name in (
        "ours: replication full", "naive: JDBC 1 partition, defaults", "peer: dlt full load",
        "ours: replication incremental (1 %)", "bound: COPY -> LOAD DATA", "marts: Spark build_marts",
        "marts: DuckDB same SQL"))
    assert full["rows"] == naive["rows"] == peer["rows"] == source_rows
    # keys divisible by 100 in each table: 1 % at the bench's scale, less in the tiny tables here (11 of 1,295 rows)
    assert incremental["rows"] == incremental["rows_changed_in_source"]
    assert source_rows // 200 <= incremental["rows"] <= source_rows // 100, (incremental["rows"], source_rows)
    assert spark["rows"] == duckdb["rows"] > 0 and min(duckdb["mart_rows"].values()) > 0, duckdb
    ratios = result["ratios"]
    for key, other in (("replication_full_vs_bound", bound), ("replication_full_vs_naive", naive),
                       ("replication_full_vs_peer", peer)):
        assert ratios[key] == round(full["rows_per_s"] / other["rows_per_s"], 3), key
    assert ratios["replication_incremental_vs_full"] == round(incremental["seconds"] / full["seconds"], 3)
    assert ratios["marts_spark_vs_duckdb"] == round(spark["seconds"] / duckdb["seconds"], 3)


@pytest.mark.skipif(not EVERYTHING, reason="SHOPFLOW_BENCH_TEST_QUICK=1: the bound only")
def test_the_streaming_measures_count_their_events_and_the_ratios_are_their_own(bench_result):
    """The drain and its bound carried the whole backlog; the continuous run counts the events sent after the
    warm-up, at the deployed trigger; the two streaming ratios are those of these measures."""
    result, _, _, _ = bench_result
    by_name = {m["name"]: m for m in result["measures"]}
    drain, bound = by_name["stream: drain backlog (Spark job)"], by_name["stream bound: psycopg COPY parsed rows"]
    continuous = by_name[f"stream: continuous {STREAM_RATE:g} ev/s for {STREAM_SECONDS:g} s"]
    assert drain["rows"] == bound["rows"] == STREAM_EVENTS
    assert continuous["rows"] == STREAM_RATE * STREAM_SECONDS
    assert continuous["trigger_s"] == get_settings().STREAMING_TRIGGER_SECONDS
    assert 0 < continuous["p50_latency_s"] <= continuous["p95_latency_s"] <= continuous["max_latency_s"]
    assert result["ratios"]["stream_drain_vs_bound"] == round(drain["rows_per_s"] / bound["rows_per_s"], 3)
    assert result["ratios"]["stream_p95_latency_s"] == continuous["p95_latency_s"]


def _pool_pages(settings) -> dict[str, int]:
    rows = mariadb_root(settings, "SELECT variable_name, variable_value FROM information_schema.global_status "
                                  "WHERE variable_name LIKE 'INNODB_BUFFER_POOL_PAGES_%'")
    return {name.lower().removeprefix("innodb_buffer_pool_pages_"): int(value)
            for name, value in (line.split("\t") for line in rows.splitlines())}


def _resize_pool(settings, size: int, page: int) -> None:
    """Sets the buffer pool's size and waits for the resize (done in the background) to reach it."""
    mariadb_root(settings, f"SET GLOBAL innodb_buffer_pool_size = {size}")
    deadline = time.monotonic() + 120
    while abs(_pool_pages(settings)["total"] * page - size) > 0.05 * size:
        assert time.monotonic() < deadline, f"buffer pool resize to {size} not done after 120 s"
        time.sleep(0.5)


def _resident_anonymous_bytes(settings) -> int:
    pid = Path(mariadb_root(settings, "SELECT @@pid_file").strip()).read_text().strip()
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("RssAnon:")).split()[1]) * 1024


def test_prewarm_writes_the_buffer_pools_free_pages_and_leaves_nothing_dirty(mysql, bench_result):
    """Run before the first measure (and recorded). Half the pool is given back and regrown first, so that it has
    free pages the process never wrote; afterwards mariadbd's resident memory has grown by (nearly) that half, and
    nothing is left to flush: the temporary table is gone and was never logged or written out."""
    from bench.settle import prewarm_innodb

    recorded = bench_result[0]["innodb_prewarm"]  # the run wrote the pool first and says how much (checked below)
    assert isinstance(recorded["pages"], int) and isinstance(recorded["seconds"], float), recorded
    size, page = (int(x) for x in mariadb_root(mysql, "SELECT @@innodb_buffer_pool_size, @@innodb_page_size").split())
    _resize_pool(mysql, size // 2, page)
    _resize_pool(mysql, size, page)
    before, resident = _pool_pages(mysql), _resident_anonymous_bytes(mysql)
    assert before["free"] >= 0.3 * before["total"], before
    result = prewarm_innodb(mysql)
    after, grown = _pool_pages(mysql), _resident_anonymous_bytes(mysql) - resident
    assert result["pages"] == pytest.approx(before["free"], abs=50)
    assert grown >= 0.8 * (size - size // 2), (grown, before)  # the regrown half; the rest may have been written
    assert after["dirty"] <= before["dirty"] + 50, (before, after)


def _children_with(parent: int, needle: bytes) -> list[int]:
    found = []
    for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        fields = supervisor.proc_stat(pid)
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if fields is not None and int(fields[1]) == parent and needle in cmdline:
            found.append(pid)
    return found


def _bench_topics(settings) -> list[str]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
    try:
        return [topic for topic in admin.list_topics() if topic.startswith(TOPIC_PREFIX)]
    finally:
        admin.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_terminated_bench_stops_the_stream_job_it_started(postgres, mysql, kafka, spark_cluster, tmp_path, signum):
    """`kill` (SIGTERM) or Ctrl-C while the continuous stream job runs: the bench ends through its cleanup, and that
    job, started in a process group of its own, does not stay behind holding the cluster's cores; its topics are
    deleted (the broker keeps them in memory). Ctrl-C says so in one line, not a traceback."""
    with open(tmp_path / "bench.log", "w") as log:
        bench = subprocess.Popen([sys.executable, "-m", "bench.run", "--no-generate", "--allow-busy",
                                  "--skip", "bound,ours,naive,peer,marts", "--stream-events", "300",
                                  "--stream-seconds", "600", "--stream-warmup", "0",
                                  "--source-schema", "bench_term_source", "--target-prefix", "test_benchterm",
                                  "--results-dir", str(tmp_path / "results")],
                                 cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    jobs: list[int] = []
    try:
        deadline = time.monotonic() + 600
        while not (jobs := _children_with(bench.pid, b"--continuous")):
            assert bench.poll() is None, (tmp_path / "bench.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the continuous job never started"
            time.sleep(0.5)
        bench.send_signal(signum)
        code = bench.wait(timeout=120)
        assert not [pid for pid in jobs if supervisor.process_alive(pid)], "the stream job outlived the bench"
        output = (tmp_path / "bench.log").read_text()
        assert code == 128 + signum, output[-3000:]  # through its cleanup
        assert "Traceback" not in output and ("bench: interrupted: no result written" in output) == (signum == 2)
        assert not (tmp_path / "results").exists()  # an interrupted run writes no results
        assert not _bench_topics(kafka), "the bench's topics stayed in the broker's memory"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        for pid in jobs:  # a failed run of this test leaves no job behind either
            if supervisor.process_alive(pid):
                os.killpg(pid, signal.SIGKILL)
