"""`tracked_run` with MySQL unreachable: a failing job's own error is what the caller sees."""
import logging
import socket

import mysql.connector
import pytest

from shopflow.config import load_settings
from shopflow.runlog import tracked_run


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_mysql(tmp_path):
    return load_settings(env={"LOCAL_STATE_DIR": str(tmp_path), "MYSQL_PORT": str(_closed_port())}, env_file=None)


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
