"""Shared pieces of the bench: scratch targets, the measure record, DDL without foreign keys, spark-submit."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path

from postgresdb.ddl import mysql_table_ddl
from postgresdb.models import TABLES, Table
from shopflow.config import PROJECT_ROOT, Settings
from shopflow.db import mysql_connection, pg_connection

UPDATED_AT = "updated_at"
SOURCE_SCHEMA = "bench_source"  # never the shared `source` schema
SPARK_SUBMIT = PROJECT_ROOT / ".venv" / "bin" / "spark-submit"
CLUSTER_NOTES: list[str] = []  # per spark-submit: how long it waited for the shared cluster, who was on it
SOURCE_MEASURES = {"bound", "ours", "naive", "peer", "marts"}  # the measures that read the generated source


def check_source(settings: Settings, schema: str) -> None:
    """For --no-generate: every table of `schema` exists and order_details has rows (else one line says how to get
    them); then its DDL is brought up to date (idempotent, as `make up` does for `source`)."""
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(%s || '.' || name) IS NULL",
                    ([t.name for t in TABLES], schema))
        missing = [name for (name,) in cur.fetchall()]
        if not missing:
            cur.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {schema}.order_details)")
        empty = not missing and cur.fetchone()[0]
    if missing or empty:
        what = f"lacks the table(s) {', '.join(missing)}" if missing else "has no order_details rows"
        how = "(make bench)" if schema == SOURCE_SCHEMA else f"and with --source-schema {schema}"
        raise SystemExit(f"bench: --no-generate reuses the source data, but the Postgres schema {schema} {what}. "
                         f"Run the bench once without --no-generate {how}: it generates the data.")
    from shopflow.stack.bootstrap import apply_source_schema
    from shopflow.stack.services import StackError
    try:  # a lock wait bounded, the holders named: a forgotten psql transaction on a table held the bench silently
        apply_source_schema(dataclasses.replace(settings, POSTGRES_SCHEMA=schema))
    except StackError as error:
        raise SystemExit(f"bench: {error}") from None


@dataclass
class Measure:
    name: str
    rows: int
    seconds: float
    detail: dict = field(default_factory=dict)
    # wall-clock (time.time()) start and end of the timed part, for the machine's CPU in it (bench/cpu.py)
    window: tuple[float, float] | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict:
        return {"name": self.name, "rows": self.rows, "seconds": round(self.seconds, 3),
                "rows_per_s": round(self.rows_per_s, 1), **self.detail}


def run_window(run: dict) -> tuple[float, float] | None:
    """A `pipeline_runs` row's started_at / finished_at (UTC) as wall-clock seconds, for `Measure.window`."""
    if not run.get("started_at") or not run.get("finished_at"):
        return None
    return tuple(run[key].replace(tzinfo=timezone.utc).timestamp() for key in ("started_at", "finished_at"))


def columns(table: Table) -> list[str]:
    """The replicated columns: the business columns plus updated_at (change_txid stays in Postgres)."""
    return table.column_names + [UPDATED_AT]


def pg_select_list(table: Table) -> str:
    """timestamptz -> UTC wall clock, so the text matches DATETIME(6) and Spark's UTC session."""
    timestamps = {c.name for c in table.columns if c.kind == "timestamp"} | {UPDATED_AT}
    return ", ".join(f"({c} AT TIME ZONE 'UTC') AS {c}" if c in timestamps else c for c in columns(table))


def target_settings(base: Settings, database: str, schema: str = SOURCE_SCHEMA) -> Settings:
    return dataclasses.replace(base, POSTGRES_SCHEMA=schema, MYSQL_DATABASE=database)


def recreate_database(base: Settings, database: str, with_tables: bool = True, schema: str = SOURCE_SCHEMA,
                      replica_ddl: bool = False) -> Settings:
    """Drop and create a scratch `test_*` database, optionally with the replica tables: minus foreign keys (and so
    minus the secondary indexes MySQL makes for them), or with `replica_ddl` exactly as the replica has them."""
    assert database.startswith("test_"), database
    with mysql_connection(base, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    settings = target_settings(base, database, schema)
    if with_tables:
        with mysql_connection(settings, autocommit=True) as conn:
            cur = conn.cursor()
            for table in TABLES:  # FK order; a staging name renders no FKs, renamed back to the table's own name
                ddl = mysql_table_ddl(table) if replica_ddl else mysql_table_ddl(table, name="bench__t").replace(
                    "bench__t", table.name)
                cur.execute(ddl)
    return settings


def drop_database(base: Settings, database: str) -> None:
    assert database.startswith("test_"), database
    with mysql_connection(base, autocommit=True) as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")


def mysql_counts(settings: Settings) -> dict[str, int]:
    with mysql_connection(settings) as conn:
        cur = conn.cursor()
        counts = {}
        for table in TABLES:
            cur.execute(f"SELECT COUNT(*) FROM `{table.name}`")
            counts[table.name] = cur.fetchone()[0]
        return counts


def python_env() -> dict:
    return {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "TZ": "UTC"}


def spark_submit_command(script: Path | str, args: list[str], settings: Settings,
                         streaming: bool = False, flags_of: str | None = None) -> list[str]:
    """The DAGs' submit as far as speed goes: the same JVM flags and single-core executors, one per worker
    (code/airflow/dags/_spark.py; the marts and streaming jobs size their own executor, `build_session`).
    `flags_of`: the job whose JVM flags (class-data sharing archive included) to use, default the script's own."""
    java = settings.java_options_for(streaming, job=flags_of or Path(script).stem)
    return [str(SPARK_SUBMIT), "--master", settings.SPARK_MASTER_URL,
            "--conf", f"spark.driver.extraJavaOptions={java}", "--conf", f"spark.executor.extraJavaOptions={java}",
            "--conf", "spark.executor.cores=1", "--conf", f"spark.cores.max={settings.SPARK_WORKERS}",
            "--conf", f"spark.executor.memory={settings.SPARK_EXECUTOR_MEMORY}",
            "--jars", f"{settings.POSTGRES_JDBC_JAR},{settings.MYSQL_JDBC_JAR}", str(script), *args]


def spark_submit(script: Path | str, args: list[str], settings: Settings, log: Path,
                 extra_env: dict | None = None, streaming: bool = False,
                 flags_of: str | None = None) -> tuple[int, float]:
    """Run a job on the configured cluster with settings in the environment; returns (exit code, wall seconds)."""
    env = os.environ | {"POSTGRES_SCHEMA": settings.POSTGRES_SCHEMA, "MYSQL_DATABASE": settings.MYSQL_DATABASE,
                        "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable} | (extra_env or {})
    command = spark_submit_command(script, args, settings, streaming, flags_of)
    waited = wait_for_idle_cluster(settings)
    note = (f"{Path(script).name}: waited {waited:.0f} s for the shared cluster; "
            f"other apps at submit: {cluster_apps(settings)}")
    CLUSTER_NOTES.append(note)
    with open(log, "w") as out:
        out.write(f"# {note}\n")
        out.flush()
        start = time.monotonic()
        code = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT).returncode
    return code, time.monotonic() - start


def cluster_apps(settings: Settings) -> list[str]:
    """Other applications on the standalone master (the cluster is shared; they take cores from ours)."""
    import json
    import urllib.request
    host = settings.SPARK_MASTER_URL.removeprefix("spark://").split(":")[0]
    try:
        with urllib.request.urlopen(f"http://{host}:{settings.SPARK_MASTER_UI_PORT}/json/", timeout=5) as r:
            state = json.load(r)
    except Exception:  # the master UI is informative only
        return []
    return [f"{a['name']} ({a['cores']} cores, {a['state']})" for a in state.get("activeapps", [])]


def wait_for_idle_cluster(settings: Settings, timeout_s: float = 240.0) -> float:
    """Wait (bounded) until no other application holds the shared cluster, so a measure gets all its cores."""
    start = time.monotonic()
    while cluster_apps(settings) and time.monotonic() - start < timeout_s:
        time.sleep(3)
    return time.monotonic() - start
