"""Marts: the Spark job (`build_marts`, on the cluster, over the bench replica) against the same SQL in DuckDB.

Spark timed: the job's own `pipeline_runs` row (read the replica columns, build, stage, quality gates, publish;
session start excluded). DuckDB timed: read the same replica columns from MySQL into DuckDB (load_s, through
connectorx's native MySQL client straight into Arrow) plus each mart's `reference_sql` materialized as a table
(compute_s); nothing written back. rows = the replica rows each side read (Spark's from its run's row).

DuckDB's own MySQL reader (the `mysql` extension) is downloaded at first use, which this machine cannot; connectorx
is the pip-installable native reader. Until 2026-12-06 the load went through mysql-connector's pure-Python protocol
(its C extension does not load against Debian 12's OpenSSL) and a Python list per column: on the bench replica the
load took 3.59 s that way and 0.20 s this way, for marts equal value by value, so DuckDB's side was charged ≈ 3.4 s
of our client's Python.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path

from shopflow.config import PROJECT_ROOT, Settings
from shopflow.db import mysql_connection

from .common import Measure, run_window, spark_submit

JOB_FILE = PROJECT_ROOT / "code" / "shopflow" / "jobs" / "build_marts.py"
# the one MySQL-only construct of the reference SQL: the Monday of a timestamp's ISO week
_WEEK_START = re.compile(r"DATE\((\w+)\) - INTERVAL WEEKDAY\(\1\) DAY")


# ROUND(AVG(x), 2): DuckDB's AVG is a DOUBLE (also of decimals, and so is a decimal division), whose ROUND took exact
# half-cent means down (1.00 and 1.01 gave 1.0) where MySQL and the marts (marts.spec.rounded_mean) round half up;
# here in integers, as the marts do (the amounts and ratings are >= 0)
_ROUNDED_MEAN = re.compile(r"ROUND\(AVG\(([\w.]+)\), 2\)")
_EXACT_MEAN = r"(CAST((CAST(SUM(\1) * 100 AS HUGEINT) * 2 + COUNT(\1)) // (2 * COUNT(\1)) AS DECIMAL(38, 0)) * 0.01)"


def duckdb_sql(mysql_sql: str) -> str:
    return _ROUNDED_MEAN.sub(_EXACT_MEAN, _WEEK_START.sub(r"CAST(date_trunc('week', \1) AS DATE)", mysql_sql))


def _spark(settings: Settings, log: Path) -> tuple[int, float, float, tuple[float, float] | None]:
    from shopflow.marts.build import JOB
    since = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    code, wall = spark_submit(JOB_FILE, [], settings, log)
    if code != 0:
        raise RuntimeError(f"build_marts exited {code}, see {log}")
    with mysql_connection(settings) as conn:
        cur = conn.cursor(dictionary=True)
        cur.execute("SELECT rows_read, seconds, started_at, finished_at FROM pipeline_runs WHERE job = %s "
                    "AND table_name IS NULL AND started_at >= %s AND status = 'ok' ORDER BY run_id DESC LIMIT 1",
                    (JOB, since))
        row = cur.fetchone()
    if row is None:
        raise RuntimeError(f"no ok pipeline_runs row for {JOB}, see {log}")
    return int(row["rows_read"]), float(row["seconds"]), wall, run_window(row)


def load_duckdb(settings: Settings, marts) -> tuple:
    """A DuckDB database holding the replica columns the marts read (with each table's key); returns it and the rows
    read."""
    import connectorx
    import duckdb

    from postgresdb.models import TABLES_BY_NAME
    from shopflow.marts.registry import replica_columns
    db, rows, url = duckdb.connect(), 0, settings.mysql_url()
    for table, columns in replica_columns(marts).items():
        key = TABLES_BY_NAME[table].primary_key  # the reference SQL counts keys (Spark counts rows)
        columns = columns if key in columns else (key, *columns)
        arrow = connectorx.read_sql(url, f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM `{table}`",
                                    return_type="arrow")
        rows += arrow.num_rows
        db.register("incoming", arrow)
        db.execute(f"CREATE TABLE {table} AS SELECT * FROM incoming")
        db.unregister("incoming")
    return db, rows


def build_duckdb_marts(db, marts) -> dict[str, int]:
    """Each mart's reference SQL materialized as a table; returns the marts' row counts."""
    for mart in marts:
        db.execute(f"CREATE TABLE {mart.name} AS {duckdb_sql(mart.reference_sql)}")
    return {mart.name: db.execute(f"SELECT COUNT(*) FROM {mart.name}").fetchone()[0] for mart in marts}


def _duckdb(settings: Settings) -> tuple[int, float, float, dict, tuple[float, float]]:
    import connectorx  # noqa: F401  imported before the clock, as Spark's session starts before its own
    import duckdb  # noqa: F401
    import pyarrow  # noqa: F401  (connectorx imports it at its first Arrow result)

    from shopflow.marts.registry import all_marts
    marts = all_marts()
    start, began = time.monotonic(), time.time()
    db, rows = load_duckdb(settings, marts)
    load_s = time.monotonic() - start
    start = time.monotonic()
    out = build_duckdb_marts(db, marts)
    return rows, load_s, time.monotonic() - start, out, (began, time.time())


def measure_marts(settings: Settings, log: Path) -> dict[str, Measure]:
    rows, load_s, compute_s, mart_rows, duckdb_window = _duckdb(settings)
    spark_rows, spark_s, wall, spark_window = _spark(settings, log)
    return {
        "marts_spark": Measure("marts: Spark build_marts", spark_rows, spark_s,
                               {"wall_s": round(wall, 3), "session_and_submit_s": round(wall - spark_s, 3)},
                               window=spark_window),
        "marts_duckdb": Measure("marts: DuckDB same SQL", rows, load_s + compute_s,
                                {"load_s": round(load_s, 3), "compute_s": round(compute_s, 3),
                                 "mart_rows": mart_rows}, window=duckdb_window),
    }
