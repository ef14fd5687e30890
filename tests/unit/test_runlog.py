"""`tracked_run` with MySQL unreachable: a failing job's own error is what the caller sees."""
import logging

import mysql.connector
import pytest
from unit_support import closed_port

from shopflow.config import load_settings
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
