"""The replication job's command line: its exit code tells Airflow whether to retry, 3 (NO_RETRY_EXIT) when a retry
would fail the same way, 1 when it may not (a reconcile mismatch marks the table for a full reload, which the retry
does); `--full` alone or with the DAG's rendered full_reload param."""
import logging

import pytest

from shopflow.jobs.session import NO_RETRY_EXIT
from shopflow.replication import ReplicationError, ReplicationRefused


class _Session:
    def stop(self):
        pass


@pytest.mark.parametrize("error, code", [(ReplicationRefused("the tables differ from postgresdb/models.py"), 3),
                                         (ReplicationError("reconcile failed for users"), 1)])
def test_the_replication_job_exits_3_only_when_a_retry_would_fail_the_same_way(monkeypatch, error, code):
    from shopflow.jobs import replicate_postgres_to_mysql as job

    def replicate(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(job, "build_session", lambda *_args, **_kwargs: _Session())
    monkeypatch.setattr(job, "replicate", replicate)
    monkeypatch.setattr(job, "ensure_pipeline_runs", lambda _settings: None)  # no MySQL here
    handlers = logging.root.handlers[:]
    try:
        assert job.main([]) == code
    finally:
        logging.root.handlers[:] = handlers
    assert NO_RETRY_EXIT == 3


@pytest.mark.parametrize("argv, full", [([], False), (["--full"], True), (["--full", "True"], True),
                                        (["--full", "False"], False), (["--full", "true"], True)])
def test_full_alone_or_with_the_dags_rendered_param(argv, full):
    from shopflow.jobs.replicate_postgres_to_mysql import parse_args

    assert parse_args(argv).full is full


def test_a_full_value_other_than_true_or_false_is_refused(capsys):
    from shopflow.jobs.replicate_postgres_to_mysql import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--full", "yes please"])
    assert "expected true or false, got 'yes please'" in capsys.readouterr().err


def _submit(job: str, *options: str, **changes) -> tuple[int, str]:
    """spark-submit of a job, local master, both servers' ports closed (and the settings `changes`): a job that went
    past its session would touch nothing (and fail), so no server is needed."""
    import dataclasses
    import subprocess

    from shopflow.config import PROJECT_ROOT, get_settings
    from shopflow.stack.services import VENV_BIN, base_env
    from unit_support import closed_port

    settings = dataclasses.replace(get_settings(), POSTGRES_PORT=closed_port(), MYSQL_PORT=closed_port(), **changes)
    command = [str(VENV_BIN / "spark-submit"), "--master", "local[1]", "--conf", "spark.ui.enabled=false", *options,
               str(PROJECT_ROOT / "code" / "shopflow" / "jobs" / f"{job}.py")]
    result = subprocess.run(command, env=base_env(settings), capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("job", ["build_marts", "replicate_postgres_to_mysql"])
def test_spark_submit_without_the_jdbc_drivers_exits_3_naming_them_before_spark_starts(job):
    """A bare `spark-submit code/shopflow/jobs/<job>.py` (as the READMEs once showed) failed at its first JDBC read
    with a ClassNotFoundException and a page of traces; it now ends with one line saying what to pass."""
    from shopflow.config import get_settings

    settings = get_settings()
    code, output = _submit(job)
    assert code == NO_RETRY_EXIT, output[-3000:]
    lines = [line for line in output.splitlines() if " ERROR shopflow." in line]
    assert len(lines) == 1 and "spark-submit was not given the JDBC driver(s) " in lines[0], output[-3000:]
    assert "org.mariadb.jdbc.Driver" in lines[0] and f"`.venv/bin/python -m shopflow.jobs.{job}`" in lines[0]
    assert settings.MYSQL_JDBC_JAR in lines[0]
    assert ("org.postgresql.Driver" in lines[0]) is (job == "replicate_postgres_to_mysql")
    assert "Traceback" not in output and "ClassNotFoundException" not in output


def test_the_drivers_are_found_by_class_whatever_the_jar_is_called(tmp_path):
    """`--packages` and renamed jars hold the same classes under other file names: the check passes them, and the
    job goes on to the replica (here a closed port: the MySQL error, not the drivers' line)."""
    import shutil

    from shopflow.config import get_settings

    renamed = tmp_path / "mariadb-connector-renamed.jar"
    shutil.copy(get_settings().MYSQL_JDBC_JAR, renamed)
    code, output = _submit("build_marts", "--jars", str(renamed))
    assert code == 2 and "was not given the JDBC driver" not in output, output[-3000:]


@pytest.mark.parametrize("job", ["build_marts", "replicate_postgres_to_mysql"])
def test_a_job_whose_database_is_down_ends_with_one_line_naming_it(job):
    """Run by hand with MariaDB stopped (`make status`: EXITED), the job started its Spark session, then its first
    connection's error was a traceback; now one line and exit 2, which the DAGs' retries take."""
    from shopflow.config import get_settings

    settings = get_settings()
    code, output = _submit(job, "--jars", f"{settings.POSTGRES_JDBC_JAR},{settings.MYSQL_JDBC_JAR}")
    lines = [line for line in output.splitlines() if " ERROR shopflow." in line]
    assert code == 2 and len(lines) == 1, output[-3000:]
    assert "cannot reach MySQL at 127.0.0.1:" in lines[0] and "is it running? `make status` shows it" in lines[0]
    assert "Traceback" not in output


def test_the_jobs_logs_drop_kafka_pythons_cancelled_refresh_at_close_and_keep_other_failures(caplog):
    """`ERROR kafka.cluster: Metadata refresh: failed Cancelled` came from closing the offsets client during its
    background refresh, in runs that went fine; another failure of the refresh is still an error worth reading."""
    from kafka import errors

    from shopflow.jobs.session import configure_logging

    handlers = logging.root.handlers[:]
    try:
        configure_logging()
        configure_logging()  # twice (the stream job's main, then a test's): still one filter
        cluster = logging.getLogger("kafka.cluster")
        assert len(cluster.filters) == 1
        with caplog.at_level(logging.WARNING):
            cluster.error("Metadata refresh: failed %s", errors.Cancelled())
            cluster.error("Metadata refresh: failed %s", errors.NodeNotReadyError("metadata"))
            cluster.error("Metadata refresh loop error: %s", errors.Cancelled())
    finally:
        logging.root.handlers[:] = handlers
    assert [r.getMessage() for r in caplog.records if r.name == "kafka.cluster"] == [
        "Metadata refresh: failed NodeNotReadyError: metadata", "Metadata refresh loop error: Cancelled"]


def test_the_jobs_logs_drop_kafka_pythons_close_of_a_running_task_and_keep_other_close_errors(caplog):
    """`ERROR kafka.net.selector: Error closing coroutine for cancelled task` with a traceback (`ValueError: generator
    already executing`) came from closing the offsets client while its IO thread ran the task, in a batch that went
    fine (it failed CI's Ctrl-C test, which allows no traceback in the job's log)."""
    from shopflow.jobs.session import configure_logging

    def close_error(error: Exception) -> None:
        try:
            raise error
        except Exception:
            selector.exception("Error closing coroutine for cancelled task")

    handlers = logging.root.handlers[:]
    try:
        configure_logging()
        configure_logging()
        selector = logging.getLogger("kafka.net.selector")
        assert len(selector.filters) == 1
        with caplog.at_level(logging.WARNING):
            close_error(ValueError("generator already executing"))
            close_error(OSError("bad file descriptor"))
            selector.error("Error closing coroutine for cancelled task")  # no exception attached
    finally:
        logging.root.handlers[:] = handlers
    kept = [(r.getMessage(), r.exc_info and str(r.exc_info[1])) for r in caplog.records
            if r.name == "kafka.net.selector"]
    assert kept == [("Error closing coroutine for cancelled task", "bad file descriptor"),
                    ("Error closing coroutine for cancelled task", None)]


@pytest.mark.parametrize("argv, message", [
    (["--max-events", "-1"], "argument --max-events: '-1': must not be negative"),  # was a traceback
    (["--trigger-seconds", "0"], "argument --trigger-seconds: '0': must be greater than 0"),
    (["--trigger-seconds", "nan"], "argument --trigger-seconds: 'nan': expected a finite number"),
    (["--master", "local[x]"], "argument --master: 'local[x]': expected spark://host:port, local[N]"),  # py4j's
])
def test_the_stream_jobs_bad_options_are_refused_before_anything_runs(capsys, argv, message):
    from shopflow.jobs.stream_users import _arguments

    with pytest.raises(SystemExit) as refused:
        _arguments(argv)
    assert refused.value.code == 2 and message in capsys.readouterr().err
    assert (_arguments(["--max-events", "0", "--trigger-seconds", "0.5"]).max_events,
            _arguments(["--trigger-seconds", "0.5"]).trigger_seconds) == (0, 0.5)


def test_verify_has_a_help_and_refuses_unknown_options(capsys):
    """`--help` ran the whole verification (a helper found it so): it now prints the usage, touching nothing."""
    from shopflow.marts.verify import main

    for argv, code in ((["--help"], 0), (["--bogus"], 2)):
        with pytest.raises(SystemExit) as ended:
            main(argv)
        assert ended.value.code == code
    assert "Compare every mart with its plain-SQL answer" in capsys.readouterr().out


@pytest.mark.parametrize("job", ["build_marts", "replicate_postgres_to_mysql", "stream_users"])
def test_a_job_run_with_a_bad_setting_ends_with_one_line_naming_it(job):
    """`python -m shopflow.jobs.<job>` (the READMEs' by-hand form, and what the DAGs' spark-submit runs) with a bad
    value: one line and the no-retry exit, as `make` gives, not a traceback."""
    import os
    import subprocess
    import sys

    from shopflow.config import PROJECT_ROOT

    result = subprocess.run([sys.executable, "-m", f"shopflow.jobs.{job}"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=300, env=os.environ | {"MYSQL_PORT": "abc"})
    output = result.stdout + result.stderr
    assert result.returncode == NO_RETRY_EXIT, output[-3000:]
    assert [line.split(" ", 2)[2] for line in output.splitlines() if " ERROR " in line] == [
        "ERROR shopflow.session: bad setting: MYSQL_PORT='abc': expected a whole number"], output[-3000:]
    assert "Traceback" not in output


def test_verify_with_a_bad_setting_or_no_server_ends_with_one_line(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from shopflow.config import PROJECT_ROOT

    def verify(**env) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shopflow.marts.verify"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=120, env=os.environ | env)

    bad = verify(MYSQL_PORT="abc")
    assert (bad.returncode, bad.stderr) == (2, "verify: bad setting: MYSQL_PORT='abc': expected a whole number\n")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = verify(MYSQL_PORT=str(port))
    assert down.returncode == 2 and down.stderr.count("\n") == 1 and "is MySQL running" in down.stderr, down.stderr


@pytest.mark.parametrize("job_name", ["replicate_postgres_to_mysql", "build_marts"])
def test_ctrl_c_while_the_session_starts_is_one_line_and_a_failed_row(monkeypatch, recorded_runs, job_name):
    """PySpark's own SIGINT handler is in place until the session is up (the jobs' own comes back after): its
    KeyboardInterrupt gave a traceback and no row."""
    import importlib

    job = importlib.import_module(f"shopflow.jobs.{job_name}")

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "build_session", interrupted)
    handlers = logging.root.handlers[:]
    try:
        assert job.main([]) == 130
    finally:
        logging.root.handlers[:] = handlers
    assert [(r.job, r.status, r.detail) for r in recorded_runs] == [(job_name, "failed", "stopped by SIGINT (Ctrl-C)")]
