"""`make bench` refuses to measure beside work that would share the cores with its measures (bench/run.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shopflow.config import PROJECT_ROOT
from shopflow.db import pg_connection
from shopflow.stack import manager

pytestmark = pytest.mark.integration

BUSY_SCHEMA = "bench_busy_source"


def test_refuses_to_measure_while_services_it_does_not_use_run(postgres, mysql, tmp_path):
    """The stack's other services (here the dashboard; Airflow and eventgen alike) would share the cores with the
    measures: the bench stops before it starts anything, unless --allow-busy, and then the results name them."""
    started = manager.ensure(mysql, ["dashboard"])
    try:
        command = [sys.executable, "-m", "bench.run", "--scale", "0.02", "--skip", "ours,naive,peer,streaming",
                   "--repeat", "1", "--source-schema", BUSY_SCHEMA, "--target-prefix", "test_benchbusy",
                   "--results-dir", str(tmp_path)]
        refused = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "dashboard" in refused.stderr and "make down" in refused.stderr and "--allow-busy" in refused.stderr
        assert "[bench]" not in refused.stdout and not list(tmp_path.iterdir())  # nothing measured, nothing written

        allowed = subprocess.run(command + ["--allow-busy"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                 timeout=300)
        assert allowed.returncode == 0, allowed.stdout[-3000:] + allowed.stderr[-3000:]
        [dated] = tmp_path.glob("20*.json")  # a partial run (--skip) leaves latest.json alone
        assert not (tmp_path / "latest.json").exists()
        result = json.loads(dated.read_text())
        assert "dashboard" in result["machine"]["other_services_running"]
        assert any("--allow-busy" in note and "dashboard" in note for note in result["notes"]), result["notes"]
        assert any(m["name"].startswith("bound") for m in result["measures"])  # and it did measure
        # marts builds from ours' replica: skipped with it, not failed ("the full run did not complete", exit 1)
        assert "marts: not measured: skipped (it builds from the replica of ours full, skipped)" in result["notes"]
    finally:
        manager.stop(mysql, started)
        with pg_connection(mysql) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {BUSY_SCHEMA} CASCADE")


def test_refuses_to_measure_beside_a_job_run_by_hand(tmp_path):
    """`make stream` holds cluster cores and writes to Postgres all the time: the bench names it and stops."""
    title = ".venv/bin/python -m shopflow.jobs.stream_users --continuous"
    job = subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep 300'], cwd=PROJECT_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{job.pid}/cmdline").read_bytes().replace(b"\0", b" ").startswith(title.encode()):
            assert time.monotonic() < deadline, "the fake job never retitled itself"
            time.sleep(0.05)
        # a scratch source and targets, should the refusal ever fail: the bench's defaults would regenerate
        # bench_source at scale 60
        refused = subprocess.run([sys.executable, "-m", "bench.run", "--skip", "ours,naive,peer,marts,streaming",
                                  "--scale", "0.02", "--source-schema", BUSY_SCHEMA, "--target-prefix",
                                  "test_benchbusy", "--results-dir", str(tmp_path)],
                                 cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    finally:
        job.kill()
        job.wait(timeout=10)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"(pid {job.pid})" in refused.stderr and "shopflow.jobs.stream_users" in refused.stderr, refused.stderr
    assert not list(tmp_path.iterdir())
