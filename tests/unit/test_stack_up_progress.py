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
