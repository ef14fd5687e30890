"""Ours: the replication job (spark-submit on the cluster), full load into an empty scratch replica, then an
incremental run after 1 % of every table's rows changed in the bench source.

Job seconds come from the run's own `pipeline_runs` row (session start excluded); wall = spark-submit end to end.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from postgresdb.models import TABLES
from shopflow.config import PROJECT_ROOT, Settings
from shopflow.db import mysql_connection, pg_connection
from shopflow.replication import JOB

from .common import Measure, run_window, spark_submit

DATABASE = "replica"  # suffix of the scratch database test_bench_<suffix>
JOB_FILE = PROJECT_ROOT / "code" / "shopflow" / "jobs" / "replicate_postgres_to_mysql.py"
CHANGED_FRACTION_MODULO = 100  # rows whose key % 100 = 0: 1 %
CHANGES = {"orders": "total_amount = total_amount + 1", "order_details": "quantity = quantity + 1"}


def _run_rows(settings: Settings, since: datetime) -> tuple[dict, list[dict]]:
    with mysql_connection(settings) as conn:
        cur = conn.cursor(dictionary=True)
        cur.execute("SELECT table_name, mode, seconds, rows_read, rows_written, rows_deleted, status, started_at, "
                    "finished_at "
                    "FROM pipeline_runs WHERE job = %s AND started_at >= %s ORDER BY run_id", (JOB, since))
        rows = cur.fetchall()
    whole = [r for r in rows if r["table_name"] is None]
    if not whole:
        raise RuntimeError(f"no pipeline_runs row for {JOB} since {since}")
    return whole[-1], [r for r in rows if r["table_name"] is not None]


def run_replication(settings: Settings, name: str, args: list[str], log: Path) -> Measure:
    since = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    code, wall = spark_submit(JOB_FILE, args, settings, log)
    if code != 0:
        raise RuntimeError(f"{name}: replication job exited {code}, see {log}")
    whole, tables = _run_rows(settings, since)
    seconds = float(whole["seconds"])
    rows = sum(int(t["rows_read"] or 0) for t in tables)
    return Measure(name, rows, seconds, {
        "wall_s": round(wall, 3), "session_and_submit_s": round(wall - seconds, 3),
        "rows_written": sum(int(t["rows_written"] or 0) for t in tables),
        "modes": sorted({t["mode"] for t in tables}),
        "per_table_s": {t["table_name"]: float(t["seconds"]) for t in tables}}, window=run_window(whole))


def change_one_percent(settings: Settings) -> int:
    """Change 1 % of each table's rows: orders/order_details get a new amount/quantity, the others a new updated_at
    (a replicated column); the source trigger then sets change_txid (it skips updates that change nothing)."""
    changed = 0
    with pg_connection(settings) as conn, conn.cursor() as cur:
        for table in TABLES:
            key = table.primary_key
            change = CHANGES.get(table.name, "updated_at = clock_timestamp()")
            cur.execute(f"UPDATE {settings.POSTGRES_SCHEMA}.{table.name} SET {change} "
                        f"WHERE {key} % {CHANGED_FRACTION_MODULO} = 0")
            changed += cur.rowcount
    return changed
