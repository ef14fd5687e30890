"""`make airflow ARGS=...`: the airflow CLI with the stack's environment, without the graphviz warning on every call."""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import pytest

from shopflow.config import get_settings
from shopflow.stack import __main__ as cli


def test_airflow_passthrough_runs_the_cli_with_the_stack_env_and_no_graphviz_warning(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "_run_airflow", lambda argv, env: calls.append((argv, env)) or 0)
    monkeypatch.setenv("PYTHONWARNINGS", "default")
    assert cli.main(["airflow", "dags", "list"]) == 0
    (argv, env), = calls
    assert argv[0].endswith("/airflow") and argv[1:] == ["dags", "list"]
    assert env["PYTHONWARNINGS"] == "default,ignore:Could not import graphviz"  # the user's filters kept
    assert env["AIRFLOW_HOME"].endswith("/airflow") and env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"


def test_airflow_help_is_airflows_not_the_wrappers(monkeypatch):
    """argparse took a leading -h/--help for the `airflow` subcommand's own help."""
    calls = []
    monkeypatch.setattr(cli, "_run_airflow", lambda argv, env: calls.append(argv[1:]) or 0)
    assert cli.main(["airflow", "--help"]) == 0 and cli.main(["airflow", "-h"]) == 0
    assert calls == [["--help"], ["-h"]]


def test_status_lists_jobs_run_by_hand(monkeypatch, capsys):
    import os

    monkeypatch.setattr(cli.manager, "status_rows", lambda _settings: [("postgres", "RUNNING", "5432", "1")])
    monkeypatch.setattr(cli.processes, "jobs_run_by_hand", lambda _daemon: [os.getpid()])
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "jobs run by hand:" in out and f"{os.getpid()}" in out and "pytest" in out  # this process's command line


def test_status_names_services_that_ended_and_how_to_start_them(monkeypatch, capsys):
    rows = [("postgres", "EXITED", "5432", "-"), ("mariadb", "RUNNING", "3306", "7"), ("kafka", "FATAL", "9092", "-"),
            ("spark-worker-4", "EXITED (not in settings)", "8085", "-"), ("eventgen", "not started", "-", "-")]
    monkeypatch.setattr(cli.manager, "status_rows", lambda _settings: rows)
    monkeypatch.setattr(cli.processes, "jobs_run_by_hand", lambda _daemon: [])
    assert cli.main(["status"]) == 0
    hint = capsys.readouterr().out.splitlines()[-1]
    assert hint.startswith("ended by themselves: postgres, kafka. Their logs: ")  # not the worker: make up drops it
    assert hint.endswith("/logs/<service>.log; `make up` starts them again.")


def test_status_of_a_healthy_stack_has_no_hint(monkeypatch, capsys):
    monkeypatch.setattr(cli.manager, "status_rows", lambda _settings: [("postgres", "RUNNING", "5432", "1")])
    monkeypatch.setattr(cli.processes, "jobs_run_by_hand", lambda _daemon: [])
    assert cli.main(["status"]) == 0
    assert "ended" not in capsys.readouterr().out


def test_a_permission_error_run_as_another_user_says_the_stack_runs_as_root(monkeypatch, capsys):
    """Run as another user, `make up` ended in a traceback from handing .local/postgres to the postgres user."""
    def chown(_settings):
        raise PermissionError(1, "Operation not permitted", ".local/postgres")

    monkeypatch.setattr(cli, "up", chown)
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert cli.main(["up"]) == 1
    assert capsys.readouterr().err == ("shopflow: [Errno 1] Operation not permitted: '.local/postgres'. The local "
                                       "stack runs as root: it starts Postgres and MariaDB as their own system users "
                                       "(`make install` needs root too)\n")
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)  # root already (an NFS root_squash): no such advice
    assert cli.main(["up"]) == 1
    assert capsys.readouterr().err == "shopflow: [Errno 1] Operation not permitted: '.local/postgres'\n"


def test_a_read_only_state_directory_is_one_line(monkeypatch, capsys):
    """ext4 remounted read-only after I/O errors: `make down` ended in an OSError traceback from its lock file."""
    def lock(_settings):
        raise OSError(30, "Read-only file system", ".local/stack.lock")

    monkeypatch.setattr(cli.manager, "down", lock)
    assert cli.main(["down"]) == 1
    assert capsys.readouterr().err == ("shopflow: [Errno 30] Read-only file system: '.local/stack.lock' (is a file "
                                       "system read-only or full? `df -h` and `mount` say)\n")

    def gone(_settings):  # another OSError (the supervisord socket gone): its traceback, not the file system hint
        raise FileNotFoundError(2, "No such file or directory", ".local/run/supervisor.sock")

    monkeypatch.setattr(cli.manager, "down", gone)
    with pytest.raises(FileNotFoundError):
        cli.main(["down"])


def test_make_airflow_lets_its_command_end_on_ctrl_c_as_it_sees_fit(tmp_path):
    """The terminal's Ctrl-C reaches both this process and the Airflow command: subprocess.call killed the command
    0.25 s after it (`dags test` in the middle of its run); now the command ends itself, with its own exit code."""
    import os
    import signal
    import sys
    import threading
    import time

    from shopflow.stack.__main__ import _run_airflow

    pid_file = tmp_path / "pid"
    command = ("import os, sys, time\n"
               f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
               "try:\n"
               "    time.sleep(60)\n"
               "except KeyboardInterrupt:\n"
               "    time.sleep(1)  # its own clean-up, longer than subprocess.call's 0.25 s\n"
               "    sys.exit(7)\n")

    def ctrl_c():
        while not pid_file.exists() or not pid_file.read_text():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # first: the handler is put back once the command has ended
        os.kill(int(pid_file.read_text()), signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    assert _run_airflow([sys.executable, "-c", command], dict(os.environ)) == 7


def test_make_down_stops_the_stack_whatever_bad_setting_env_now_holds(monkeypatch, tmp_path, capsys):
    """A bad value saved in .env while the stack ran: `make down` exited 2 and left everything running. It takes the
    state directory from .env (or the environment) alone; other commands still refuse."""
    from shopflow.config import SettingsError

    env_file = tmp_path / "stack.env"
    env_file.write_text(f"export SPARK_WORKERS=3\nLOCAL_STATE_DIR={tmp_path}/state\nSPARK_WORKERS=many\n")
    (tmp_path / "state").mkdir()  # a state directory that does not exist holds nothing to stop
    (tmp_path / "other").mkdir()

    def bad():
        raise SettingsError("SPARK_WORKERS='many': expected a whole number")

    stopped = []
    monkeypatch.setattr(cli, "get_settings", bad)
    monkeypatch.setattr(cli.manager, "down", lambda settings: stopped.append(settings.state_dir))
    monkeypatch.delenv("LOCAL_STATE_DIR", raising=False)
    monkeypatch.setenv("SHOPFLOW_ENV_FILE", str(env_file))
    assert cli.main(["down"]) == 0 and stopped == [tmp_path / "state"]
    assert capsys.readouterr().err == (f"shopflow: bad setting: SPARK_WORKERS='many': expected a whole number "
                                       f"(stopping the stack in {tmp_path}/state anyway)\n")
    monkeypatch.setenv("LOCAL_STATE_DIR", str(tmp_path / "other"))  # the environment wins, as for the settings
    assert cli.main(["down"]) == 0 and stopped[-1] == tmp_path / "other"
    assert cli.main(["status"]) == 2 and len(stopped) == 2
    monkeypatch.setenv("LOCAL_STATE_DIR", "s3a://bucket/state")  # which stack is not known: none is stopped
    assert cli.main(["down"]) == 2 and len(stopped) == 2
    assert capsys.readouterr().err.endswith("expected a whole number; nothing was stopped\n")


def test_make_status_run_as_another_user_says_the_stack_runs_as_root(monkeypatch, tmp_path, capsys):
    """supervisord's socket is root's (0700): refused, it read as "no stack", and every service showed "not
    started" while the stack ran."""
    from shopflow.config import Settings
    from shopflow.stack import supervisor

    settings = Settings(LOCAL_STATE_DIR=str(tmp_path))
    socket = supervisor.paths(settings)["socket"]
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.touch()

    def refused(_settings):
        raise PermissionError(13, "Permission denied", str(socket))

    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    monkeypatch.setattr(supervisor, "rpc", refused)
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert cli.main(["status"]) == 1
    assert capsys.readouterr().err.startswith(f"shopflow: [Errno 13] Permission denied: '{socket}'. The local stack "
                                              "runs as root")


def test_a_database_refusing_the_stacks_setup_is_one_line(monkeypatch, capsys):
    """A reused Postgres still recovering (its backend killed by the OOM killer) gave a psycopg2 traceback."""
    import psycopg2

    def recovering(_settings):
        raise psycopg2.OperationalError("connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  the "
                                        "database system is in recovery mode\n")

    monkeypatch.setattr(cli, "up", recovering)
    assert cli.main(["up"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("shopflow: Postgres refused the stack's setup: connection to server at \"127.0.0.1\", "
                          "port 5432 failed: FATAL: the database system is in recovery mode. `make status` shows the "
                          "servers")
    assert err.count("\n") == 1


def test_a_state_directory_make_up_refuses_is_not_made(monkeypatch, tmp_path, capsys):
    """The refusal came after the stack's lock file was made in it: a `stack.lock` left under /root, the very place
    the message said the servers cannot reach; `make down` and `ensure` then made it too (the diff review)."""
    monkeypatch.setattr(cli, "up", lambda _settings: pytest.fail("make up went on"))
    monkeypatch.setattr(cli.manager, "ensure", lambda *_args: pytest.fail("ensure went on"))
    monkeypatch.setattr(cli.processes, "strays", lambda: [])
    monkeypatch.setattr(cli.processes, "jobs_run_by_hand", lambda _daemon: [])
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp_path lies under a 0700 directory of its own
    try:
        base.chmod(0o755)
        (base / "private").mkdir(mode=0o700)
        for state, why in ((tmp_path / ("x" * 120), "too long for the servers' Unix sockets"),
                           (tmp_path / "a b", "holds whitespace"),
                           (base / "private" / "state", f"may not enter {base}/private")):
            settings = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(state), SPARK_CDS_JOBS="build_marts")
            monkeypatch.setattr(cli, "get_settings", lambda: settings)
            assert cli.main(["up"]) == 1 and why in capsys.readouterr().err
            assert cli.main(["ensure", "kafka"]) == 1 and why in capsys.readouterr().err
            assert cli.main(["down"]) == 0 and "nothing to stop" in capsys.readouterr().out and not state.exists()
    finally:
        shutil.rmtree(base)
