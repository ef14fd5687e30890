"""What each running service was started with, so that a later start can tell that the settings changed since.

`manager.ensure` records a service's ports, command line and settings in `.local/run/started.json` just before it
starts it; the settings are stored as hashes, never their values (some are passwords). A running service is reused,
never restarted, so a changed `.env` (or environment) does not reach it. Comparing its record with what the current
settings give:
- other ports: an error, before anything starts: the stack's clients would look for the service where it is not;
- another command line or other settings: a note naming the settings, since the service keeps running as it was
  (except APPLIED_LIVE's, which `make up` gives the running service);
- running, but no longer one of the settings' services (e.g. fewer `SPARK_WORKERS`): a note;
- run from the project's virtualenv, started before `uv.lock` changed (a `git pull`, then `make up`, whose install
  put the new packages under it): a note.
`make down`, then `make up`, starts everything with the current settings. A service started before records existed
has none and is not compared.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from shopflow.config import PROJECT_ROOT, Settings
from shopflow.stack import supervisor
from shopflow.stack.services import VENV_BIN, Service, settings_env

LOCK_FILE = PROJECT_ROOT / "uv.lock"

APPLY = "`make down`, then `make up`, restarts the stack with the current settings"
_SHOWN_KEYS = 6
# The database roles' passwords, which `make up` sets to the current settings even under running services (bootstrap.py)
ROLE_PASSWORDS = {"POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "MYSQL_PASSWORD", "MARTS_READER_PASSWORD"}
# Settings `make up` applies to running services (no note): Airflow reads its password file at each login, which
# `make up` writes again while Airflow runs as the same AIRFLOW_ADMIN_USER (a new user needs a restart: noted)
APPLIED_LIVE = {"AIRFLOW_ADMIN_PASSWORD"}


def _path(settings: Settings):
    return supervisor.paths(settings)["pid"].parent / "started.json"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def describe(settings: Settings, service: Service) -> dict:
    """The record of `service` as the current settings define it."""
    values = settings_env(settings) if service.env else {}  # only services with an environment carry the settings
    from_venv = service.command[0].startswith(f"{VENV_BIN.parent}/") and LOCK_FILE.is_file()
    return {"ports": list(service.ports), "command": list(service.command),
            "settings": {key: _digest(value) for key, value in sorted(values.items())},
            "packages": _digest(LOCK_FILE.read_text()) if from_venv else None}


def load(settings: Settings) -> dict[str, dict]:
    try:
        records = json.loads(_path(settings).read_text())
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def record(settings: Settings, services: list[Service]) -> None:
    """Called just before `services` start."""
    records = load(settings) | {s.name: describe(settings, s) for s in services}
    # owner-only: a short unsalted digest of a password is a guess away from a human-chosen one
    supervisor.write_private(_path(settings), json.dumps(records, indent=1, sort_keys=True))


@dataclass
class Drift:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    named: set[str] = field(default_factory=set)


def _ports(ports) -> str:
    ports = list(ports or [])
    return ("port " if len(ports) == 1 else "ports ") + (", ".join(map(str, ports)) or "none")


def _changed_keys(then: dict, now: dict) -> list[str]:
    """Keys whose values differ; a key the record lacks (a setting added since the service started) counts only when
    its value is not the default, which the service ran with."""
    defaults = {f.name: _digest(str(f.default)) for f in dataclasses.fields(Settings)}
    return sorted(k for k in (then.keys() | now.keys()) - APPLIED_LIVE
                  if then.get(k) != now.get(k) and not (k not in then and now.get(k) == defaults.get(k)))


def started_with(settings: Settings, name: str, key: str) -> bool:
    """The running service `name` was started with the current value of setting `key` (False without a record)."""
    then = load(settings).get(name)
    recorded = then.get("settings") if isinstance(then, dict) else None
    return isinstance(recorded, dict) and recorded.get(key) == _digest(str(getattr(settings, key)))


def _keys_text(keys: tuple[str, ...]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def compare(settings: Settings, services: list[Service], running: set[str], defined: set[str],
            noted: frozenset[str] = frozenset()) -> Drift:
    """`services`: the ones to check (those of the groups being started); `running`: supervisord's RUNNING names;
    `defined`: every service name the current settings give; `noted`: services already noted, left out of the
    notes (the errors are always given). `Drift.named` holds the services the notes name."""
    records, drift, changed, repackaged = load(settings), Drift(), {}, []
    for service in services:
        then = records.get(service.name)
        if service.name not in running or not isinstance(then, dict):
            continue
        now = describe(settings, service)
        if then.get("ports") != now["ports"]:
            drift.errors.append(f"{service.name} runs on {_ports(then.get('ports'))}, but the settings now give "
                                f"{_ports(now['ports'])}")
        elif service.name not in noted:
            keys = _changed_keys(then.get("settings") or {}, now["settings"])
            if keys or then.get("command") != now["command"]:
                changed.setdefault(tuple(keys), []).append(service.name)
            elif None not in (then.get("packages"), now["packages"]) and then["packages"] != now["packages"]:
                repackaged.append(service.name)
    for keys, names in changed.items():
        what = f"other values of {_keys_text(keys)}" if keys else "another command line"
        refused = ("; the databases take the new password now, so their new connections are refused until they "
                   "restart") if ROLE_PASSWORDS & set(keys) else ""
        drift.notes.append(f"started with {what} than the current settings give, and still running as started: "
                           f"{', '.join(names)}{refused}")
    if repackaged:
        drift.notes.append(f"started before uv.lock changed, and still running on what they loaded then beside the "
                           f"packages installed since: {', '.join(repackaged)}")
    extra = sorted(running - defined - noted)
    drift.named = {name for names in changed.values() for name in names} | set(extra) | set(repackaged)
    if extra:
        drift.notes.append(f"running, but no longer among the current settings' services: {', '.join(extra)}")
    return drift
