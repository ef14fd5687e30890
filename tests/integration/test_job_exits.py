"""A run that ends before its work begins leaves a failed `pipeline_runs` row: with the Spark master down, every marts
build failed at its start, and the dashboard went on showing the last successful build, with no warning (its warning
and Pipeline health read those rows only)."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_marts_replica import execute, scratch_replica
from test_streaming_support import free_port

from shopflow.config import PROJECT_ROOT
from shopflow.db import mysql_connection
from shopflow.marts.store import BUILD_LOCK
from shopflow.replication.target import replication_lock_name
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


def _parent(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _python_driver(submit: subprocess.Popen, script: str, timeout_s: float = 120) -> int:
    """The pid of the Python driver spark-submit's JVM started (its child running `script`). Not any Python child:
    in local mode the JVM also starts the Python worker daemon (the session's warm-up), and once pids wrapped around
    (pid_max 32768 here) the daemon could come first in /proc and get the test's SIGTERM (seen once in CI)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if _parent(pid) == submit.pid and script in _cmdline(pid):
                return int(pid)
        assert submit.poll() is None, "spark-submit ended before its Python driver started"
        time.sleep(0.2)
    raise AssertionError(f"no Python driver under spark-submit after {timeout_s} s")


def _cmdline(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _waits_for_lock(settings, name: str) -> bool:
    return bool(execute(settings, "SELECT COUNT(*) FROM information_schema.processlist WHERE id <> CONNECTION_ID() "
                                  "AND info LIKE %s", params=(f"SELECT GET_LOCK(%{name}%",))[0][0])


def job_lock(settings, job: str) -> str:
    return {"build_marts": BUILD_LOCK.format(database=settings.MYSQL_DATABASE),
            "replicate_postgres_to_mysql": replication_lock_name(settings)}[job]


@contextmanager
def in_its_lock_wait(settings, lock: str, command: list[str], log: Path):
    """Starts `command` while the test holds MySQL's lock `lock`; yields it once it waits for the lock (inside its
    run, for a job); the lock stays held until the block ends."""
    with mysql_connection(settings, autocommit=True) as holder:
        holder.cursor().execute("SELECT GET_LOCK(%s, 0)", (lock,))
        with open(log, "w") as out:
            started = subprocess.Popen(command, env=base_env(settings), cwd=PROJECT_ROOT, stdout=out,
                                       stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while not _waits_for_lock(settings, lock):
                assert started.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            yield started
        finally:
            started.kill()
            started.wait()


def _the_failed_row(settings, job: str, stopped_by: str) -> None:
    rows = _rows(settings, job)
    assert [(status, table) for status, table, _mode, _detail in rows] == [("failed", None)], rows
    assert rows[0][3].startswith(f"stopped by {stopped_by}"), rows


@pytest.mark.parametrize("job, times", [("build_marts", 1), ("replicate_postgres_to_mysql", 1),
                                        ("replicate_postgres_to_mysql", 2)], ids=["marts", "replication", "twice"])
def test_a_batch_run_stopped_like_airflow_stops_it_leaves_a_failed_row(mysql, job, times, tmp_path):
    """Airflow's execution_timeout (or a task stopped from its UI) kills the spark-submit JVM and sends the Python
    driver SIGTERM (`JobSubmit.on_kill`): the driver ended at once and wrote no row, so the dashboard showed the job
    as ok and the marts build took a half-done replication for a finished one. A task marked failed in the UI gets
    SIGTERM twice: the supervisor's to the task's process group, then on_kill's ~2 ms later (the second ended the
    driver in the middle of its row)."""
    with scratch_replica(mysql, "exits", seed=False) as settings:
        command = [str(VENV_BIN / "spark-submit"), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
                   "--jars", f"{settings.POSTGRES_JDBC_JAR},{settings.MYSQL_JDBC_JAR}",
                   str(PROJECT_ROOT / "code" / "shopflow" / "jobs" / f"{job}.py")]
        with in_its_lock_wait(settings, job_lock(settings, job), command, tmp_path / "job.log") as submit:
            driver = _python_driver(submit, command[-1])
            submit.kill()  # as the Spark provider's on_kill does, then ours: SIGTERM to the driver
            submit.wait()
            for _ in range(times):
                os.kill(driver, signal.SIGTERM)
                time.sleep(0.002)
            deadline = time.monotonic() + 60
            while not _gone(driver):
                assert time.monotonic() < deadline, "the driver went on after SIGTERM"
                time.sleep(0.2)
        _the_failed_row(settings, job, "SIGTERM")


def test_ctrl_c_ends_a_replication_run_waiting_for_its_lock_at_once(mysql, tmp_path):
    """Ctrl-C raised KeyboardInterrupt into the lock wait's MySQL call, and closing that connection then waited for
    the call's answer: the run went on for up to the lock's 900 s."""
    with scratch_replica(mysql, "exits", seed=False) as settings:
        local = dataclasses.replace(settings, SPARK_MASTER_URL="local[1]")
        command = [sys.executable, "-m", "shopflow.jobs.replicate_postgres_to_mysql"]
        lock = job_lock(local, "replicate_postgres_to_mysql")
        with in_its_lock_wait(local, lock, command, tmp_path / "job.log") as run:
            run.send_signal(signal.SIGINT)
            try:
                code = run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail("the run went on for 30 s after Ctrl-C")
        _the_failed_row(settings, "replicate_postgres_to_mysql", "SIGINT")
    assert code == 130
    assert (tmp_path / "job.log").read_text().rstrip().endswith("ERROR shopflow.replication: stopped by SIGINT "
                                                                 "(Ctrl-C)")


def test_a_stopped_run_ends_even_when_its_failed_row_cannot_be_written(mysql, tmp_path):
    """The stop writes its row before it ends the process: with MySQL not answering (here a table lock on
    pipeline_runs) the driver, and the locks its connections hold, stayed alive, and Airflow sends one SIGTERM."""
    from shopflow.jobs.db_exit import STOP_ROW_WAIT_S

    with scratch_replica(mysql, "exits", seed=False) as settings:
        local = dataclasses.replace(settings, SPARK_MASTER_URL="local[1]")
        command = [sys.executable, "-m", "shopflow.jobs.replicate_postgres_to_mysql"]
        lock = job_lock(local, "replicate_postgres_to_mysql")
        with in_its_lock_wait(local, lock, command, tmp_path / "job.log") as run, \
                mysql_connection(settings, autocommit=True) as blocker:
            blocker.cursor().execute("LOCK TABLES pipeline_runs WRITE")
            started = time.monotonic()
            run.send_signal(signal.SIGTERM)
            try:
                code = run.wait(timeout=STOP_ROW_WAIT_S + 20)
            except subprocess.TimeoutExpired:
                pytest.fail("the stopped run went on while its row could not be written")
            waited = time.monotonic() - started
            blocker.cursor().execute("UNLOCK TABLES")
    assert code == 143 and waited >= STOP_ROW_WAIT_S - 1, (code, waited)  # not before: its row's INSERT waited
