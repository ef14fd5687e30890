"""The one way our entry points build their SparkSession."""
from __future__ import annotations

import importlib
import logging
import os
import signal
import time
from contextlib import contextmanager
from typing import Iterator

from shopflow.config import Settings, get_settings
from shopflow.config_values import SettingsError
from shopflow.jobs.session_checks import (NO_RETRY_EXIT, RESTART_HINT, MasterUnreachable, MissingJars, SessionRefused,
                                         bind_to_loopback, check_drivers, check_master)
from shopflow.runlog import airflow_run_id

# what the entry points import from here, kept in session_checks (what a session refuses before Spark starts)
__all__ = ["NO_RETRY_EXIT", "RESTART_HINT", "MasterUnreachable", "MissingJars", "SessionRefused", "bind_to_loopback",
           "build_session", "check_drivers", "check_master", "configure_logging", "expected_cores", "job_settings",
           "warm_up"]
log = logging.getLogger("shopflow.session")
EXECUTOR_WAIT_S = 60.0


def configure_logging(force: bool = False) -> None:
    """The jobs' log format at INFO, without the libraries' chatter: py4j logs every callback from the JVM (one line
    per micro-batch of `make stream`), mysql.connector its authentication plugin on each first connection, and
    kafka-python every connection."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=force)
    for noisy in ("py4j", "mysql.connector", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name, close_race in _CLOSE_RACES.items():
        if close_race not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(close_race)


def _closing_client_refresh(record: logging.LogRecord) -> bool:
    """False for kafka-python's `ERROR … Metadata refresh: failed Cancelled`: its background metadata refresh, cut
    short when our offsets client closes (about one stream run in six logged it, in a run that went fine). A refresh
    that fails any other way is still logged."""
    cancelled = any(type(arg).__name__ == "Cancelled" for arg in (record.args or ()) if isinstance(arg, Exception))
    return not (cancelled and str(record.msg).startswith("Metadata refresh: failed"))


def _closing_client_task(record: logging.LogRecord) -> bool:
    """False for kafka-python's `ERROR … Error closing coroutine for cancelled task` with its traceback
    (`ValueError: generator already executing`): closing our offsets client cancels a task its IO thread is still
    running (once in a 10-batch stream run of CI on 2026-12-06, in a batch that went fine). Any other error while
    closing is still logged."""
    error = record.exc_info[1] if record.exc_info else None
    return not (str(record.msg).startswith("Error closing coroutine for cancelled task")
                and isinstance(error, ValueError) and "generator already executing" in str(error))


# kafka-python's logs of closing a client while its background thread works: harmless, and one with a traceback
_CLOSE_RACES = {"kafka.cluster": _closing_client_refresh, "kafka.net.selector": _closing_client_task}


def _submitted_master() -> str:
    """The master spark-submit was given (its JVM holds it as a system property until the context starts)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return SparkConf().get("spark.master", "")


def build_session(app_name: str, settings: Settings, master: str | None = None,
                  warm_modules: tuple[str, ...] | None = None, arrow_workers: bool = False,
                  streaming: bool = False, cores: int | None = None, executor_cores: int | None = None,
                  jdbc_drivers: dict[str, str] | None = None, task_attempts: int | None = None):
    """Under spark-submit (the DAGs) master, jars, JVM flags and executor sizes come from its arguments; run
    directly, from Settings (`streaming`: SPARK_STREAMING_JAVA_OPTIONS instead of SPARK_JAVA_OPTIONS), with
    single-core executors, one per worker. `cores` / `executor_cores`: the job's own `spark.cores.max` /
    `spark.executor.cores`, under spark-submit too (the context starts here). `warm_modules`: wait for the executors
    and import these in their Python workers before returning (see `warm_up`; `()` for a job without Python on its
    executors: no Python worker is started), so a job's own clock does not include starting the cluster side of the
    session; None: no warm-up. `arrow_workers`: the job's Python runs Arrow-fed (a Python data source, mapInArrow),
    whose workers Spark keeps in a pool apart from the RDD ones: warm that pool instead. `jdbc_drivers`: the JDBC
    drivers the job needs ({class: jar}), checked under spark-submit (`check_drivers`); run directly, the settings'
    jars are always given. `task_attempts`: `spark.task.maxFailures` (Spark's default on a cluster: 4)."""
    from pyspark.sql import SparkSession

    job, run = app_name.removeprefix("shopflow-"), airflow_run_id()
    # the master's UI (8081) lists apps by name: each names the DAG run it works for, as its pipeline_runs rows do
    builder = SparkSession.builder.appName(f"{app_name} {run}" if run else app_name)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    master = _submitted_master() if submitted else master or settings.SPARK_MASTER_URL
    check_master(master)
    if submitted:
        check_drivers(job, jdbc_drivers or {})
    else:
        bind_to_loopback(master)
        java = settings.java_options_for(streaming, job=job)
        builder = (builder.master(master)
                   .config("spark.jars", f"{settings.POSTGRES_JDBC_JAR},{settings.MYSQL_JDBC_JAR}")
                   .config("spark.driver.memory", settings.SPARK_DRIVER_MEMORY)
                   .config("spark.executor.memory", settings.SPARK_EXECUTOR_MEMORY)
                   .config("spark.driver.extraJavaOptions", java).config("spark.executor.extraJavaOptions", java)
                   .config("spark.executor.cores", "1").config("spark.cores.max", str(settings.SPARK_WORKERS)))
    builder = builder.config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "6")
    if cores:
        builder = builder.config("spark.cores.max", str(cores))
    if executor_cores:
        builder = builder.config("spark.executor.cores", str(executor_cores))
    if task_attempts:
        builder = builder.config("spark.task.maxFailures", str(task_attempts))
    if streaming:  # a micro-batch's cache lives for one batch: compressing its columns costs CPU and saves nothing
        builder = builder.config("spark.sql.inMemoryColumnarStorage.compressed", "false")
    with _driver_jvm_ignoring_sigterm(not submitted):
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    if warm_modules is not None:
        warm_up(session, settings, warm_modules, arrow_workers)
    return session


@contextmanager
def _driver_jvm_ignoring_sigterm(launched_here: bool) -> Iterator[None]:
    """Run directly, PySpark starts the driver's JVM as a child in the job's process group, ignoring only SIGINT:
    `timeout`, systemd and `kill -- -<pgid>` send SIGTERM to the whole group, and it ended the JVM under the job's
    clean stop (py4j tracebacks, exit 1). Started with SIGTERM ignored, the JVM keeps ignoring it (HotSpot sets no
    handler for an ignored SIGTERM, as for SIGINT); it still ends with the job, when its stdin (a pipe from this
    process) closes, and SIGKILL still takes it. For every job run directly (one without handlers of its own ends on
    SIGTERM, and the JVM with it). Under spark-submit the JVM is the parent: nothing to do."""
    from pyspark import java_gateway

    popen = getattr(java_gateway, "Popen", None)
    if not launched_here or popen is None:  # None: a PySpark that starts it otherwise keeps its own way
        yield
        return

    def ignoring_sigterm(*args, preexec_fn=None, **kwargs):
        def in_the_child():  # after the fork, before the exec: this process keeps its handlers
            if preexec_fn is not None:
                preexec_fn()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return popen(*args, preexec_fn=in_the_child, **kwargs)

    java_gateway.Popen = ignoring_sigterm
    try:
        yield
    finally:
        java_gateway.Popen = popen


def _import_all(modules: tuple[str, ...]) -> int:
    for module in modules:
        importlib.import_module(module)
    return os.getpid()


def expected_cores(settings: Settings, master: str, cores_max: str | None) -> int:
    """The cores the application will get: the standalone cluster's, capped by `spark.cores.max`."""
    if not master.startswith("spark://"):
        return 1
    cluster = settings.SPARK_WORKERS * settings.SPARK_WORKER_CORES
    limit = int(cores_max) if cores_max and cores_max.strip().isdigit() else 0
    return min(cluster, limit) if limit > 0 else cluster


def _arrow_import_all(modules: tuple[str, ...]):
    def imported(batches):
        import pyarrow as pa
        pid = _import_all(modules)
        for _ in batches:
            pass
        yield pa.RecordBatch.from_pydict({"pid": [pid]})
    return imported


def warm_up(spark, settings: Settings, modules: tuple[str, ...], arrow_workers: bool = False) -> float:
    """Waits (bounded) until the standalone cluster's cores have registered, then runs one task per core slot
    twice over that imports `modules` in the executors' Python workers (they stay up: worker reuse), or with no
    modules a JVM-only job (the marts job: Python workers it never uses cost it ≈ 1 s of its own clock,
    bench/NOTES.md). `arrow_workers`: the tasks are Arrow-fed (mapInArrow), so they start the workers a Python data
    source's reads get; Spark pools those apart from the RDD ones (`parallelize().map()`), and warming the wrong
    pool left the streaming job's first read to boot its own (≈ 2.4 s of its first batch). Returns the seconds it
    took; a cluster that stays smaller than expected is used as it is."""
    start, sc = time.monotonic(), spark.sparkContext
    expected = expected_cores(settings, sc.master, sc.getConf().get("spark.cores.max"))
    while sc.defaultParallelism < expected and time.monotonic() - start < EXECUTOR_WAIT_S:
        time.sleep(0.25)
    slots = sc.defaultParallelism
    if modules:
        sc.setJobDescription("warm up: executors and their Python workers")
        if arrow_workers:
            tasks = spark.range(0, 2 * slots, 1, 2 * slots).mapInArrow(_arrow_import_all(modules), "pid long")
            workers = len({row.pid for row in tasks.collect()})
        else:
            imported = sc.parallelize(range(2 * slots), 2 * slots).map(lambda _: _import_all(modules))
            workers = len(set(imported.collect()))
    else:  # a job without Python on its executors: their first tasks, no Python worker
        sc.setJobDescription("warm up: executors")
        spark.range(0, 2 * slots, 1, 2 * slots).count()
        workers = 0
    sc.setJobDescription(None)
    seconds = time.monotonic() - start
    # a standalone cluster's default parallelism is at least 2, whatever its cores: one core shows as 2
    cores = min(slots, expected) if sc.master.startswith("spark://") else slots
    log.info("session warm-up: %d core(s), %d Python worker(s) ready in %.1f s", cores, workers, seconds)
    return seconds


def job_settings() -> Settings:
    """The settings of a job's main, or exit NO_RETRY_EXIT after one line naming the bad value (a retry would read
    the same one). Logging must be configured."""
    try:
        return get_settings()
    except SettingsError as error:
        log.error("bad setting: %s", error)
        raise SystemExit(NO_RETRY_EXIT) from None
