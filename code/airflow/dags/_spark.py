"""What every shopflow DAG shares: default args and the spark-submit task for one of our jobs.

Settings reach Airflow as environment variables (the local stack exports every setting; compose uses env_file).
This module imports Airflow only: no pyspark, no database call at parse time.
"""
from __future__ import annotations

import os
import re
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException

JOBS_DIR = Path(__file__).resolve().parents[2] / "shopflow" / "jobs"
START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)
# Updated by every successful replication run; build_marts is scheduled on it.
REPLICA_ASSET = Asset("mysql://mysql_db/replica")
JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"  # Settings.SPARK_JAVA_OPTIONS's default
STREAMING_JAVA_OPTIONS = "-XX:+UseSerialGC"  # Settings.SPARK_STREAMING_JAVA_OPTIONS's default
CDS_JOBS = "build_marts,stream_users,replicate_postgres_to_mysql"  # Settings.SPARK_CDS_JOBS's default
MARTS_CORES = "2"  # Settings.SPARK_MARTS_CORES's default
STREAMING_CORES = "2"  # Settings.SPARK_STREAMING_CORES's default
WORKERS = "3"  # Settings.SPARK_WORKERS's default
WORKER_CORES = "2"  # Settings.SPARK_WORKER_CORES's default
EXECUTOR_MEMORY = "1g"  # Settings.SPARK_EXECUTOR_MEMORY's default
NO_RETRY_EXIT = 3  # shopflow.jobs.session.NO_RETRY_EXIT: the job says a retry would fail the same way
# execution_timeout: a spark-submit that never gets executors (every worker ended) would hold its DAG's only active
# run for good, and no later run would start; the jobs take seconds to minutes at the bench's scale
# The jobs never read the logical date: a backfill's runs would each replicate (or drain) "now" again, one replica
# Asset event (a marts build) apiece, and backfill runs are not counted against max_active_runs=1 (Airflow runs them
# beside the scheduled run). The cron DAGs allow their schedule, Trigger and the UI's Materialize of their Asset (a
# run "now" like Trigger, counted against max_active_runs); the UI/API refuse a backfill.
CRON_RUN_TYPES = ("scheduled", "manual", "asset_materialization")
DEFAULT_ARGS = {"owner": "shopflow", "retries": 2, "retry_delay": timedelta(seconds=30),
                "execution_timeout": timedelta(hours=1)}


def setting(key: str, default: str) -> str:
    return os.environ.get(key, default)


class JobSubmit(SparkSubmitOperator):
    """spark-submit of one of our jobs: its exit code NO_RETRY_EXIT (a failed quality gate, tables that differ from
    the models, …) fails the task at once, instead of after two retries that would fail the same way."""

    def execute(self, context):
        _check_conf(context, self.dag.params if self.has_dag() else {})
        try:
            return super().execute(context)
        except Exception as error:  # the hook's message: "Cannot execute: <command>. Error code is: <n>.<log tail>"
            if re.search(rf"\. Error code is: {NO_RETRY_EXIT}\.", str(error)):
                raise AirflowFailException(f"the job exited {NO_RETRY_EXIT}: a retry would fail the same way (the log "
                                           "above says why), so the task fails without retrying") from error
            raise

    def on_kill(self) -> None:
        """Airflow's timeout (and a task stopped from outside) calls this: the provider kills the spark-submit JVM
        only, and our Python driver, its child, went on with its Python-side work (checksums, a marts publish) while
        holding the replica's lock, beside the retry. The driver and its children get SIGTERM once the JVM is gone.
        A task marked failed or cleared in the UI gets SIGTERM from Airflow's supervisor first (the task's whole
        process group, the driver with it), then this one: the driver takes the two as one stop and writes its
        failed pipeline_runs row (shopflow/jobs/db_exit.py)."""
        submitted = getattr(getattr(self, "_hook", None), "_submit_sp", None)
        driver = _descendants(submitted.pid) if submitted is not None and submitted.poll() is None else []
        super().on_kill()
        for pid in driver:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _check_conf(context, params) -> None:
    """A trigger's conf keys the DAG does not declare fail the task: Airflow merges them into the params unchecked, so
    `{"full": true}` ran an ordinary incremental load, and the run succeeded."""
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    if unknown := sorted(set(conf) - set(params.keys())):
        declared = ", ".join(sorted(params.keys())) or "none"
        raise AirflowFailException(f"unknown key(s) in the trigger's conf: {', '.join(unknown)} (this DAG's "
                                   f"params: {declared}); nothing was run")


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, queue = [], list(children.get(pid, []))
    while queue:
        found.append(queue.pop(0))
        queue.extend(children.get(found[-1], []))
    return found


def spark_job(task_id: str, job: str, application_args: list[str] | None = None, cores: int | None = None,
              executor_cores: int = 1, streaming: bool = False, **kwargs) -> JobSubmit:
    """A client-mode spark-submit of code/shopflow/jobs/<job>.py on the cluster behind `spark_default`.

    Executors of `executor_cores` cores (default one), `cores` in all (default one per worker), so a long job leaves
    the workers' other task slots to the others.
    `streaming`: the JVM flags of SPARK_STREAMING_JAVA_OPTIONS instead of SPARK_JAVA_OPTIONS.
    """
    jars = ",".join([setting("POSTGRES_JDBC_JAR", "/usr/share/java/postgresql.jar"),
                     setting("MYSQL_JDBC_JAR", "/usr/share/java/mariadb-java-client.jar")])
    workers = int(setting("SPARK_WORKERS", WORKERS))
    all_cores = workers * int(setting("SPARK_WORKER_CORES", WORKER_CORES))
    # JDBC DATETIME reads use the JVM zone: pin it, whatever the host's; then SPARK_(STREAMING_)JAVA_OPTIONS (.env)
    flags = (setting("SPARK_STREAMING_JAVA_OPTIONS", STREAMING_JAVA_OPTIONS) if streaming
             else setting("SPARK_JAVA_OPTIONS", JAVA_OPTIONS))
    java = f"-Duser.timezone=UTC {flags}".strip()
    archive = setting("SPARK_CDS_ARCHIVE", "")  # the stack's class-data sharing archive (shopflow/stack/cds.py)
    cds_jobs = [name.strip() for name in setting("SPARK_CDS_JOBS", CDS_JOBS).split(",")]
    if archive and job in cds_jobs and os.path.isfile(archive):
        java += f" -XX:SharedArchiveFile={archive}"
    conf = {"spark.sql.session.timeZone": "UTC", "spark.executor.cores": str(executor_cores),
            "spark.executor.memory": setting("SPARK_EXECUTOR_MEMORY", EXECUTOR_MEMORY),
            "spark.cores.max": str(min(cores or workers, all_cores)),
            "spark.driver.extraJavaOptions": java, "spark.executor.extraJavaOptions": java}
    return JobSubmit(
        task_id=task_id, application=str(JOBS_DIR / f"{job}.py"), conn_id="spark_default", name=f"shopflow-{job}",
        jars=jars, conf=conf, driver_memory=setting("SPARK_DRIVER_MEMORY", "1g"),
        application_args=application_args or [], deploy_mode="client", **kwargs)
