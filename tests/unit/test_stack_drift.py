"""A running service started with other settings than the current ones: other ports fail, the rest is noted (drift.py).

Records are written to a scratch state dir; nothing is started."""
from __future__ import annotations

import dataclasses
import json

import pytest

from shopflow.config import get_settings
from shopflow.stack import drift
from shopflow.stack.services import all_services


@pytest.fixture
def started(tmp_path):
    """Settings whose every service was recorded as started, and the names of those services."""
    settings = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path / "state"))
    services = all_services(settings)
    drift.record(settings, services)
    return settings, {s.name for s in services}


def _compare(settings, running, **changes):
    now = dataclasses.replace(settings, **changes)
    services = all_services(now)
    return drift.compare(now, services, running, {s.name for s in services})


def test_the_same_settings_give_nothing(started):
    settings, running = started
    found = _compare(settings, running)
    assert found.errors == [] and found.notes == []


def test_another_port_of_a_running_service_is_an_error_naming_both_ports(started):
    settings, running = started
    found = _compare(settings, running, POSTGRES_PORT=settings.POSTGRES_PORT + 10_000)
    assert found.errors == [f"postgres runs on port {settings.POSTGRES_PORT}, but the settings now give port "
                            f"{settings.POSTGRES_PORT + 10_000}"]


def test_another_setting_is_a_note_naming_it_and_the_services_that_carry_it(started):
    settings, running = started
    found = _compare(settings, running, SPARK_WORKER_MEMORY="3g")
    assert found.errors == [] and len(found.notes) == 1
    assert "other values of SPARK_WORKER_MEMORY than" in found.notes[0]
    assert {"spark-worker-1", "spark-master", "airflow-scheduler"} <= found.named
    assert not {"postgres", "mariadb", "kafka"} & found.named  # their processes carry no settings


def test_a_changed_password_note_says_the_services_connections_will_be_refused(started):
    """`make up` then sets the role's password to the new value under services still holding the old one."""
    settings, running = started
    found = _compare(settings, running, MARTS_READER_PASSWORD="changed")
    assert len(found.notes) == 1 and "dashboard" in found.notes[0]
    assert found.notes[0].endswith("; the databases take the new password now, so their new connections are refused "
                                   "until they restart")
    assert not _compare(settings, running, SPARK_WORKER_MEMORY="3g").notes[0].endswith("until they restart")


def test_a_service_the_settings_no_longer_define_is_noted(started):
    settings, running = started
    found = _compare(settings, running, SPARK_WORKERS=settings.SPARK_WORKERS - 1)
    extra = f"spark-worker-{settings.SPARK_WORKERS}"
    assert found.errors == [] and extra in found.named
    assert f"no longer among the current settings' services: {extra}" in found.notes[-1]


def test_stopped_and_unrecorded_services_are_not_compared(started):
    settings, running = started
    assert _compare(settings, running - {"postgres"}, POSTGRES_PORT=1).errors == []
    drift._path(settings).unlink()
    assert _compare(settings, running, POSTGRES_PORT=1).errors == []


def test_services_already_noted_are_left_out_of_the_notes_but_not_the_errors(started):
    settings, running = started
    now = dataclasses.replace(settings, SPARK_WORKER_MEMORY="3g", POSTGRES_PORT=1)
    services = all_services(now)
    found = drift.compare(now, services, running, {s.name for s in services}, noted=frozenset(running))
    assert found.notes == [] and len(found.errors) == 1


def test_the_record_holds_no_setting_value(started):
    settings, _ = started
    text = drift._path(settings).read_text()
    assert settings.POSTGRES_PASSWORD not in text and settings.AIRFLOW_FERNET_KEY not in text
    assert '"POSTGRES_PASSWORD"' in text  # the key is there, with a hash of its value
    # owner-only, the record replaced a second time too: a short unsalted hash of a password is a guess away from it
    drift.record(settings, all_services(settings))
    assert drift._path(settings).stat().st_mode & 0o777 == 0o600  # was 0644


def test_status_lists_a_running_service_the_settings_no_longer_define(started, monkeypatch):
    from shopflow.stack import manager, supervisor

    settings, running = started
    fewer = dataclasses.replace(settings, SPARK_WORKERS=settings.SPARK_WORKERS - 1)
    extra = f"spark-worker-{settings.SPARK_WORKERS}"
    info = {name: {"statename": "RUNNING", "pid": 100 + i} for i, name in enumerate(sorted(running))}
    monkeypatch.setattr(supervisor, "process_info", lambda _settings: info)
    rows = {row[0]: row[1:] for row in manager.status_rows(fewer)}
    ui_port = settings.SPARK_WORKER_UI_PORT_BASE + settings.SPARK_WORKERS - 1
    assert rows[extra] == ("RUNNING (not in settings)", str(ui_port), str(info[extra]["pid"]))


def test_a_setting_added_since_the_start_counts_only_when_it_is_not_the_default(started):
    """A newer checkout adds a setting: services started before it ran with its default, so only another value is
    noted (upgrading alone used to note every running service)."""
    settings, running = started
    records = drift.load(settings)
    for record in records.values():
        record["settings"].pop("AIRFLOW_LOG_RETENTION_DAYS", None)
    drift._path(settings).write_text(json.dumps(records))
    assert _compare(settings, running).notes == []
    found = _compare(settings, running, AIRFLOW_LOG_RETENTION_DAYS=30)
    assert len(found.notes) == 1 and "other values of AIRFLOW_LOG_RETENTION_DAYS than" in found.notes[0]


def test_status_shows_the_ports_a_running_service_started_with_and_what_the_settings_give(started, monkeypatch):
    """`POSTGRES_PORT=6432 make up`, then `make status` without it: the server still listens on 6432."""
    from shopflow.stack import manager, supervisor

    settings, running = started
    info = {name: {"statename": "RUNNING", "pid": 100 + i} for i, name in enumerate(sorted(running))}
    monkeypatch.setattr(supervisor, "process_info", lambda _settings: info)
    moved = dataclasses.replace(settings, POSTGRES_PORT=settings.POSTGRES_PORT + 1000)
    rows = {row[0]: row[1:] for row in manager.status_rows(moved)}
    assert rows["postgres"] == (f"RUNNING (the settings now give {moved.POSTGRES_PORT})",
                                str(settings.POSTGRES_PORT), str(info["postgres"]["pid"]))
    assert rows["mariadb"] == ("RUNNING", str(settings.MYSQL_PORT), str(info["mariadb"]["pid"]))
    info["postgres"]["statename"] = "STOPPED"  # a stopped one would start on the settings' port
    assert manager.status_rows(moved)[0][1:3] == ("STOPPED", str(moved.POSTGRES_PORT))


def test_a_taken_port_names_the_setting_that_moves_it(settings_with_a_squatter):
    from shopflow.stack import manager

    settings, port = settings_with_a_squatter
    master = next(s for s in all_services(settings) if s.name == "spark-master")
    expected = rf"port {port} is already in use .* in \.env \(SPARK_MASTER_UI_PORT\)\.$"
    with pytest.raises(manager.StackError, match=expected):
        manager.check_ports(settings, ["spark"])
    assert master.ports[1] == port and len(master.port_settings) == len(master.ports)
    assert all(len(s.port_settings) == len(s.ports) for s in all_services(settings))


@pytest.fixture
def settings_with_a_squatter(tmp_path):
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        yield dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path / "state"),
                                  SPARK_MASTER_URL="spark://127.0.0.1:1", SPARK_MASTER_UI_PORT=port), port


def test_services_of_the_virtualenv_started_before_the_lock_file_changed_are_noted(started, monkeypatch, tmp_path):
    """`git pull` bringing a new uv.lock, then `make up`: its install swapped the packages under the running Spark,
    Airflow and broker, which were reused without a word."""
    lock = tmp_path / "uv.lock"
    lock.write_text("version = 1\n")
    monkeypatch.setattr(drift, "LOCK_FILE", lock)
    settings, running = started
    drift.record(settings, all_services(settings))
    assert _compare(settings, running).notes == []
    lock.write_text("version = 2\n")
    found = _compare(settings, running)
    assert len(found.notes) == 1 and found.notes[0].startswith("started before uv.lock changed")
    assert {"kafka", "spark-master", "airflow-scheduler", "dashboard"} <= found.named
    assert not {"postgres", "mariadb"} & found.named  # Debian's, not the virtualenv's


def test_a_changed_airflow_password_is_no_note_and_a_changed_user_is(started):
    """`make up` writes the new password where the running Airflow reads it at each login (manager._after_start); a
    note said it ran with another value and to restart the whole stack."""
    settings, running = started
    assert _compare(settings, running, AIRFLOW_ADMIN_PASSWORD="changed").notes == []
    found = _compare(settings, running, AIRFLOW_ADMIN_USER="ops", AIRFLOW_ADMIN_PASSWORD="changed")
    assert len(found.notes) == 1 and "other values of AIRFLOW_ADMIN_USER than" in found.notes[0]


def test_a_running_airflow_gets_a_new_password_but_not_another_users(started, monkeypatch):
    """Also when an Airflow member restarts beside a running login server (`init_airflow` writes the file then)."""
    from shopflow.stack import manager

    settings, _running = started
    other_user = dataclasses.replace(settings, AIRFLOW_ADMIN_USER="ops")
    assert manager._login_takes_password(other_user)  # no login server running: it starts with the current user
    monkeypatch.setattr(manager, "_running", lambda _settings: {manager.AIRFLOW_LOGIN})
    assert manager._login_takes_password(settings) and not manager._login_takes_password(other_user)
    passwords = settings.state_dir / "airflow" / "passwords.json"
    manager._after_start(dataclasses.replace(settings, AIRFLOW_ADMIN_PASSWORD="changed"), "airflow", fresh=False)
    assert json.loads(passwords.read_text()) == {settings.AIRFLOW_ADMIN_USER: "changed"}
    assert passwords.stat().st_mode & 0o777 == 0o600
    manager._after_start(dataclasses.replace(settings, AIRFLOW_ADMIN_USER="ops", AIRFLOW_ADMIN_PASSWORD="other"),
                         "airflow", fresh=False)  # it runs as the old user: its login is left as it is
    assert json.loads(passwords.read_text()) == {settings.AIRFLOW_ADMIN_USER: "changed"}
    passwords.unlink()
    drift._path(settings).unlink()  # no record of how it started: nothing written
    manager._after_start(settings, "airflow", fresh=False)
    assert not passwords.exists()
