"""Start (reusing what runs), stop and inspect the local services."""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager

from shopflow import db, runlog
from shopflow.config import Settings
from shopflow.stack import bootstrap, broker, cds, drift, health, processes, supervisor
from shopflow.stack.lock import one_at_a_time
from shopflow.stack.layout import check_java_options, check_layout, check_reachable, check_state_path
from shopflow.stack.services import GROUPS, Service, StackError, all_services

DEPENDS = {"airflow": ("postgres",), "eventgen": ("kafka",), "dashboard": ("mariadb",)}
TIMEOUTS = {"postgres": 30, "mariadb": 60, "kafka": 30, "spark": 120, "airflow": 240, "eventgen": 10,
            "dashboard": 60}
_T0 = time.monotonic()
JOB_STOP_GRACE_S = 60  # a stream's clean stop: its current batch, then the query and the Spark session
_NOTED: set[str] = set()  # services a drift note of this process named already


@contextmanager
def step(title: str):
    start = time.monotonic()
    print(f"[{start - _T0:7.1f}s] {title} ...", flush=True)
    yield
    print(f"[{time.monotonic() - _T0:7.1f}s] {title}: done in {time.monotonic() - start:.1f}s", flush=True)


def _expand(groups) -> list[str]:
    wanted = set(groups)
    for group in list(wanted):
        wanted.update(DEPENDS.get(group, ()))
    unknown = wanted - set(GROUPS)
    if unknown:
        raise StackError(f"unknown service group(s) {sorted(unknown)}; known: {', '.join(GROUPS)}")
    return [g for g in GROUPS if g in wanted]


def _running(settings: Settings) -> set[str]:
    return {name for name, info in supervisor.process_info(settings).items() if info["statename"] == "RUNNING"}


def running_services(settings: Settings) -> list[Service]:
    """This checkout's services that supervisord reports RUNNING."""
    running = _running(settings)
    return [service for service in all_services(settings) if service.name in running]


def _check_ports(services: list[Service]) -> None:
    for service in services:
        for i, port in enumerate(service.ports):
            if health.port_open(port):
                if (holder := health.port_holder(port)) and health.orphaned(holder[1]):
                    raise StackError(
                        f"{service.name}: port {port} is held by {holder[0]} (pid {holder[1]}), which this checkout's "
                        "stack started and whose supervisord no longer runs (killed, or it crashed): `make down` stops "
                        "what it left running, then `make up` starts the stack again.")
                key = service.port_settings[i] if i < len(service.port_settings) else None
                raise StackError(
                    f"{service.name}: port {port} is already in use by {health.port_owner(port)}, which is not this "
                    f"stack. Stop that process (or `make down` in its checkout), or set another port in .env"
                    + (f" ({key})." if key else "."))


def _to_start(settings: Settings, groups: list[str], services: list[Service]) -> list[Service]:
    """The services of `groups` (already expanded) that are not running."""
    running = _running(settings)
    return [s for s in services if s.group in groups and s.name not in running]


def _check_drift(settings: Settings, groups: list[str], services: list[Service]) -> None:
    """Running services started with other settings (see drift.py): other ports fail, the rest is noted once."""
    found = drift.compare(settings, [s for s in services if s.group in groups], _running(settings),
                          {s.name for s in services}, frozenset(_NOTED))
    if found.errors:
        raise StackError("the settings changed while the stack runs: " + "; ".join(found.errors)
                         + f". {drift.APPLY} (or set the old value again).")
    _NOTED.update(found.named)
    for note in found.notes:
        print(f"  note: {note}. {drift.APPLY}.", flush=True)


def check_ports(settings: Settings, groups=GROUPS) -> None:
    """The port check of `ensure` for every service of `groups` not running yet, before any starts (`make up` starts
    its groups in several calls, with the data generated between them); running services' ports are compared with
    the settings too."""
    groups, services = _expand(groups), all_services(settings)
    check_layout(settings, services)
    _check_drift(settings, groups, services)
    _check_ports(_to_start(settings, groups, services))


def _wait(settings: Settings, group: str, services: list[Service]) -> None:
    deadline = time.monotonic() + TIMEOUTS[group]
    while not health.probe(group, settings):
        dead = supervisor.ended(settings, [s.name for s in services])
        if dead or time.monotonic() > deadline:
            reason = f"exited ({', '.join(dead)})" if dead else f"not ready after {TIMEOUTS[group]}s"
            shown = [s for s in services if s.name in dead] or services
            logs = "\n".join(supervisor.tail(settings, s.name) for s in shown)
            raise StackError(f"{group} failed to start: {reason}\n{logs}")
        time.sleep(1)
    health.check_holders(settings, services)


# the servers that run as a system user of their own: (user, server) by group
SYSTEM_USERS = {"postgres": ("postgres", "Postgres"), "mariadb": ("mysql", "MariaDB")}


def check_state_dir(settings: Settings) -> None:
    """`make up`'s checks of the state directory, before anything is made in it (its lock file first): a refused
    LOCAL_STATE_DIR was left behind holding a `stack.lock` (e.g. under /root, which the refusal said to avoid)."""
    check_state_path(settings)
    for user, server in SYSTEM_USERS.values():
        check_reachable(settings, user, server)


def _before_start(settings: Settings, group: str) -> None:
    if group == "postgres":
        bootstrap.init_postgres(settings)
    elif group == "mariadb":
        bootstrap.init_mariadb(settings)
    elif group == "airflow":
        orphans = processes.airflow_orphans(supervisor.daemon_pid(settings))
        if orphans:  # a scheduler that died left them, holding row locks that would stall its successor
            processes.stop(orphans)
            print(f"  stopped {len(orphans)} Airflow worker(s) left by a scheduler that ended", flush=True)
        if _login_takes_password(settings):  # before the login server starts: it makes up passwords for users
            bootstrap.write_airflow_password(settings)  # missing from the file
        bootstrap.init_airflow(settings)


AIRFLOW_LOGIN = "airflow-api-server"  # the service that serves the logins


def _login_takes_password(settings: Settings) -> bool:
    """The password file may hold the current user's password: the login server is not running (it starts with the
    current user) or runs as the current AIRFLOW_ADMIN_USER (a file for another user locked the running one out)."""
    return AIRFLOW_LOGIN not in _running(settings) or drift.started_with(settings, AIRFLOW_LOGIN, "AIRFLOW_ADMIN_USER")


def _after_start(settings: Settings, group: str, fresh: bool) -> None:
    if group == "kafka":
        broker.after_start(settings, _running(settings), fresh)
    elif group == "postgres":
        bootstrap.bootstrap_postgres(settings)
        bootstrap.apply_source_schema(settings)
    elif group == "mariadb":
        bootstrap.bootstrap_mariadb(settings)
        db.apply_mysql_schema(settings)
        runlog.ensure_pipeline_runs(settings)
    elif group == "airflow" and not fresh and _login_takes_password(settings):
        bootstrap.write_airflow_password(settings)  # a changed AIRFLOW_ADMIN_PASSWORD, without a restart
    elif group == "spark" and settings.SPARK_CDS_JOBS and not settings.spark_cds_archive.is_file():
        with step("record the Spark JVMs' class-data sharing archive (once, ~35 s)"):
            cds.ensure_archive(settings)


@one_at_a_time
def ensure(settings: Settings, groups=GROUPS, started: list[str] | None = None) -> list[str]:
    """Start the groups (and what they depend on) that are not running; returns the services it started, which it
    also appends to `started` as they start (a caller interrupted meanwhile knows what to stop)."""
    groups = _expand(groups)
    services = all_services(settings)
    check_layout(settings, services)
    _check_drift(settings, groups, services)
    todo = _to_start(settings, groups, services)
    _check_ports(todo)
    if any(s.group == "spark" for s in todo):
        check_java_options(settings)
    for group in {s.group for s in todo} & SYSTEM_USERS.keys():
        check_reachable(settings, *SYSTEM_USERS[group])
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    supervisor.start_daemon(settings, services)
    started = [] if started is None else started
    for group in groups:
        members = [s for s in todo if s.group == group]
        if members:
            with step(f"start {group} ({', '.join(s.name for s in members)})"):
                _before_start(settings, group)
                if group == "kafka":
                    broker.starting(settings)
                drift.record(settings, members)
                for service in members:
                    if service.env:  # started through shopflow.stack.launch
                        supervisor.write_launch(settings, service)
                    started.append(service.name)  # first: a Ctrl-C in the start's wait leaves it starting
                    supervisor.start(settings, service.name)
                _wait(settings, group, [s for s in services if s.group == group])
        _after_start(settings, group, fresh=bool(members))
    return started


@one_at_a_time
def stop(settings: Settings, names: list[str]) -> None:
    for name in reversed(names):
        supervisor.stop(settings, name)


@one_at_a_time
def down(settings: Settings) -> None:
    with step("stop the local stack"):
        jobs = processes.jobs_run_by_hand(supervisor.daemon_pid(settings))
        if jobs:  # first, while the servers they use still run: a stream then stops its query cleanly
            print(f"  stopping {len(jobs)} job(s) run by hand: {', '.join(map(str, jobs))}", flush=True)
            processes.stop(jobs, grace_s=JOB_STOP_GRACE_S)
        supervisor.shutdown(settings)
        strays = processes.strays()
        if strays:
            killed = processes.stop(strays)
            print(f"  stopped {len(strays)} leftover process(es) of this checkout"
                  + (f" ({len(killed)} ignored SIGTERM and were killed)" if killed else ""), flush=True)
        shutil.rmtree(settings.spark_scratch_dir, ignore_errors=True)  # what killed drivers and executors left


MOVED = "RUNNING (the settings now give"  # the state of a service running on the ports it started with


def status_rows(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(name, state, ports, pid) per service. A running service shows the ports it was started with (drift.py), and
    its state the ports the current settings give, when they differ."""
    info, services = supervisor.process_info(settings), all_services(settings)
    rows = []
    records = drift.load(settings)
    for service in services:
        state, name = info.get(service.name, {}), service.name
        statename, ports = state.get("statename", "not started"), _ports_text(service.ports)
        record = records.get(name) if statename == "RUNNING" else None
        started_on = record.get("ports") if isinstance(record, dict) else None
        if isinstance(started_on, list) and _ports_text(started_on) != ports:  # started before the settings changed
            statename, ports = f"{MOVED} {ports})", _ports_text(started_on)
        rows.append((name, statename, ports, str(state.get("pid") or "-")))
    for name in sorted(set(info) - {s.name for s in services}):  # e.g. a worker left after SPARK_WORKERS was lowered
        rows.append((name, f"{info[name]['statename']} (not in settings)",
                     _ports_text(records.get(name, {}).get("ports", [])), str(info[name].get("pid") or "-")))
    return rows


def _ports_text(ports) -> str:
    return ",".join(str(p) for p in ports) or "-"
