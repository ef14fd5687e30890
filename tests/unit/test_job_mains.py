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


@pytest.mark.parametrize("job", ["build_marts", "replicate_postgres_to_mysql"])
def test_spark_submit_without_the_jdbc_jars_exits_3_naming_them_before_spark_starts(job):
    """A bare `spark-submit code/shopflow/jobs/<job>.py` (as the READMEs once showed) failed at its first JDBC read
    with a ClassNotFoundException and a page of traces; it now ends with one line saying what to pass. Local master:
    nothing else runs, so no server is needed (both servers' ports closed: a job that went on would touch nothing)."""
    import dataclasses
    import subprocess

    from shopflow.config import PROJECT_ROOT, get_settings
    from shopflow.stack.services import VENV_BIN, base_env
    from unit_support import closed_port

    settings = dataclasses.replace(get_settings(), POSTGRES_PORT=closed_port(), MYSQL_PORT=closed_port())
    command = [str(VENV_BIN / "spark-submit"), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
               str(PROJECT_ROOT / "code" / "shopflow" / "jobs" / f"{job}.py")]
    result = subprocess.run(command, env=base_env(settings), capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == NO_RETRY_EXIT, output[-3000:]
    lines = [line for line in output.splitlines() if " ERROR shopflow." in line]
    assert len(lines) == 1 and "spark-submit was not given the JDBC driver jar(s)" in lines[0], output[-3000:]
    assert settings.MYSQL_JDBC_JAR in lines[0] and f"`.venv/bin/python -m shopflow.jobs.{job}`" in lines[0]
    assert (settings.POSTGRES_JDBC_JAR in lines[0]) is (job == "replicate_postgres_to_mysql")
    assert "Traceback" not in output and "ClassNotFoundException" not in output


@pytest.mark.parametrize("conf, missing", [
    ({}, ["/usr/share/java/a.jar", "/usr/share/java/b.jar"]),
    ({"spark.jars": "file:///usr/share/java/a.jar,/opt/b.jar"}, []),  # by file name: any place, any URL form
    ({"spark.jars": "/usr/share/java/a.jar"}, ["/usr/share/java/b.jar"]),
    ({"spark.jars": "/x/a.jar", "spark.driver.extraClassPath": "/y/c.jar:/y/b.jar"}, []),
    ({"spark.jars": "/x/a.jar.bak,/x/b.jar"}, ["/usr/share/java/a.jar"]),
])
def test_check_jars_compares_the_submitted_jars_by_file_name(monkeypatch, conf, missing):
    import pyspark

    from shopflow.jobs.session import MissingJars, check_jars

    class Conf:
        def get(self, key, default=None):
            return conf.get(key, default)

    monkeypatch.setattr(pyspark, "SparkConf", Conf)
    needed = ("/usr/share/java/a.jar", "/usr/share/java/b.jar")
    if not missing:
        check_jars("build_marts", needed)
        return
    with pytest.raises(MissingJars) as refused:
        check_jars("build_marts", needed)
    assert f"jar(s) {', '.join(missing)}, which" in str(refused.value) and refused.value.exit_code == NO_RETRY_EXIT


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
