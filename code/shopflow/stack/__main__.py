"""`python -m shopflow.stack up|down|status|ensure GROUP...|airflow ARGS...` (driven by the Makefile)."""
from __future__ import annotations

import argparse
import errno
import os
import signal
import subprocess
import sys

import mysql.connector
import psycopg2

from shopflow.config import Settings, SettingsError, env_file_path, get_settings
from shopflow.config_file import read_env_file
from shopflow.stack import drift, health, manager, processes, supervisor
from shopflow.stack.services import GROUPS, VENV_BIN, airflow_env
from shopflow.stack.up import up


def status(settings) -> int:
    rows = manager.status_rows(settings)
    width = max([12] + [len(row[1]) for row in rows])
    print(f"{'service':22} {'state':{width}} {'port(s)':12} pid")
    for name, state, ports, pid in rows:
        print(f"{name:22} {state:{width}} {ports:12} {pid}")
    ended = [name for name, state, _ports, _pid in rows if state in supervisor.ENDED_STATES]
    if ended:
        print(f"ended by themselves: {', '.join(ended)}. Their logs: {settings.state_dir / 'logs'}/<service>.log; "
              "`make up` starts them again.")
    if any(state.startswith(manager.MOVED) for _name, state, _ports, _pid in rows):
        print(f"some services run on the ports they started with, not on the current settings' ports: {drift.APPLY}.")
    daemon = supervisor.daemon_pid(settings)
    if daemon is None and (left := health.orphans()):  # else: every server "not started"
        names = sorted({os.path.basename(processes.command_line(pid).split(" ", 1)[0]) for pid in left} - {""})
        print(f"{len(left)} process(es) of this checkout's stack run without their supervisord (killed, or it "
              f"crashed): {', '.join(names)}. `make down` stops them, then `make up` starts the stack again.")
    jobs = processes.jobs_run_by_hand(daemon)
    if jobs:  # e.g. `make stream`; `make down` stops them first
        print("jobs run by hand:")
        for pid in jobs:
            print(f"  {pid:<8} {processes.command_line(pid)}")
    return 0


def _run_airflow(argv: list[str], env: dict[str, str]) -> int:
    """`make airflow`'s command, which gets a Ctrl-C itself (the terminal's whole process group does) and ends as it
    sees fit: this process ignores it meanwhile (subprocess.call killed the command 0.25 s after it, `dags test` in
    the middle of its run). Returns the command's exit code, 128 + the signal that ended it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # the command gets Ctrl-C's default back: an ignored signal stays ignored across exec
        child = subprocess.Popen(argv, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        code = child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shopflow.stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="install-free start of everything, data, DAG runs (what `make up` does)")
    sub.add_parser("down", help="stop every service this checkout started")
    sub.add_parser("status", help="each service, its state, port(s) and pid")
    ensure = sub.add_parser("ensure", help="start only these service groups (and their dependencies)")
    ensure.add_argument("groups", nargs="+", choices=GROUPS)
    sub.add_parser("airflow", help="run the airflow CLI with the stack's environment (the arguments after it)")
    raw = sys.argv[1:] if argv is None else list(argv)
    # all after `airflow` is Airflow's: argparse took a leading --help / -h (`make airflow ARGS="--help"`) as its own
    args = parser.parse_args(raw[:1] if raw[:1] == ["airflow"] else raw)
    args.args = raw[1:]
    try:
        settings = _settings_to_stop() if args.command == "down" else get_settings()
        if args.command == "up":
            manager.check_state_dir(settings)
            return up(settings)
        if args.command == "down":
            if not settings.state_dir.exists() and not processes.strays() and not processes.jobs_run_by_hand(None):
                print(f"nothing to stop: the state directory {settings.state_dir} does not exist")  # nor made now
                return 0
            manager.down(settings)
            return 0
        if args.command == "status":
            return status(settings)
        if args.command == "ensure":
            manager.check_state_dir(settings)
            manager.ensure(settings, args.groups)
            return 0
        # The CLI's `dags` commands warn on every call that graphviz (only for rendering DAG images) is missing.
        quiet = ",".join(filter(None, (os.environ.get("PYTHONWARNINGS"), "ignore:Could not import graphviz")))
        env = os.environ | airflow_env(settings) | {"PYTHONWARNINGS": quiet}
        return _run_airflow([str(VENV_BIN / "airflow"), *args.args], env)
    except SettingsError as error:
        print(f"shopflow: bad setting: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C (make up waits on DAG runs for minutes): one line, not a traceback
        starting = args.command in ("up", "ensure")
        print("shopflow: interrupted" + (". What had started keeps running (`make status`); `make up` again carries "
                                         "on, `make down` stops it" if starting else ""), file=sys.stderr)
        return 130
    except (manager.StackError, RuntimeError) as error:
        print(f"shopflow: {error}", file=sys.stderr)
        return 1
    except (psycopg2.Error, mysql.connector.Error) as error:  # a reused server not ready (recovering, full): one line
        server = "Postgres" if isinstance(error, psycopg2.Error) else "MariaDB"
        reason = " ".join(str(error).split()) or type(error).__name__
        print(f"shopflow: {server} refused the stack's setup: {reason}. `make status` shows the servers; their logs "
              f"are in {get_settings().state_dir / 'logs'}", file=sys.stderr)
        return 1
    except PermissionError as error:  # e.g. handing .local/postgres to the postgres system user
        hint = (". The local stack runs as root: it starts Postgres and MariaDB as their own system users (`make "
                "install` needs root too)") if os.geteuid() != 0 else ""
        print(f"shopflow: {error}{hint}", file=sys.stderr)
        return 1
    except OSError as error:  # the state directory's file system read-only (remounted after I/O errors) or full
        if error.errno not in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise
        print(f"shopflow: {error} (is a file system read-only or full? `df -h` and `mount` say)", file=sys.stderr)
        return 1


def _settings_to_stop() -> Settings:
    """`make down` stops what runs whatever the settings now say: a bad value saved in .env while the stack ran made
    it exit 2 and leave everything running. Only the state directory matters to it."""
    try:
        return get_settings()
    except SettingsError as error:
        state = os.environ.get("LOCAL_STATE_DIR")
        if state is None:  # the file's own line, whatever other lines are wrong (one line it cannot read made it
            state = read_env_file(env_file_path(os.environ), lenient=True).get("LOCAL_STATE_DIR")  # stop .local's)
        try:
            settings = Settings.from_mapping({} if state is None else {"LOCAL_STATE_DIR": state})
        except SettingsError:  # which stack to stop is not known: stop none
            raise SettingsError(f"{error}; nothing was stopped") from None
        print(f"shopflow: bad setting: {error} (stopping the stack in {settings.state_dir} anyway)", file=sys.stderr)
        return settings


if __name__ == "__main__":
    sys.exit(main())
