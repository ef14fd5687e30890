"""The bench stops at its end only what it started: a stack someone started meanwhile stays."""
from types import SimpleNamespace

import pytest

from bench import servers


@pytest.fixture
def stack(monkeypatch):
    from shopflow.stack import manager, supervisor

    calls = []
    monkeypatch.setattr(servers, "daemon_running", lambda: True)
    monkeypatch.setattr(supervisor, "shutdown", lambda settings: calls.append("shutdown"))
    monkeypatch.setattr(manager, "stop", lambda settings, names: calls.append(("stop", names)))

    def running(*names):
        monkeypatch.setattr(manager, "running_services",
                            lambda settings: [SimpleNamespace(name=name) for name in names])
        return calls
    return running


def test_a_make_up_that_joined_the_benchs_supervisord_meanwhile_is_left_running(stack, capsys):
    """supervisord was the bench's: its shutdown stopped Airflow, the dashboard and eventgen a `make up` in another
    terminal had started under it during the run."""
    calls = stack("postgres", "mariadb", "airflow-scheduler", "dashboard")
    servers.stop_servers(["postgres", "mariadb"], daemon_was_running=False, keep=False)
    assert calls == []
    assert capsys.readouterr().out.startswith("bench: leaving the stack running: airflow-scheduler, dashboard "
                                              "started meanwhile by someone else")


def test_what_the_bench_started_alone_is_stopped(stack):
    calls = stack("postgres", "mariadb")
    servers.stop_servers(["postgres", "mariadb"], daemon_was_running=False, keep=False)
    assert calls == ["shutdown"]
    calls.clear()
    servers.stop_servers(["kafka"], daemon_was_running=True, keep=False)  # a stack of its own was running before
    assert calls == [("stop", ["kafka"])]
