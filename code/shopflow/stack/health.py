"""Is a service ready? One probe per service group, and who holds a port when it is not us."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.request
from pathlib import Path

from shopflow.config import PROJECT_ROOT, Settings
from shopflow.stack.bootstrap import mariadb_root, pg_superuser
from shopflow.stack.processes import ancestors, command_line, of_this_checkout, stack_mark, strays
from shopflow.stack import supervisor
from shopflow.stack.services import Service, StackError, kafka_host_port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


# the local addresses a listener answers 127.0.0.1 on (the stack's services bind 127.0.0.1)
# (`[::]` is an IPv6-only socket: ss prints a dual-stack one as `*`)
_LOOPBACK = re.compile(r"(127\.0\.0\.1(%\S+)?|0\.0\.0\.0|\*|\[::ffff:127\.0\.0\.1\]):\d+$")


def port_holder(port: int) -> tuple[str, int] | None:
    """(name, pid) of the process listening on 127.0.0.1:`port` (from `ss`), None when unknown; a listener on the same
    port at another address (a host's 172.17.0.1:5432) does not take the stack's."""
    try:
        out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return None
    for line in out.splitlines():
        fields = line.split()
        found = re.search(r'users:\(\("([^"]*)",pid=(\d+)', line)
        if found and len(fields) > 3 and _LOOPBACK.match(fields[3]):
            return found.group(1), int(found.group(2))
    return None


def orphaned(pid: int) -> bool:
    """A process this checkout's stack started whose supervisord is gone (killed, or it crashed): it runs on, under
    init, and `make down` stops it."""
    return of_this_checkout(pid) and _stack_checkout(pid) is None


def orphans() -> list[int]:
    """This checkout's processes that run on without their supervisord (see `orphaned`)."""
    return [pid for pid in strays() if _stack_checkout(pid) is None]


def check_holders(settings: Settings, services: list[Service]) -> None:
    """Each port answers from this stack's supervisord tree: a server of another checkout that took the port between
    the port check and this start (two stacks starting at once) answers the probe too, while ours has exited."""
    daemon = supervisor.daemon_pid(settings)
    for service in services:
        for port in service.ports:
            holder = port_holder(port)
            if daemon and holder and daemon not in ancestors(holder[1]):
                raise StackError(f"{service.name}: port {port} is held by {port_owner(port)}, which took it "
                                 f"while this stack started {service.name}; its log: "
                                 f"{supervisor.log_file(settings, service.name)}")


def port_owner(port: int) -> str:
    """Names the process listening on a port (from `ss`): its name and pid, and the shopflow stack it belongs to when
    another checkout's supervisord started it (e.g. "postgres (pid 812, of the shopflow stack in /srv/shopflow)")."""
    if (holder := port_holder(port)) is None:
        return "an unknown process"
    name, pid = holder
    if daemon := _supervisord(pid):
        if (checkout := _checkout_of(*daemon)) == str(PROJECT_ROOT):  # this checkout, another state dir
            return (f"{name} (pid {pid}, of this checkout's stack with the state directory {daemon[1]}: "
                    f"`LOCAL_STATE_DIR={daemon[1]} make down` stops it)")
        return f"{name} (pid {pid}, of the shopflow stack in {checkout})"
    if checkout := stack_mark(pid):  # its supervisord is gone
        return f"{name} (pid {pid}, left running by the shopflow stack in {checkout}: `make down` there stops it)"
    hint = service_hint(name, system_unit(pid))
    return f"{name} (pid {pid}{f', {hint}' if hint else ''})"


def service_hint(name: str, unit: str | None) -> str | None:
    """For a database server run by systemd (Debian's own postgresql or mariadb, started when `make install` added
    their packages): its unit and how to stop it for good. postgresql@15-main comes back at boot through
    postgresql.service, which starts every cluster. For docker-proxy: the container (stopping the proxy alone breaks
    the container's port, and disabling Docker is not the answer). None for other processes (sshd, ...)."""
    if name == "docker-proxy":
        return "a Docker container's published port: `docker compose down` if it is this project's compose stack"
    if name not in DATABASE_SERVERS or unit is None or not unit.startswith(DATABASE_UNITS):
        return None  # a server in another unit (a CI runner's job): disabling that unit is not the answer
    service = "postgresql" if unit.startswith("postgresql") else unit
    return f"the system service {unit}: `systemctl disable --now {service}` stops it for good"


DATABASE_SERVERS = ("postgres", "mariadbd", "mysqld")  # a port held by docker-proxy, sshd, ... names no service
DATABASE_UNITS = ("postgresql", "mariadb", "mysql")  # Debian's units of those servers


def system_unit(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The systemd service a process runs in (from its cgroup, e.g. `0::/system.slice/mariadb.service`), if any."""
    try:
        cgroups = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    found = re.search(r"^[^:\n]*:[^:\n]*:/system\.slice/(?:[^/\n]+/)*?([\w@.\\:-]+\.service)(?:/|$)", cgroups, re.M)
    return found.group(1) if found else None


def _supervisord(pid: int) -> tuple[int, str] | None:
    """(pid, state directory) of the supervisord (`supervisord -c <state dir>/supervisord.conf`) that is `pid` or
    its ancestor; the state dir may be anywhere (LOCAL_STATE_DIR)."""
    for link in ancestors(pid):
        if found := re.search(r"supervisord -c (\S+)/supervisord\.conf", command_line(link)):
            return link, found.group(1)
    return None


def _stack_checkout(pid: int) -> str | None:
    """The checkout whose supervisord (started with the stack's mark) is `pid` or its ancestor."""
    return None if (daemon := _supervisord(pid)) is None else _checkout_of(*daemon)


def _checkout_of(daemon: int, state_dir: str) -> str:
    return stack_mark(daemon) or str(Path(state_dir).parent)


def _get_json(url: str, timeout: float = 3.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def postgres_ready(settings: Settings) -> bool:
    conn = pg_superuser(settings)
    conn.close()
    return True


def mariadb_ready(settings: Settings) -> bool:
    return mariadb_root(settings, "SELECT 1;").strip() == "1"


def kafka_ready(settings: Settings) -> bool:
    from kafka import KafkaAdminClient

    host, port = kafka_host_port(settings)
    if not port_open(port, host):
        return False
    admin = KafkaAdminClient(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, request_timeout_ms=3000)
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


def spark_alive_workers(settings: Settings) -> int:
    state = _get_json(f"http://127.0.0.1:{settings.SPARK_MASTER_UI_PORT}/json/")
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


def spark_ready(settings: Settings) -> bool:
    return spark_alive_workers(settings) >= settings.SPARK_WORKERS


def airflow_health(settings: Settings) -> dict:
    return _get_json(f"http://127.0.0.1:{settings.AIRFLOW_PORT}/api/v2/monitor/health")


def airflow_ready(settings: Settings) -> bool:
    health = airflow_health(settings)
    parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
    return all(health.get(part, {}).get("status") == "healthy" for part in parts)


def dashboard_ready(settings: Settings) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.DASHBOARD_PORT}/_stcore/health", timeout=3) as r:
        return r.read().strip() == b"ok"


PROBES = {"postgres": postgres_ready, "mariadb": mariadb_ready, "kafka": kafka_ready,
          "spark": spark_ready, "airflow": airflow_ready, "dashboard": dashboard_ready}


def probe(group: str, settings: Settings) -> bool:
    check = PROBES.get(group)
    if check is None:
        return True
    try:
        return bool(check(settings))
    except Exception:  # a probe failing to connect just means "not ready yet"
        return False
