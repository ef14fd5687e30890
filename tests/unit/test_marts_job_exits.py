"""The marts job's exit code tells Airflow whether to retry: 1 when another build or a replication run held its lock
past the wait (it ends, a retry goes on), 3 (NO_RETRY_EXIT) when the last replication run failed: a retry a minute
later reads the same failed run, and the next successful replication starts a build through its Asset."""
import logging

import pytest

from shopflow.db import LockBusy
from shopflow.jobs.session import NO_RETRY_EXIT
from shopflow.marts.replica import ReplicaIncomplete, ReplicationBusy


class _Session:
    def stop(self):
        pass


@pytest.mark.parametrize("error, code", [(ReplicationBusy("replication run held the lock"), 1),
                                         (LockBusy("another build held the lock"), 1),
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
