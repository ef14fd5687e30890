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


def test_a_killed_task_stops_the_driver_below_spark_submit_too(tmp_path, monkeypatch):
    """The provider's on_kill (Airflow's timeout calls it) killed the spark-submit process only: the driver below
    it, our Python job, went on holding the replica's lock beside the retry."""
    import threading
    import time

    import _spark

    driver_pid = tmp_path / "driver.pid"
    binary = tmp_path / "spark-submit"
    binary.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {driver_pid}\nwait\n")  # a JVM with its Python driver
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", "spark://127.0.0.1:7077")
    task = _spark.spark_job("killed", "build_marts")
    ended = []
    runner = threading.Thread(target=lambda: ended.append(pytest.raises(Exception, task.execute, context={})),
                              daemon=True)  # a failed kill leaves it reading the stand-in's output: not waited for
    runner.start()
    deadline = time.monotonic() + 30
    while not (driver_pid.exists() and driver_pid.read_text().strip()
               and getattr(getattr(task, "_hook", None), "_submit_sp", None) is not None):  # kill once it is known
        assert time.monotonic() < deadline, "the stand-in spark-submit never started its driver"
        time.sleep(0.05)
    pid = int(driver_pid.read_text())
    task.on_kill()
    runner.join(timeout=30)
    deadline = time.monotonic() + 10
    while _running(pid):
        assert time.monotonic() < deadline, "the driver outlived the killed spark-submit"
        time.sleep(0.05)
    assert ended, "execute did not return after the kill"


@pytest.mark.parametrize("conf", [{"full": True}, {"full_reload": True, "fullReload": True}])
def test_a_trigger_conf_key_the_dag_does_not_declare_fails_the_task_unrun(dagbag, tmp_path, monkeypatch, conf):
    """Airflow merges undeclared conf keys into the params unchecked: `{"full": true}` ran an incremental load."""
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    ran = tmp_path / "ran"
    binary = tmp_path / "spark-submit"
    binary.write_text(f"#!/bin/sh\ntouch {ran}\nexit 1\n")
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", "spark://127.0.0.1:7077")
    task = dagbag.dags["replicate_postgres_to_mysql"].get_task("replicate")
    unknown = ", ".join(sorted(set(conf) - {"full_reload"}))
    with pytest.raises(AirflowFailException, match=rf"^unknown key\(s\) in the trigger's conf: {unknown} \(this "
                                                   r"DAG's params: full_reload\); nothing was run$"):
        task.execute(context={"dag_run": SimpleNamespace(conf=conf)})
    assert not ran.exists()
    with pytest.raises(Exception, match=r"Error code is: 1\."):  # a declared key: submitted as before
        task.execute(context={"dag_run": SimpleNamespace(conf={"full_reload": True})})
    assert ran.exists()


def _running(pid: int) -> bool:
    """Alive and not a zombie (reaped between two looks: gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
