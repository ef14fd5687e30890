"""The Airflow log groomer deletes what is older than the retention, and nothing else."""
import os
import time

import pytest

from shopflow.config import SettingsError, load_settings
from shopflow.stack.log_groomer import EMPTY_DIR_AGE_S, groom

DAY = 86_400


def _file(path, age_s: float, now: float, size: int = 10):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_files_older_than_the_retention_go_and_their_folders_once_empty_for_an_hour(tmp_path):
    now = time.time()
    run = tmp_path / "dag_id=build_marts" / "run_id=scheduled__2026-11-01" / "task_id=build_marts"
    old = [_file(run / "attempt=1.log", 16 * DAY, now, 100), _file(run / "attempt=2.log", 15 * DAY + 60, now, 50)]
    kept = [_file(tmp_path / "dag_id=build_marts" / "run_id=recent" / "task_id=build_marts" / "attempt=1.log",
                  15 * DAY - 60, now),
            _file(tmp_path / "dag_processor" / "latest.log", 0, now)]
    fresh_empty = tmp_path / "dag_id=replicate" / "run_id=starting" / "task_id=replicate"
    fresh_empty.mkdir(parents=True)

    for folder in (run, run.parent, run.parent.parent):
        os.utime(folder, (now - 15 * DAY, now - 15 * DAY))

    assert groom(tmp_path, 15, now=now) == (2, 150)
    assert not any(p.exists() for p in old) and all(p.exists() for p in kept)
    assert not run.parent.exists(), "its folders, emptied by this pass, untouched for days before it"
    assert (tmp_path / "dag_id=build_marts").is_dir(), "it holds a recent run"
    assert fresh_empty.is_dir(), "a folder Airflow just made for a starting task"

    for folder in (fresh_empty, fresh_empty.parent, fresh_empty.parent.parent):
        os.utime(folder, (now - EMPTY_DIR_AGE_S - 1, now - EMPTY_DIR_AGE_S - 1))
    assert groom(tmp_path, 15, now=now) == (0, 0)
    assert not fresh_empty.parent.parent.exists() and all(p.exists() for p in kept) and tmp_path.is_dir()


def test_a_missing_log_folder_is_nothing_to_do(tmp_path):
    assert groom(tmp_path / "not-yet", 15) == (0, 0)


def test_the_retention_is_at_least_one_day(tmp_path):
    assert load_settings(env={"LOCAL_STATE_DIR": str(tmp_path)}, env_file=None).AIRFLOW_LOG_RETENTION_DAYS == 15
    with pytest.raises(SettingsError, match="AIRFLOW_LOG_RETENTION_DAYS='0': must be at least 1"):
        load_settings(env={"AIRFLOW_LOG_RETENTION_DAYS": "0"}, env_file=None)


def test_run_by_hand_without_airflow_home_it_grooms_the_stacks_logs(monkeypatch, caplog):
    """Airflow's own default (~/airflow) may be another install's logs."""
    import logging

    from shopflow.config import get_settings
    from shopflow.stack import log_groomer

    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    groomed = []
    monkeypatch.setattr(log_groomer, "groom", lambda logs, days: groomed.append(logs) or (0, 0))
    with caplog.at_level(logging.INFO):
        assert log_groomer.main(["--once"]) == 0
    assert groomed == [get_settings().state_dir / "airflow" / "logs"]
