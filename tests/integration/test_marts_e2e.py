"""The real job through spark-submit on the standalone cluster, pointed at a scratch replica by environment
variables, as the DAG's task runs it: exit 0 and marts equal to plain SQL; then a corrupt replica: exit 3 (no
retry), and the published marts unchanged."""
from __future__ import annotations

import re
import subprocess
import time

import pytest
from test_marts_replica import execute, scratch_replica

from shopflow import db
from shopflow.config import PROJECT_ROOT
from shopflow.jobs.session import NO_RETRY_EXIT
from shopflow.marts import all_marts
from shopflow.marts.verify import differences
from shopflow.stack.services import VENV_BIN, base_env

pytestmark = pytest.mark.integration
JOB_FILE = PROJECT_ROOT / "code" / "shopflow" / "jobs" / "build_marts.py"
SUBMIT_TIMEOUT_S = 900  # the cluster may first finish another test run's application


def spark_submit(settings, run_id: str) -> tuple[subprocess.CompletedProcess, float]:
    """The command the DAG's task builds (`spark_job` in code/airflow/dags/_spark.py, whose options tests/dags checks):
    client mode, one executor of SPARK_MARTS_CORES cores, the batch jobs' JVM flags (the archive included)."""
    java, cores = settings.java_options_for(False, job="build_marts"), str(settings.SPARK_MARTS_CORES)
    command = [str(VENV_BIN / "spark-submit"), "--master", settings.SPARK_MASTER_URL, "--deploy-mode", "client",
               "--name", f"shopflow-build_marts-{run_id}",
               "--jars", f"{settings.POSTGRES_JDBC_JAR},{settings.MYSQL_JDBC_JAR}",
               "--conf", "spark.sql.session.timeZone=UTC", "--conf", f"spark.executor.cores={cores}",
               "--conf", f"spark.executor.memory={settings.SPARK_EXECUTOR_MEMORY}",
               "--conf", f"spark.cores.max={cores}",
               "--conf", f"spark.driver.extraJavaOptions={java}", "--conf", f"spark.executor.extraJavaOptions={java}",
               "--driver-memory", settings.SPARK_DRIVER_MEMORY, str(JOB_FILE), "--run-id", run_id]
    start = time.monotonic()
    result = subprocess.run(command, env=base_env(settings), capture_output=True, text=True, timeout=SUBMIT_TIMEOUT_S)
    return result, time.monotonic() - start


def test_spark_submit_on_the_cluster_publishes_then_a_failing_gate_exits_3(spark_cluster, mysql):
    with scratch_replica(mysql, "marts_e2e") as replica:
        result, seconds = spark_submit(replica, "e2e-ok")
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        print(f"build_marts on the cluster: {seconds:.1f} s wall")
        # no Python runs on its executors, so its warm-up starts no Python worker (session.warm_up)
        warm_up = re.search(r"session warm-up: \d+ core\(s\), (\d+) Python worker\(s\)", result.stdout)
        assert warm_up and warm_up.group(1) == "0", result.stdout[-3000:]
        with db.mysql_connection(replica) as conn:
            assert all(differences(conn.cursor(), m)[1] == [] for m in all_marts())
        [(status, detail)] = execute(replica, "SELECT status, detail FROM pipeline_runs WHERE table_name IS NULL")
        assert status == "ok" and detail.startswith("run e2e-ok: published mart_average_check (4 rows)")
        before = {m.name: execute(replica, f"SELECT * FROM `{m.name}` ORDER BY 1, 2") for m in all_marts()}

        execute(replica, "ALTER TABLE reviews DROP CONSTRAINT ck_reviews_rating_1",
                "UPDATE reviews SET rating = 6 WHERE review_id = 1")
        result, _ = spark_submit(replica, "e2e-bad")
        assert result.returncode == NO_RETRY_EXIT == 3, (result.stdout + result.stderr)[-3000:]
        # spark-submit merges the Python driver's stderr (our log) into its stdout
        assert "quality gate failed: mart_product_rating range(1 <= rating <= 5): FAILED" in result.stdout
        assert {m.name: execute(replica, f"SELECT * FROM `{m.name}` ORDER BY 1, 2") for m in all_marts()} == before
