"""Helpers of the dashboard integration tests (no tests here): a scratch database `test_dash_*` holding the five
marts (their real DDL) and the two run tables with a small hand-checked seed, and a dashboard process of our own
(port not 8501) pointed at it."""
from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from test_marts_replica import execute

from shopflow import db
from shopflow.config import PROJECT_ROOT
from shopflow.marts.registry import all_marts
from shopflow.quality.results import QUALITY_RESULTS_DDL
from shopflow.runlog import PIPELINE_RUNS_DDL

NOW = datetime.now(timezone.utc).replace(tzinfo=None)


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


# Figures the pages must show, worked out by hand from SEED below.
OVERVIEW = {"users": 4, "customers": 3, "orders": 7, "revenue": "190.49", "average_check": "27.21"}  # 190.49 / 7
SEED = {
    "mart_user_activity": [(1, "Zoë", "Lee", "Completed", 2, "100.50"), (1, "Zoë", "Lee", "Pending", 1, "20.00"),
                           (2, "Bob", "Ray", "Completed", 3, "60.00"), (3, "Cy", "Fox", "Cancelled", 1, "9.99")],
    "mart_user_loyalty_points": [(1, "Zoë", "Lee", "Gold", 500), (2, "Bob", "Ray", "Silver", 120),
                                 (3, "Cy", "Fox", "Bronze", 0), (4, "Di", "Kim", "Gold", -5)],
    "mart_product_rating": [(10, "Lamp ✨", "4.50", 2), (11, "Desk", "4.50", 5), (12, "Chair", "1.25", 4),
                            (13, "Rug", None, 0), (14, "Vase", "3.00", 1)],
    "mart_average_check": [("Completed", "Gold", "50.25", 2), ("Completed", "Silver", "20.00", 3),
                           ("Pending", "Gold", "20.00", 1), ("Cancelled", "Bronze", "9.99", 1)],
    "mart_weekly_activity": [("2026-01-05", 2, 3, "120.50", 1), ("2026-01-12", 0, 0, "0.00", 0),
                             ("2026-01-19", 2, 4, "69.99", 3)],
}
RUN_COLUMNS = ("job", "table_name", "status", "started_at", "finished_at", "seconds", "rows_read", "rows_written",
               "rows_rejected", "detail")
RUNS = [  # replication: the latest run failed; marts: a failed build, then a good one; streaming: four batches
    ("replicate_postgres_to_mysql", None, "ok", ago(31), ago(29), 120.0, 1000, 900, None, None),
    ("replicate_postgres_to_mysql", "users", "ok", ago(31), ago(30), 60.0, 100, 90, 0, None),
    ("replicate_postgres_to_mysql", None, "failed", ago(10), ago(9), 55.5, None, None, None, None),
    ("build_marts", None, "failed", ago(40), ago(39), 70.0, 500, None, None, None),
    ("build_marts", None, "ok", ago(20), ago(19), 65.25, 500, 19, None, None),
    ("build_marts", "mart_weekly_activity", "ok", ago(20), ago(19.5), 20.0, None, 3, None, None),
    ("stream_users", "users", "ok", ago(16), ago(15.9), 4.0, 100, 90, 5, None),
    ("stream_users", "users", "replayed", ago(15), ago(14.9), 3.0, 50, 0, 0, None),
    ("stream_users", "users", "failed", ago(14), ago(13.9), 2.0, None, None, None, None),
    ("stream_users", "users", "ok", ago(13), ago(12.9), 3.5, 50, 48, 2, '{"topic": "users-data", "lag": 7}'),
]
QUALITY_COLUMNS = ("run_id", "checked_at", "mart", "check_name", "passed", "observed", "expected")
QUALITY = [("run-a", ago(39), "mart_weekly_activity", "no_week_missing", False, "1", "0"),
           ("run-a", ago(39), "mart_weekly_activity", "not_null(week_start)", True, "0", "0"),
           ("run-b", ago(19), "mart_weekly_activity", "no_week_missing", True, "0", "0"),
           ("run-b", ago(19), "mart_weekly_activity", "not_null(week_start)", True, "0", "0"),
           ("run-b", ago(19), "mart_product_rating", "unique(product_id)", True, "0", "0")]


def insert(settings, table: str, columns, rows) -> None:
    with db.mysql_connection(settings) as conn:
        conn.cursor().executemany(f"INSERT INTO `{table}` ({', '.join(columns)}) "
                                  f"VALUES ({', '.join(['%s'] * len(columns))})", rows)


def create_marts(settings, seeded: bool = True) -> None:
    for mart in all_marts():
        execute(settings, mart.ddl(mart.name))
        if seeded and mart.name in SEED:  # a mart the dashboard does not show yet stays empty
            insert(settings, mart.name, [c.name for c in mart.columns], SEED[mart.name])


@contextmanager
def scratch_db(mysql, prefix: str, marts: str = "seeded", runs: bool = True):
    """A fresh database `test_dash_<prefix>_<random>` with the marts ("seeded", "empty" or "none") and the run
    tables (seeded, or absent); read by the stack's reader account, granted SELECT on it as on the replica (db_user
    stood in for it until the settings refused one account for both). Dropped afterwards, the grant with it."""
    from shopflow.stack.bootstrap import mariadb_root

    name = f"test_dash_{prefix}_{uuid.uuid4().hex[:8]}"
    settings = dataclasses.replace(mysql, MYSQL_DATABASE=name)
    execute(mysql, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    grant = f"ON `{name}`.* {{}} '{settings.MARTS_READER_USER}'@'%';"
    try:
        mariadb_root(mysql, "GRANT SELECT " + grant.format("TO"))
        if marts != "none":
            create_marts(settings, seeded=marts == "seeded")
        if runs:
            execute(settings, PIPELINE_RUNS_DDL, QUALITY_RESULTS_DDL)
            insert(settings, "pipeline_runs", RUN_COLUMNS, RUNS)
            insert(settings, "quality_results", QUALITY_COLUMNS, QUALITY)
        yield settings
    finally:
        try:
            execute(mysql, f"DROP DATABASE IF EXISTS `{name}`")
        finally:  # a grant on a database that is gone stays in mysql.db until revoked
            mariadb_root(mysql, "REVOKE SELECT " + grant.format("FROM"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def dashboard_process(settings, log_dir: Path, startup_timeout_s: float = 120):
    """`streamlit run app.py` on a free port against `settings`' database; yields its base URL; stopped after."""
    port = free_port()
    env = os.environ | {"MYSQL_DATABASE": settings.MYSQL_DATABASE, "MARTS_READER_USER": settings.MARTS_READER_USER,
                        "MARTS_READER_PASSWORD": settings.MARTS_READER_PASSWORD, "DASHBOARD_PORT": str(port)}
    command = [str(PROJECT_ROOT / ".venv" / "bin" / "streamlit"), "run",
               str(PROJECT_ROOT / "code" / "shopflow" / "dashboard" / "app.py"), "--server.address", "127.0.0.1",
               "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    with open(log_dir / "streamlit.log", "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + startup_timeout_s
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start: {(log_dir / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
