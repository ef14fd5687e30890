"""The DAGs' spark-submit operator with a stand-in `spark-submit` on PATH: the job's exit code NO_RETRY_EXIT fails the
task without Airflow's retries, any other failure is retried as before."""
import stat

import pytest


@pytest.fixture
def submit_exiting(tmp_path, monkeypatch):
    def task(code: int):
        import _spark

        binary = tmp_path / "spark-submit"
        binary.write_text(f"#!/bin/sh\necho 'the job says why'\nexit {code}\n")
        binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
        monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", "spark://127.0.0.1:7077")
        return _spark.spark_job(f"exits_{code}", "build_marts")
    return task


def test_the_no_retry_exit_fails_the_task_without_retries(submit_exiting):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="the job exited 3: a retry would fail the same way"):
        submit_exiting(3).execute(context={})


@pytest.mark.parametrize("code", [1, 2, 13])
def test_other_failures_are_retried(submit_exiting, code):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    with pytest.raises(AirflowException, match=f"Error code is: {code}\\.") as raised:
        submit_exiting(code).execute(context={})
    assert not isinstance(raised.value, AirflowFailException)


def test_the_dags_no_retry_exit_is_the_jobs():
    import _spark

    from shopflow.jobs.session import NO_RETRY_EXIT

    assert _spark.NO_RETRY_EXIT == NO_RETRY_EXIT
