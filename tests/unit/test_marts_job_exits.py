"""The marts job's exit code tells Airflow whether to retry: 1 when another build or a replication run held its lock
past the wait (it ends, a retry goes on), 3 (NO_RETRY_EXIT) when the last replication run failed: a retry a minute
later reads the same failed run, and the next successful replication starts a build through its Asset."""
import logging

import pytest
from test_job_mains import _Session

from shopflow.db import LockBusy
from shopflow.jobs.session import NO_RETRY_EXIT
from shopflow.marts.replica import ReplicaIncomplete, ReplicationBusy
from shopflow.marts.store import PublishBlocked


@pytest.mark.parametrize("error, code", [(ReplicationBusy("replication run held the lock"), 1),
                                         (LockBusy("another build held the lock"), 1),
                                         # a session holding a mart open in a transaction: a traceback before
                                         (PublishBlocked("publishing the marts waited 120 s for session 12"), 1),
                                         (ReplicaIncomplete("the last replication run failed"), NO_RETRY_EXIT)])
def test_the_marts_job_exits_3_only_when_a_retry_would_fail_the_same_way(monkeypatch, caplog, recorded_runs, error,
                                                                          code):
    from shopflow.jobs import build_marts as job

    def build(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(job, "build_session", lambda *_args, **_kwargs: _Session())
    monkeypatch.setattr(job, "build_marts", build)
    handlers = logging.root.handlers[:]
    try:
        assert job.main([]) == code
    finally:
        logging.root.handlers[:] = handlers
    assert f"no mart published: {error}" in caplog.text


def test_verify_against_a_mart_of_an_older_version_says_to_build_again(monkeypatch, capsys):
    """A mart published before a column was added (mart_average_check's order_count): a bare 1054 error."""
    import mysql.connector
    from mysql.connector import errorcode

    from shopflow.marts import verify as job

    def older(_settings):
        raise mysql.connector.Error(msg="Unknown column 'order_count' in 'SELECT'", errno=errorcode.ER_BAD_FIELD_ERROR)

    monkeypatch.setattr(job, "verify", older)
    assert job.main([]) == 2
    assert capsys.readouterr().err.endswith("(a mart built by an older version: build the marts again)\n")


@pytest.mark.parametrize("run_id", ["x" * 251, " "])
def test_a_run_id_the_results_table_cannot_hold_is_refused_before_anything_runs(capsys, run_id):
    """quality_results.run_id is VARCHAR(250): a longer id failed the build at its end (1406), every mart built."""
    from shopflow.jobs import build_marts as job

    with pytest.raises(SystemExit) as refused:
        job.main(["--run-id", run_id])
    assert refused.value.code == 2 and "argument --run-id: expected 1 to 250 characters" in capsys.readouterr().err
