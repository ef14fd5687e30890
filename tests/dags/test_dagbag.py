"""Every DAG file in code/airflow/dags imports cleanly and follows the project's DAG conventions."""
import ast
import os
import sys
from pathlib import Path

import pytest

from shopflow.stack.airflow_api import DAGS_DIR, project_dag_ids


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_dag_file_defines_the_dag_named_after_it(dagbag):
    assert sorted(dagbag.dags) == project_dag_ids()


@pytest.mark.parametrize("dag_id", project_dag_ids())
def test_dag_conventions(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags, f"{dag_id} has no tags"
    assert dag.doc_md and dag.description, f"{dag_id}: the UI shows no description or docs"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    if getattr(dag.timetable, "expression", None):  # cron: a backfill would replicate "now" once per interval
        assert dag.allowed_run_types and "backfill" not in dag.allowed_run_types, f"{dag_id} can be backfilled"
    assert dag.tasks, f"{dag_id} has no tasks"
    for task in dag.tasks:
        assert task.retries >= 2, f"{dag_id}.{task.task_id} retries={task.retries}"
        assert task.execution_timeout is not None, f"{dag_id}.{task.task_id} may hold its DAG's only run for good"


@pytest.mark.parametrize("path", sorted(DAGS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_dag_files_stay_thin(path: Path):
    """No pyspark, database client or project library import in a DAG file: parsing must stay cheap."""
    forbidden = ("pyspark", "psycopg2", "mysql", "kafka", "shopflow", "datagen")
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert not name.split(".")[0] in forbidden, f"{path.name} imports {name}"


def test_spark_tasks_run_with_the_settings_jvm_options(dagbag):
    """Every spark-submit task passes the JVM options of Settings (.env's value, or the same default) to the driver
    and the executors: the streaming job SPARK_STREAMING_JAVA_OPTIONS, the batch jobs SPARK_JAVA_OPTIONS."""
    from shopflow.config import get_settings

    tasks = [t for dag in dagbag.dags.values() for t in dag.tasks if t.task_type == "JobSubmit"]
    assert {t.application.rsplit("/", 1)[-1] for t in tasks} >= {"stream_users.py", "build_marts.py"}
    for task in tasks:
        job = task.application.rsplit("/", 1)[-1].removesuffix(".py")
        expected = get_settings().java_options_for(streaming=job == "stream_users", job=job)
        assert task.conf["spark.driver.extraJavaOptions"].split() == expected.split(), task.task_id
        assert task.conf["spark.executor.extraJavaOptions"].split() == expected.split(), task.task_id


@pytest.mark.parametrize("dag_id, key", [("build_marts", "SPARK_MARTS_CORES"),
                                         ("kafka_to_postgres_streaming", "SPARK_STREAMING_CORES")])
def test_the_marts_and_streaming_tasks_take_the_settings_cores(dagbag, dag_id, key):
    from shopflow.config import get_settings

    task = next(iter(dagbag.dags[dag_id].tasks))
    cores = str(getattr(get_settings(), key))
    assert task.conf["spark.cores.max"] == task.conf["spark.executor.cores"] == cores  # one executor


def test_the_replication_task_runs_single_core_executors_one_per_worker(dagbag):
    from shopflow.config import get_settings

    workers = str(get_settings().SPARK_WORKERS)
    task = dagbag.dags["replicate_postgres_to_mysql"].get_task("replicate")
    assert (task.conf["spark.executor.cores"], task.conf["spark.cores.max"]) == ("1", workers)


def test_the_replication_dag_can_be_triggered_for_a_full_reload(dagbag):
    """The trigger form's full_reload param (default off) reaches the job as `--full True|False`."""
    from jinja2 import Template

    from shopflow.jobs.replicate_postgres_to_mysql import parse_args

    dag = dagbag.dags["replicate_postgres_to_mysql"]
    assert dag.params["full_reload"] is False
    args = dag.get_task("replicate").application_args
    for value in (False, True):
        assert parse_args([Template(a).render(params={"full_reload": value}) for a in args]).full is value


@pytest.mark.parametrize("run_id, try_number", [("-rebuild", 1), ("manual__2026-12-07T10:00:00", 2), ("x" * 250, 3)])
def test_the_marts_build_takes_any_run_id_airflow_allows(dagbag, run_id, try_number):
    """A Run ID typed with a leading "-" was taken for an option, and one near Airflow's 250 characters outgrew the
    job's limit with its " (try 2)": argparse's exit 2, which Airflow retried twice, the same way."""
    from types import SimpleNamespace

    from jinja2 import Template

    from shopflow.jobs.build_marts import parse_args

    args = dagbag.dags["build_marts"].get_task("build_marts").application_args
    rendered = [Template(a).render(run_id=run_id, ti=SimpleNamespace(try_number=try_number)) for a in args]
    recorded = parse_args(rendered).run_id
    assert recorded.startswith(run_id[:235]) and len(recorded) <= 250
    assert recorded.endswith(f" (try {try_number})") == (try_number > 1)


def test_the_replication_can_be_run_from_its_assets_materialize_button(dagbag):
    assert "asset_materialization" in dagbag.dags["replicate_postgres_to_mysql"].allowed_run_types


def test_dag_fallback_jvm_options_equal_the_settings_default():
    """DAG files cannot import Settings; their fallback for an unset SPARK_JAVA_OPTIONS must not drift from it."""
    import dataclasses

    from shopflow.config import Settings

    tree = ast.parse((DAGS_DIR / "_spark.py").read_text())
    for constant, key in (("JAVA_OPTIONS", "SPARK_JAVA_OPTIONS"),
                          ("STREAMING_JAVA_OPTIONS", "SPARK_STREAMING_JAVA_OPTIONS"), ("CDS_JOBS", "SPARK_CDS_JOBS"),
                          ("MARTS_CORES", "SPARK_MARTS_CORES"), ("STREAMING_CORES", "SPARK_STREAMING_CORES"),
                          ("WORKERS", "SPARK_WORKERS"), ("WORKER_CORES", "SPARK_WORKER_CORES"),
                          ("EXECUTOR_MEMORY", "SPARK_EXECUTOR_MEMORY")):
        fallback = next(node.value.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                        and any(getattr(t, "id", None) == constant for t in node.targets))
        default = next(f.default for f in dataclasses.fields(Settings) if f.name == key)
        assert fallback == str(default), key


def test_the_replication_and_streaming_dags_never_start_in_the_same_minute(dagbag):
    """At a shared minute the streaming job's 2-core executor found no worker with 2 free cores beside the
    replication's three 1-core executors, and waited for the replication run to end (4 times an hour)."""
    import dataclasses
    from datetime import datetime, timedelta

    from croniter import croniter

    from shopflow.config import Settings

    def minutes(expression: str) -> set[datetime]:
        """Every start in one day."""
        start, found = datetime(2026, 1, 1), set()
        times = croniter(expression, start - timedelta(seconds=1))
        while (moment := times.get_next(datetime)) < start + timedelta(days=1):
            found.add(moment)
        return found

    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert not minutes(defaults["REPLICATION_SCHEDULE"]) & minutes(defaults["STREAMING_SCHEDULE"])
    dags = {dag_id: dagbag.dags[dag_id].timetable.expression  # .env's, as the stack runs them
            for dag_id in ("replicate_postgres_to_mysql", "kafka_to_postgres_streaming")}
    assert not minutes(dags["replicate_postgres_to_mysql"]) & minutes(dags["kafka_to_postgres_streaming"])
    source = (DAGS_DIR / "replicate_postgres_to_mysql.py").read_text()
    assert f'setting("REPLICATION_SCHEDULE", "{defaults["REPLICATION_SCHEDULE"]}")' in source  # the DAG's fallback


def test_make_up_knows_the_producer_of_each_asset_scheduled_dag(dagbag):
    """`make up` waits for an Asset-scheduled DAG only after its producer succeeded (shopflow.stack.up)."""
    from shopflow.stack.up import ASSET_PRODUCERS

    consumers = {dag_id: dag.timetable.asset_condition.objects for dag_id, dag in dagbag.dags.items()
                 if getattr(dag.timetable, "asset_condition", None) is not None}
    assert sorted(consumers) == sorted(ASSET_PRODUCERS)
    for consumer, assets in consumers.items():
        outlets = [a for task in dagbag.dags[ASSET_PRODUCERS[consumer]].tasks for a in task.outlets]
        assert outlets and all(a in outlets for a in assets), (consumer, assets, outlets)


def test_the_stacks_airflow_never_runs_in_the_tests_unit_test_mode(tmp_path):
    """This test process runs with AIRFLOW__CORE__UNIT_TEST_MODE=True (conftest); a `make test` that started the
    stack's Airflow passed it on to the real scheduler, which then created new DAGs unpaused and scheduled cron DAGs
    by data interval. The stack's Airflow environment is the test process's with airflow_env on top, as launch.py
    builds it."""
    import subprocess

    from shopflow.config import get_settings
    from shopflow.stack.services import airflow_env

    assert os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] == "True"
    env = os.environ | airflow_env(get_settings()) | {"AIRFLOW_HOME": str(tmp_path)}
    values = subprocess.run([sys.executable, "-c", (
        "from airflow.configuration import conf; "
        "print(conf.getboolean('core', 'unit_test_mode'), conf.getboolean('core', 'dags_are_paused_at_creation'))")],
        env=env, capture_output=True, text=True, timeout=120)
    assert values.stdout.splitlines()[-1:] == ["False True"], values.stdout[-2000:] + values.stderr[-2000:]


def test_the_dags_take_settings_that_differ_from_the_defaults(monkeypatch, tmp_path):
    """The tests above compare the tasks with Settings at their defaults, which the DAGs' own fallbacks equal: a DAG
    that ignored the environment passed them. Here every setting the tasks read is set to another value."""
    from airflow.dag_processing.dagbag import DagBag

    archive = tmp_path / "spark.jsa"
    archive.write_bytes(b"")
    values = {"SPARK_MARTS_CORES": "1", "SPARK_STREAMING_CORES": "1", "SPARK_WORKERS": "2", "SPARK_WORKER_CORES": "1",
              "SPARK_JAVA_OPTIONS": "-XX:+UseSerialGC -Xss4m", "SPARK_STREAMING_JAVA_OPTIONS": "-Xss8m",
              "SPARK_EXECUTOR_MEMORY": "768m", "SPARK_DRIVER_MEMORY": "700m", "SPARK_CDS_JOBS": "build_marts",
              "SPARK_CDS_ARCHIVE": str(archive), "MYSQL_JDBC_JAR": "/opt/jdbc/mysql.jar",
              "POSTGRES_JDBC_JAR": "/opt/jdbc/pg.jar", "REPLICATION_SCHEDULE": "7,37 * * * *",
              "STREAMING_SCHEDULE": "*/11 * * * *"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    dags = DagBag(dag_folder=str(DAGS_DIR)).dags
    assert dags["replicate_postgres_to_mysql"].timetable.expression == "7,37 * * * *"
    assert dags["kafka_to_postgres_streaming"].timetable.expression == "*/11 * * * *"
    marts = dags["build_marts"].get_task("build_marts")
    stream = next(iter(dags["kafka_to_postgres_streaming"].tasks))
    replicate = dags["replicate_postgres_to_mysql"].get_task("replicate")
    for task in (marts, stream, replicate):
        assert task.conf["spark.executor.memory"] == "768m" and task._driver_memory == "700m", task.task_id
        assert task.jars == "/opt/jdbc/pg.jar,/opt/jdbc/mysql.jar", task.task_id
    assert marts.conf["spark.cores.max"] == marts.conf["spark.executor.cores"] == "1"
    assert stream.conf["spark.cores.max"] == stream.conf["spark.executor.cores"] == "1"
    assert (replicate.conf["spark.executor.cores"], replicate.conf["spark.cores.max"]) == ("1", "2")
    for task, java in ((marts, f"-Duser.timezone=UTC -XX:+UseSerialGC -Xss4m -XX:SharedArchiveFile={archive}"),
                       (replicate, "-Duser.timezone=UTC -XX:+UseSerialGC -Xss4m"),
                       (stream, "-Duser.timezone=UTC -Xss8m")):
        assert task.conf["spark.driver.extraJavaOptions"] == task.conf["spark.executor.extraJavaOptions"] == java
