"""`make up` says how a DAG run it waits for is doing (it waited up to 30 minutes a DAG without a word)."""
from __future__ import annotations

from shopflow.stack import airflow_api


class Clock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_waiting_for_a_dag_run_prints_a_line_a_minute(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(airflow_api, "time", clock)
    states = iter(["queued"] * 5 + ["running"] * 30 + ["success"])

    class Client:
        def run_state(self, _dag_id, _run_id):
            return next(states)

    assert airflow_api.wait_for_run(Client(), "replicate_postgres_to_mysql", "manual__1", timeout=1800) == "success"
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  replicate_postgres_to_mysql: running after 60 s (its task log: the Airflow UI, Grid)",
                     "  replicate_postgres_to_mysql: running after 120 s (its task log: the Airflow UI, Grid)"]
    # the run ended at 180 s: no line for that, the caller says how it ended


def test_waiting_for_a_dag_run_stops_when_a_service_it_needs_ended(monkeypatch):
    """`make up` waited its whole DAG_TIMEOUT_S (30 min) on a run a dead scheduler would never finish, then said the
    stack was up."""
    import pytest

    clock, checks = Clock(), []
    monkeypatch.setattr(airflow_api, "time", clock)

    class Client:
        def run_state(self, _dag_id, _run_id):
            return "running"

    def alive():
        checks.append(clock.now)
        if len(checks) == 3:
            raise RuntimeError("airflow-scheduler ended by itself")

    with pytest.raises(RuntimeError, match="airflow-scheduler ended by itself"):
        airflow_api.wait_for_run(Client(), "build_marts", "manual__1", timeout=1800, alive=alive)
    assert clock.now - 1000.0 == 15  # checked at each poll


def test_the_services_a_dag_run_needs_are_those_that_stop_the_wait(monkeypatch):
    """An ended scheduler or Spark worker stops it; the event generator (no DAG run needs it) does not."""
    import pytest

    from shopflow.config import get_settings
    from shopflow.stack import supervisor, up

    states = {"postgres": "RUNNING", "eventgen": "EXITED", "airflow-scheduler": "RUNNING"}
    monkeypatch.setattr(supervisor, "process_info", lambda _settings: {n: {"statename": s} for n, s in states.items()})
    up._services_alive(get_settings())
    states.update({"airflow-scheduler": "EXITED", "spark-worker-2": "FATAL"})
    with pytest.raises(RuntimeError, match=r"^spark-worker-2, airflow-scheduler ended by themselves while a DAG run"):
        up._services_alive(get_settings())


def test_make_up_whose_scheduler_ended_does_not_say_the_stack_is_up(monkeypatch, tmp_path, capsys):
    import dataclasses

    import pytest

    from shopflow.config import get_settings
    from shopflow.stack import up

    def scheduler_ended(_settings):
        raise up.ServiceEnded("airflow-scheduler ended by itself while a DAG run was under way")

    started = []
    monkeypatch.setattr(up.manager, "check_ports", lambda _settings: None)
    monkeypatch.setattr(up.manager, "ensure", lambda _settings, groups: started.extend(groups))
    monkeypatch.setattr(up, "_generate_data", lambda _settings: None)
    monkeypatch.setattr(up, "_run_dags", scheduler_ended)
    with pytest.raises(up.manager.StackError, match=r"^airflow-scheduler ended by itself .*`make up` again starts"):
        up.up(dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path)))
    assert started[-1] == "dashboard" and "shopflow is up" not in capsys.readouterr().out
