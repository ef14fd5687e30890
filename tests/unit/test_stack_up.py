"""`make up` runs each DAG once: it waits for the run the scheduler starts when a DAG is unpaused instead of
triggering a second one beside it (a fake Airflow API stands in for the server here; `make up` itself runs the
real one)."""
from __future__ import annotations

import dataclasses

import pytest

from unit_support import closed_port

from shopflow.config import get_settings
from shopflow.stack import airflow_api, up


class FakeAirflow:
    """Airflow's REST API as `up` uses it; its 'scheduler' starts a due run `start_after` polls after the unpause."""

    def __init__(self, start_after: int | None):
        self.start_after, self.polls_unpaused = start_after, 0
        self.paused, self.triggered, self.awaited = True, [], []
        self.dag_runs = [{"dag_run_id": "manual__yesterday", "state": "failed"}]

    def unpause(self, dag_id):
        self.paused = False

    def runs(self, dag_id):
        if not self.paused and self.start_after is not None:
            self.polls_unpaused += 1
            if self.polls_unpaused == self.start_after:
                self.dag_runs.insert(0, {"dag_run_id": "scheduled__due", "state": "running"})
        return list(self.dag_runs)

    def trigger(self, dag_id):
        run_id = f"manual__{len(self.triggered)}"
        self.triggered.append(run_id)
        self.dag_runs.insert(0, {"dag_run_id": run_id, "state": "queued"})
        return run_id

    def run_state(self, dag_id, run_id):
        self.awaited.append(run_id)
        return "success"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(up.time, "sleep", lambda _s: None)
    monkeypatch.setattr(airflow_api.time, "sleep", lambda _s: None)


def test_the_run_the_scheduler_starts_on_unpause_is_the_one_awaited():
    api = FakeAirflow(start_after=3)
    assert up._unpause_and_run(api, "dag", scheduled=True, wait_s=30) == "success"
    assert api.triggered == [] and set(api.awaited) == {"scheduled__due"}


def test_a_run_is_triggered_when_the_scheduler_starts_none():
    api = FakeAirflow(start_after=None)
    assert up._unpause_and_run(api, "dag", scheduled=True, wait_s=0.2) == "success"
    assert api.triggered == ["manual__0"] and set(api.awaited) == {"manual__0"}


def test_a_dag_without_a_time_schedule_is_triggered_at_once():
    api = FakeAirflow(start_after=1)  # would show a run on the first poll: it must not be waited for
    up._unpause_and_run(api, "dag", scheduled=False, wait_s=30)
    assert api.triggered == ["manual__0"] and set(api.awaited) == {"manual__0"}


@pytest.mark.parametrize("summary, scheduled", [("*/5 * * * *", True), (None, False), ("None", False),
                                                ("Asset", False)])
def test_time_scheduled(summary, scheduled):
    assert up._time_scheduled({"timetable_summary": summary}) is scheduled


def test_the_source_data_is_generated_before_airflow_and_the_event_generator_start(monkeypatch, tmp_path):
    """An Airflow whose DAGs an earlier `make up` unpaused runs the streaming DAG as soon as its scheduler starts:
    started before the generator, its users would land in an empty source, which the generator then keeps."""
    steps = []
    monkeypatch.setattr(up.manager, "check_ports", lambda _settings: steps.append("ports"))
    monkeypatch.setattr(up.manager, "ensure", lambda _settings, groups: steps.append(tuple(groups)))
    monkeypatch.setattr(up, "_generate_data", lambda _settings: steps.append("generate"))
    monkeypatch.setattr(up, "_run_dags", lambda _settings: steps.append("dags") or [])
    monkeypatch.setattr(up, "summary", lambda _settings: "")
    assert up.up(dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path))) == 0
    assert steps[0] == "ports"  # every group's ports (check_ports' default) before any starts
    generated = steps.index("generate")
    assert "airflow" not in {g for s in steps[:generated] for g in s}
    assert steps[generated + 1:] == [("airflow",), ("eventgen",), "dags", ("dashboard",)]
    assert {g for s in steps if s not in ("ports", "generate", "dags") for g in s} == set(up.manager.GROUPS)


def test_a_failed_dag_run_still_starts_the_dashboard_and_prints_the_urls_then_fails(monkeypatch, tmp_path, capsys):
    """The dashboard's Pipeline health page shows why a run failed (a quality gate's checks): `make up` stopped
    before starting it, and a DAG that never succeeded is run again by every `make up`."""
    started = []
    monkeypatch.setattr(up.manager, "check_ports", lambda _settings: None)
    monkeypatch.setattr(up.manager, "ensure", lambda _settings, groups: started.extend(groups))
    monkeypatch.setattr(up, "_generate_data", lambda _settings: None)
    monkeypatch.setattr(up, "_run_dags", lambda _settings: ["build_marts"])
    with pytest.raises(up.manager.StackError, match="did not succeed: build_marts. The stack is up"):
        up.up(dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path)))
    assert started[-1] == "dashboard" and "Dashboard         http://127.0.0.1:" in capsys.readouterr().out


class DoneAirflow:
    """Airflow after an earlier `make up`: every DAG has a successful run; `runs` newest first, as the API orders."""

    def __init__(self, runs: dict[str, list[dict]]):
        self.runs_of, self.unpaused = runs, []

    def dags(self):
        return {d: {"timetable_summary": "Asset" if d == "build_marts" else "*/5 * * * *"} for d in self.runs_of}

    def runs(self, dag_id):
        return self.runs_of[dag_id]

    def unpause(self, dag_id):
        self.unpaused.append(dag_id)


def test_a_warm_make_up_names_a_dag_whose_latest_run_failed(monkeypatch, capsys):
    ok = [{"dag_run_id": "scheduled__1", "state": "success"}]
    api = DoneAirflow({"kafka_to_postgres_streaming": ok, "build_marts": ok,
                       "replicate_postgres_to_mysql": [{"dag_run_id": "scheduled__2", "state": "failed"}] + ok})
    monkeypatch.setattr(up.airflow_api, "project_dag_ids", lambda: list(api.runs_of))
    monkeypatch.setattr(up.airflow_api, "reserialize", lambda _settings: None)
    monkeypatch.setattr(up.airflow_api, "AirflowClient", lambda _settings: api)
    monkeypatch.setattr(up.airflow_api, "wait_for_dags", lambda _client, _ids: None)
    up._run_dags(object())
    out = capsys.readouterr().out
    assert "but its latest run, scheduled__2, failed" in out
    assert out.count("failed") == 1 and sorted(api.unpaused) == sorted(api.runs_of)  # nothing else named, nothing run


class FreshAirflow(DoneAirflow):
    """Airflow on a first `make up`: the DAGs in `done` ran before; a triggered run ends in `ends[dag_id]`."""

    def __init__(self, done: list[str], ends: dict[str, str]):
        super().__init__({d: [{"dag_run_id": "scheduled__1", "state": "success"}] if d in done else []
                          for d in ("kafka_to_postgres_streaming", "replicate_postgres_to_mysql", "build_marts")})
        self.ends, self.triggered = ends, []

    def dags(self):  # no time schedule: triggered at once, no wait for a scheduled run
        return {d: {"timetable_summary": "Asset" if d == "build_marts" else "None"} for d in self.runs_of}

    def trigger(self, dag_id):
        self.triggered.append(dag_id)
        return f"manual__{dag_id}"

    def run_state(self, dag_id, run_id):
        return self.ends[dag_id]


def _run_dags_on(api, monkeypatch) -> list[str]:
    monkeypatch.setattr(up.airflow_api, "project_dag_ids", lambda: list(api.runs_of))
    monkeypatch.setattr(up.airflow_api, "reserialize", lambda _settings: None)
    monkeypatch.setattr(up.airflow_api, "AirflowClient", lambda _settings: api)
    monkeypatch.setattr(up.airflow_api, "wait_for_dags", lambda _client, _ids: None)

    def no_asset_run(*_args):
        raise AssertionError("waited for an Asset-triggered run that nothing starts")

    monkeypatch.setattr(up, "_wait_asset_runs", no_asset_run)
    return up._run_dags(object())


def test_a_warm_make_up_says_when_it_unpauses_a_dag_paused_since(monkeypatch, capsys):
    """Every `make up` unpauses the DAGs: one the user paused got no line of its own, nor its failed run."""
    api = DoneAirflow({d: [{"dag_run_id": "scheduled__1", "state": "success"}] for d in (*up.DAG_ORDER, "build_marts")})
    api.runs_of["build_marts"].insert(0, {"dag_run_id": "asset__2", "state": "failed"})  # paused after it failed
    listed = {d: {**info, "is_paused": d == "build_marts"} for d, info in api.dags().items()}
    monkeypatch.setattr(api, "dags", lambda: listed)
    _run_dags_on(api, monkeypatch)
    assert ("  build_marts: already ran successfully; it was paused and is unpaused now, so it runs on its schedule "
            "(pause it again after `make up` if it should stay paused)\n    but its latest run, asset__2, failed: "
            in capsys.readouterr().out) and "build_marts" in api.unpaused


def test_a_failed_producer_does_not_leave_make_up_waiting_for_the_asset_scheduled_dag(monkeypatch, capsys):
    """Seen: a failed replication run updates no Asset, and `make up` waited DAG_TIMEOUT_S (30 min) for build_marts."""
    api = FreshAirflow(done=[], ends={"kafka_to_postgres_streaming": "success",
                                      "replicate_postgres_to_mysql": "failed"})
    assert _run_dags_on(api, monkeypatch) == ["replicate_postgres_to_mysql", "build_marts"]
    assert "build_marts: not run, replicate_postgres_to_mysql did not succeed" in capsys.readouterr().out
    assert "build_marts" not in api.triggered


def test_an_asset_scheduled_dag_whose_producer_ran_before_is_triggered_by_hand(monkeypatch):
    """Only the streaming DAG was still to run: no replication run updates the Asset now, so nothing else starts
    build_marts."""
    api = FreshAirflow(done=["replicate_postgres_to_mysql"],
                       ends={"kafka_to_postgres_streaming": "success", "build_marts": "success"})
    _run_dags_on(api, monkeypatch)
    assert api.triggered == ["kafka_to_postgres_streaming", "build_marts"]


def test_an_airflow_api_without_an_answer_is_retried_then_named_and_the_stack_still_comes_up(monkeypatch, tmp_path,
                                                                                           capsys):
    """A refused connection or a timeout was a traceback that ended `make up` before the dashboard and the URLs."""
    settings = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path), AIRFLOW_PORT=closed_port())
    clock = iter(range(0, 10**6, 10))
    monkeypatch.setattr(airflow_api.time, "monotonic", lambda: next(clock))
    tries = []
    monkeypatch.setattr(airflow_api.urllib.request, "urlopen", lambda *a, **k: tries.append(1) or
                        airflow_api.urllib.request.build_opener().open(*a, **k))
    with pytest.raises(RuntimeError, match=r"POST /auth/token: no answer from http://127.0.0.1:\d+ \(.*refused"):
        airflow_api.AirflowClient(settings)
    assert len(tries) == airflow_api.NO_ANSWER_RETRY_S // 10  # the clock moves 10 s per reading
    client = object.__new__(airflow_api.AirflowClient)
    client.base, client.log, client.token = f"http://127.0.0.1:{settings.AIRFLOW_PORT}", tmp_path / "log", "t"
    tries.clear()
    with pytest.raises(RuntimeError, match="POST /api/v2/dags/d/dagRuns: no answer"):
        client.trigger("d")  # may have created its run before the answer was lost: not sent twice
    assert len(tries) == 1

    started = []
    monkeypatch.setattr(up.manager, "check_ports", lambda _settings: None)
    monkeypatch.setattr(up.manager, "ensure", lambda _settings, groups: started.extend(groups))
    monkeypatch.setattr(up, "_generate_data", lambda _settings: None)
    monkeypatch.setattr(up.airflow_api, "reserialize", lambda _settings: None)
    with pytest.raises(up.manager.StackError, match="the DAGs stopped: Airflow API POST /auth/token: no answer"):
        up.up(settings)
    assert started[-1] == "dashboard" and "Dashboard         http://127.0.0.1:" in capsys.readouterr().out


def test_a_failed_reserialize_is_airflows_message_not_a_traceback(monkeypatch, tmp_path):
    """`airflow dags reserialize` ran with check=True and its output captured: a CalledProcessError traceback, which
    `make up`'s handling of Airflow's errors let through, and Airflow's own message never shown."""
    fake = tmp_path / "airflow"
    fake.write_text("#!/bin/sh\necho 'noise' >&2\necho 'DAG import error: broken.py' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(airflow_api, "VENV_BIN", tmp_path)
    with pytest.raises(RuntimeError, match=r"`airflow dags reserialize` exited 3:\nnoise\nDAG import error: broken"):
        airflow_api.reserialize(get_settings())


def test_ctrl_c_in_make_up_is_one_line_saying_what_runs_on(monkeypatch, capsys):
    """`make up` waits on DAG runs for minutes, and its lock message invites Ctrl-C: it was a traceback."""
    from shopflow.stack import __main__ as cli

    def interrupted(_settings):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "up", interrupted)
    assert cli.main(["up"]) == 130
    assert capsys.readouterr().err == ("shopflow: interrupted. What had started keeps running (`make status`); "
                                       "`make up` again carries on, `make down` stops it\n")
    monkeypatch.setattr(cli, "_run_airflow", lambda *_args, **_kwargs: interrupted(None))
    assert cli.main(["airflow", "dags", "test", "x"]) == 130  # `make airflow`: not make up's advice
    assert capsys.readouterr().err == "shopflow: interrupted\n"
