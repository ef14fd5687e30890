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
