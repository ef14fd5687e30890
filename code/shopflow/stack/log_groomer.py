"""Airflow's log groomer: every 15 minutes, deletes the task and DAG-processor log files under Airflow's log folder
last written more than AIRFLOW_LOG_RETENTION_DAYS ago, and the folders left empty.

Airflow never deletes its local logs (its Helm chart and image run a "log groomer" beside it for this). At the default
schedules the DAGs write about 20 MB of task logs a day. The local stack runs this as `airflow-log-groomer`, the
compose deployment as the `airflow-log-groomer` container:

    python -m shopflow.stack.log_groomer [--once] [--logs DIR]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from shopflow.config import SettingsError, get_settings

log = logging.getLogger("shopflow.log_groomer")
EVERY_S = 900
EMPTY_DIR_AGE_S = 3600  # a folder Airflow made for a task that starts now is empty for a moment: keep it


def groom(logs: Path, retention_days: int, now: float | None = None) -> tuple[int, int]:
    """Deletes the files under `logs` last modified more than `retention_days` ago, then the folders left empty that
    nothing had changed for an hour before this pass; returns (files deleted, their bytes)."""
    now = time.time() if now is None else now
    cutoff, files, size = now - retention_days * 86_400, 0, 0
    folders = []  # (folder, its files, its last change before this pass: deleting in it changes it), parents first
    for root, _dirs, names in os.walk(logs):
        try:
            folders.append((root, names, os.lstat(root).st_mtime))
        except FileNotFoundError:
            continue
    for root, names, touched in reversed(folders):  # children before their parents
        for name in names:
            path = os.path.join(root, name)
            try:
                stat = os.lstat(path)
                if stat.st_mtime < cutoff:
                    os.unlink(path)
                    files, size = files + 1, size + stat.st_size
            except OSError:  # gone meanwhile, or not ours to delete: the next file, the next pass
                continue
        try:
            if root != str(logs) and touched < now - EMPTY_DIR_AGE_S and not os.listdir(root):
                os.rmdir(root)
        except OSError:  # gone, or a file arrived meanwhile
            continue
    return files, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="log_groomer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="groom once and exit")
    parser.add_argument("--logs", type=Path, help="the log folder (default: $AIRFLOW_HOME/logs, or the local "
                                                  "stack's when AIRFLOW_HOME is not set)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = get_settings()
    except SettingsError as error:
        log.error("%s", error)
        return 2
    days = settings.AIRFLOW_LOG_RETENTION_DAYS
    # run by hand from a shell: the stack's Airflow, not ~/airflow (Airflow's own default, maybe another install's)
    home = os.environ.get("AIRFLOW_HOME") or settings.state_dir / "airflow"
    logs = args.logs or Path(home).expanduser() / "logs"
    log.info("keeping %s day(s) of logs under %s; every %d s", days, logs, EVERY_S)
    while True:
        files, size = groom(logs, days)
        if files:
            log.info("deleted %d log file(s) older than %d day(s), %.1f MB", files, days, size / 1e6)
        if args.once:
            return 0
        time.sleep(EVERY_S)


if __name__ == "__main__":
    sys.exit(main())
