"""Session fixtures shared by every test.

Server fixtures (`postgres`, `mysql`, `kafka`, `spark_cluster`, `airflow`) start the local services they need through
`shopflow.stack` (reusing running ones) and stop, at the end of the session, only what they started; if services
they did not start joined their supervisord meanwhile (a `make up` elsewhere), they leave the stack running.
`spark` is one local SparkSession (JDBC drivers on its classpath) shared by all tests of the process.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

import pytest

from shopflow.config import get_settings
from shopflow.stack import manager, supervisor

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the tests' local Spark listens on loopback only
os.environ.setdefault("TZ", "UTC")

_STARTED: list[str] = []
_DAEMON_WAS_RUNNING: list[bool] = []


def _ensure(settings, *groups):
    if not _DAEMON_WAS_RUNNING:
        _DAEMON_WAS_RUNNING.append(supervisor.is_running(settings))
    manager.ensure(settings, groups, _STARTED)  # filled as they start: a Ctrl-C meanwhile stops those too
    return settings


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session):
    # `kill` or a CI timeout (SIGTERM) ends the session like Ctrl-C, through pytest_sessionfinish: supervisord runs in
    # a session of its own, so a signal to the tests' processes does not reach it, and it kept the stack running
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_sessionfinish(session, exitstatus):
    # py4j logs "Closing down clientserver connection" (INFO) from __del__ at interpreter exit, into handlers that
    # jobs run in-process installed on the root logger with pytest's captured (by then closed) stderr
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if not _DAEMON_WAS_RUNNING:
        return
    settings = get_settings()
    if _DAEMON_WAS_RUNNING[0]:
        manager.stop(settings, _STARTED)
    elif others := sorted({s.name for s in manager.running_services(settings)} - set(_STARTED)):
        # a `make up` (or `make bench`) elsewhere meanwhile joined the tests' supervisord and uses what they started
        print(f"\ntests: leaving the stack running: {', '.join(others)} started meanwhile by someone else, and they "
              "may use what the tests started (`make down` stops it all)", file=sys.stderr, flush=True)
    else:
        supervisor.shutdown(settings)  # the tests started supervisord: stop it and everything under it


@pytest.fixture(scope="session")
def settings():
    return get_settings()


@pytest.fixture(scope="session")
def postgres(settings):
    """Postgres running, roles, database and schema `source` applied; yields Settings."""
    return _ensure(settings, "postgres")


@pytest.fixture(scope="session")
def mysql(settings):
    """MariaDB running with `mysql_db`, its user and the replica tables; yields Settings."""
    return _ensure(settings, "mariadb")


@pytest.fixture(scope="session")
def kafka(settings):
    return _ensure(settings, "kafka")


@pytest.fixture(scope="session")
def spark_cluster(settings):
    """The standalone master + workers (for spark-submit / end-to-end tests)."""
    return _ensure(settings, "spark")


@pytest.fixture(scope="session")
def airflow(settings):
    return _ensure(settings, "airflow")


@pytest.fixture(scope="session")
def spark(settings):
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("shopflow-tests")
               .config("spark.jars", f"{settings.POSTGRES_JDBC_JAR},{settings.MYSQL_JDBC_JAR}")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.memory", "1g")
               .getOrCreate())
    session.sparkContext.setLogLevel("WARN")
    yield session
    session.stop()
