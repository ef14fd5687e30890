"""`tracked_run` with MySQL unreachable: a failing job's own error is what the caller sees."""
import logging

import mysql.connector
import pytest
from unit_support import closed_port

from shopflow.config import load_settings
from shopflow import runlog
from shopflow.runlog import tracked_run


@pytest.fixture
def no_mysql(tmp_path):
    return load_settings(env={"LOCAL_STATE_DIR": str(tmp_path), "MYSQL_PORT": str(closed_port())}, env_file=None)


def test_a_failed_run_raises_its_own_error_when_its_row_cannot_be_written(no_mysql, caplog):
    with caplog.at_level(logging.WARNING, logger="shopflow.runlog"):
        with pytest.raises(ValueError, match="the job's own error"):
            with tracked_run(no_mysql, "some_job"):
                raise ValueError("the job's own error")
    assert "pipeline_runs row for some_job not written" in caplog.text


def test_a_run_that_succeeded_fails_when_its_row_cannot_be_written(no_mysql):
    with pytest.raises(mysql.connector.Error):
        with tracked_run(no_mysql, "some_job") as run:
            run.rows_written = 1


@pytest.fixture
def rows(monkeypatch):
    """The rows written (runlog.record_run captured), with no run of this process under way or ended yet."""
    written = []
    monkeypatch.setattr(runlog, "record_run", lambda _settings, record: written.append(record))
    monkeypatch.setattr(runlog, "_UNDER_WAY", [])
    monkeypatch.setattr(runlog, "_ENDED", [0])
    return written


def test_a_stopped_job_writes_its_runs_under_way_as_failed(no_mysql, rows):
    with tracked_run(no_mysql, "some_job", mode="rebuild"), tracked_run(no_mysql, "some_job", table_name="t"):
        runlog.record_stopped(no_mysql, "some_job", "stopped by SIGTERM")
        stopped = rows[:]
    assert [(r.table_name, r.mode, r.status, r.detail) for r in stopped] == [
        (None, "rebuild", "failed", "stopped by SIGTERM"), ("t", None, "failed", "stopped by SIGTERM")]
    assert all(r.finished_at >= r.started_at and r.seconds >= 0 for r in stopped)


def test_a_job_stopped_before_its_run_began_writes_one_not_started_row(no_mysql, rows):
    runlog.record_stopped(no_mysql, "some_job", "stopped by SIGTERM")
    assert [(r.job, r.mode, r.status, r.detail) for r in rows] == [
        ("some_job", runlog.NOT_STARTED, "failed", "stopped by SIGTERM")]


def test_a_job_stopped_after_its_run_ended_writes_nothing_more(no_mysql, rows):
    with tracked_run(no_mysql, "some_job"):
        pass
    runlog.record_stopped(no_mysql, "some_job", "stopped by SIGTERM")
    assert [r.status for r in rows] == ["ok"]


def test_a_run_names_the_airflow_dag_run_and_try_it_works_for(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CTX_DAG_RUN_ID", raising=False)
    assert runlog.RunRecord(job="j").airflow_run_id is None  # not under Airflow
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__" + "x" * 300)
    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", "1")
    assert runlog.RunRecord(job="j").airflow_run_id == "manual__" + "x" * 227  # a first try says no try
    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", "3")
    assert runlog.RunRecord(job="j").airflow_run_id == "manual__" + "x" * 227 + " (try 3)"  # fits VARCHAR(250)
