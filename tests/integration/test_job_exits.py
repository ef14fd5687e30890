"""A run that ends before its work begins leaves a failed `pipeline_runs` row: with the Spark master down, every marts
build failed at its start, and the dashboard went on showing the last successful build, with no warning (its warning
and Pipeline health read those rows only)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from test_marts_replica import execute, scratch_replica
from test_streaming_support import free_port

from shopflow.config import PROJECT_ROOT
from shopflow.stack.services import VENV_BIN, base_env

pytestmark = pytest.mark.integration


def _rows(settings, job: str) -> list[tuple]:
    return execute(settings, "SELECT status, table_name, mode, detail FROM pipeline_runs WHERE job = %s",
                   params=(job,))


@pytest.mark.parametrize("job", ["build_marts", "replicate_postgres_to_mysql"])
def test_a_batch_job_refused_before_spark_starts_leaves_a_failed_row(mysql, job):
    with scratch_replica(mysql, "exits", seed=False) as settings:
        command = [str(VENV_BIN / "spark-submit"), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
                   str(PROJECT_ROOT / "code" / "shopflow" / "jobs" / f"{job}.py")]  # no --jars: refused, exit 3
        result = subprocess.run(command, env=base_env(settings), capture_output=True, text=True, timeout=300)
        assert result.returncode == 3, (result.stdout + result.stderr)[-3000:]
        [(status, table, _mode, detail)] = _rows(settings, job)
    assert status == "failed" and table is None and "spark-submit was not given the JDBC driver(s)" in detail


def test_a_stream_run_that_cannot_reach_the_broker_leaves_a_failed_row(mysql):
    with scratch_replica(mysql, "exits", seed=False) as settings:
        broker = f"127.0.0.1:{free_port()}"
        env = base_env(dataclasses.replace(settings, KAFKA_BOOTSTRAP_SERVERS=broker))
        result = subprocess.run([sys.executable, "-m", "shopflow.jobs.stream_users", "--continuous"], cwd=PROJECT_ROOT,
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
        [(status, table, mode, detail)] = _rows(settings, "stream_users")
    assert (status, table, mode) == ("failed", "users", "continuous") and f"cannot reach Kafka at {broker}" in detail
