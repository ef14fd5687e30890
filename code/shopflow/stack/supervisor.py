"""supervisord runs the local services: one config under `.local/`, one control socket, one log per service."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from shopflow.config import PROJECT_ROOT, Settings
from shopflow.stack.lock import one_at_a_time
from shopflow.stack.services import STACK_MARKER, VENV_BIN, Service, all_services


def paths(settings: Settings) -> dict[str, Path]:
    state = settings.state_dir
    return {"conf": state / "supervisord.conf", "socket": state / "run" / "supervisor.sock",
            "pid": state / "run" / "supervisord.pid", "logs": state / "logs"}


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...); None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_alive(pid: int | None) -> bool:
    """A process that exists and is not a zombie."""
    fields = proc_stat(pid) if pid else None
    return fields is not None and fields[0] != "Z"


def log_file(settings: Settings, name: str) -> Path:
    return paths(settings)["logs"] / f"{name}.log"


def _program(settings: Settings, service: Service) -> str:
    argv = [sys.executable, "-m", "shopflow.stack.launch", service.name] if service.env else service.command
    command = " ".join(shlex.quote(part) for part in argv).replace("%", "%%")
    lines = [f"[program:{service.name}]", f"command={command}", "autostart=false", "autorestart=false",
             "startsecs=2", "startretries=0", f"stopsignal={service.stop_signal}",
             f"stopwaitsecs={service.stop_wait}", "stopasgroup=true", "killasgroup=true",
             "redirect_stderr=true", f"directory={PROJECT_ROOT}", f"stdout_logfile={log_file(settings, service.name)}",
             "stdout_logfile_maxbytes=20MB", "stdout_logfile_backups=1"]
    if service.user:
        lines.append(f"user={service.user}")
    return "\n".join(lines)


def write_config(settings: Settings, services: list[Service]) -> Path:
    p = paths(settings)
    p["socket"].parent.mkdir(parents=True, exist_ok=True)
    p["logs"].mkdir(parents=True, exist_ok=True)
    p["logs"].chmod(0o700)  # the servers' logs hold failed statements with their values (Postgres): for us alone
    head = f"""[unix_http_server]
file={p['socket']}
chmod=0700

[supervisord]
logfile={p['logs'] / 'supervisord.log'}
pidfile={p['pid']}
childlogdir={p['logs']}
identifier=shopflow

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{p['socket']}
"""
    p["conf"].write_text(head + "\n\n".join(_program(settings, s) for s in services) + "\n")
    return p["conf"]


def rpc(settings: Settings):
    socket = paths(settings)["socket"]
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{socket}"))


def is_running(settings: Settings) -> bool:
    if not paths(settings)["socket"].exists():
        return False
    try:
        return rpc(settings).supervisor.getState()["statename"] == "RUNNING"
    except PermissionError:  # root's socket (0700), run as another user: not "every service not started"
        raise
    except (OSError, xmlrpc.client.Fault):
        return False


def start_daemon(settings: Settings, services: list[Service]) -> None:
    """Start supervisord with a fresh config, or reload the running one's program list."""
    conf = write_config(settings, services)
    if is_running(settings):
        for name in _added_programs(settings):
            rpc(settings).supervisor.addProcessGroup(name)
        return
    if code := subprocess.run([str(VENV_BIN / "supervisord"), "-c", str(conf)],
                              env=os.environ | {STACK_MARKER: str(PROJECT_ROOT)}).returncode:  # programs inherit it
        raise RuntimeError(f"supervisord exited {code} at start (its message is above); see "
                           f"{paths(settings)['logs'] / 'supervisord.log'}")
    deadline = time.monotonic() + 15
    while not is_running(settings):
        if time.monotonic() > deadline:
            raise RuntimeError(f"supervisord did not start; see {paths(settings)['logs'] / 'supervisord.log'}")
        time.sleep(0.2)


def _added_programs(settings: Settings) -> list[str]:
    added, changed, removed = rpc(settings).supervisor.reloadConfig()[0]
    server = rpc(settings).supervisor
    for name in changed + removed:
        # Only stopped programs are reloaded: a running service keeps its process (reuse, never restart).
        info = server.getProcessInfo(name)
        if info["statename"] != "RUNNING":
            server.removeProcessGroup(name)
            if name in changed:
                added.append(name)
    return added


def process_info(settings: Settings) -> dict[str, dict]:
    if not is_running(settings):
        return {}
    return {info["name"]: info for info in rpc(settings).supervisor.getAllProcessInfo()}


ENDED_STATES = ("EXITED", "FATAL", "BACKOFF")  # supervisord restarts nothing by itself (a crash loop hides the cause)


def ended(settings: Settings, names: list[str]) -> list[str]:
    """Those of the services `names` that supervisord started and that ended by themselves."""
    info = process_info(settings)
    return [name for name in names if info.get(name, {}).get("statename") in ENDED_STATES]


def launch_file(settings: Settings, name: str) -> Path:
    return settings.state_dir / "run" / "launch" / f"{name}.json"


def write_launch(settings: Settings, service: Service) -> None:
    """What `shopflow.stack.launch` starts `service` with: its command and environment resolved by this process's
    settings. supervisord passes its own environment on, the one of the `make up` that started it, where a setting
    given then (DASHBOARD_PORT=8601 make up) would win over the settings of a later `make up`. Owner-only: it holds
    the settings' passwords, as .env does."""
    write_private(launch_file(settings, service.name), json.dumps({"command": service.command, "env": service.env}))


def read_launch(settings: Settings, name: str) -> dict:
    """What `write_launch` wrote for `name`: {"command": [...], "env": {...}}; FileNotFoundError when it has none."""
    return json.loads(launch_file(settings, name).read_text())


def write_private(path: Path, text: str) -> None:
    """`text` into `path`, owner-only (0600) from its creation, replaced whole (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)  # an older one keeps its mode through O_CREAT
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    temporary.replace(path)


def start(settings: Settings, name: str) -> None:
    try:
        rpc(settings).supervisor.startProcess(name, True)
    except xmlrpc.client.Fault as fault:
        if "ALREADY_STARTED" not in fault.faultString:  # e.g. SPAWN_ERROR: it exited within startsecs
            raise RuntimeError(f"{name} failed to start ({fault.faultString})\n{tail(settings, name)}") from None


def stop(settings: Settings, name: str) -> None:
    try:
        rpc(settings).supervisor.stopProcess(name, True)
    except xmlrpc.client.Fault as fault:
        if "NOT_RUNNING" not in fault.faultString:
            raise


def daemon_pid(settings: Settings) -> int | None:
    """supervisord's pid while it runs."""
    try:
        pid = int(paths(settings)["pid"].read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def stop_order(settings: Settings, running: list[str]) -> list[str]:
    """Clients before their servers: the reverse of the stack's start order (Airflow before Postgres, its database;
    eventgen before Kafka), services the settings no longer name first. supervisord lists its programs by name."""
    started = [service.name for service in all_services(settings)]
    unknown = sorted(name for name in running if name not in started)
    return unknown + [name for name in reversed(started) if name in running]


@one_at_a_time  # `make down`, and `make test`'s / the bench's end when they started supervisord
def shutdown(settings: Settings) -> None:
    if not is_running(settings):
        return
    server = rpc(settings).supervisor
    for name in stop_order(settings, [info["name"] for info in server.getAllProcessInfo()
                                      if info["statename"] in ("RUNNING", "STARTING")]):
        print(f"  stopping {name}", flush=True)
        stop(settings, name)
    pid_file, daemon = paths(settings)["pid"], daemon_pid(settings)
    server.shutdown()
    deadline = time.monotonic() + 30  # supervisord removes its pid file before it has exited
    while (pid_file.exists() or process_alive(daemon)) and time.monotonic() < deadline:
        time.sleep(0.2)


def tail(settings: Settings, name: str, lines: int = 30) -> str:
    path = log_file(settings, name)
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last {len(text)} lines of {path} ---\n" + "\n".join(text)

