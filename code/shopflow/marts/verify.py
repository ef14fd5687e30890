"""Each published mart against the same question answered in plain SQL over the replica (`Mart.reference_sql`).

    python -m shopflow.marts.verify      # exit 0 when every mart equals its plain-SQL answer

The marts are built from the replica as it was; a replication run that changed it since makes them differ until the
next build (the build_marts DAG runs after each replication). The output says so first when `pipeline_runs` shows it.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

from shopflow.config import Settings, get_settings
from shopflow.db import mysql_connection
from shopflow.quality.rules import normalized
from shopflow.replication.results import JOB as REPLICATION_JOB

from .build import JOB as MARTS_JOB
from .registry import all_marts
from .spec import Mart

SAMPLE = 5


def _rows(cursor, sql: str) -> list[tuple]:
    cursor.execute(sql)
    return [tuple(normalized(v) for v in row) for row in cursor.fetchall()]


def differences(cursor, mart: Mart) -> tuple[int, list[str]]:
    """(rows in the mart, a description of each difference from the plain-SQL answer, at most SAMPLE per side)."""
    columns = ", ".join(f"`{c.name}`" for c in mart.columns)
    published = _rows(cursor, f"SELECT {columns} FROM `{mart.name}`")
    reference = _rows(cursor, f"SELECT {columns} FROM ({mart.reference_sql}) reference")
    only_mart = sorted((Counter(published) - Counter(reference)).elements(), key=repr)
    only_sql = sorted((Counter(reference) - Counter(published)).elements(), key=repr)
    return len(published), ([f"only in {mart.name}: {r}" for r in only_mart[:SAMPLE]] +
                            [f"only in the plain SQL answer: {r}" for r in only_sql[:SAMPLE]])


def replica_changed_since_build(cursor) -> str | None:
    """A note when a replication run that wrote rows (or failed: its upserts may be committed) ended after the last
    successful marts build started; None when the marts are at least as new as the replica's last change."""
    cursor.execute("SELECT (SELECT MAX(COALESCE(finished_at, started_at)) FROM pipeline_runs WHERE job = %s "
                   "AND table_name IS NULL AND NOT (status = 'ok' AND COALESCE(rows_written, 0) = 0)), "
                   "(SELECT MAX(started_at) FROM pipeline_runs WHERE job = %s AND table_name IS NULL AND status = 'ok')",
                   (REPLICATION_JOB, MARTS_JOB))
    changed, built = cursor.fetchone()
    if changed is None or (built is not None and changed <= built):
        return None
    since = f"the last marts build started {built:%Y-%m-%d %H:%M:%S} UTC" if built else "no marts build succeeded yet"
    return (f"note: a replication run changed the replica at {changed:%Y-%m-%d %H:%M:%S} UTC and {since}: "
            f"differences may be that change, not a wrong mart. Build the marts again (the build_marts DAG, or "
            f"`make airflow ARGS=\"dags trigger build_marts\"`) and verify after it.")


def verify(settings: Settings) -> dict[str, list[str]]:
    report = {}
    with mysql_connection(settings) as conn:
        cursor = conn.cursor()
        note = replica_changed_since_build(cursor)
        if note:
            print(note, flush=True)
        for mart in all_marts():
            rows, problems = differences(cursor, mart)
            report[mart.name] = problems
            print(f"{mart.name}: {'equal' if not problems else 'DIFFERENT'} ({rows} rows)", flush=True)
            for problem in problems:
                print(f"  {problem}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m shopflow.marts.verify", description=(
        "Compare every mart with its plain-SQL answer over the replica (settings from .env / the environment). "
        "Exit 0 when all are equal, 1 otherwise.")).parse_args(argv)
    return 1 if any(verify(get_settings()).values()) else 0


if __name__ == "__main__":
    sys.exit(main())
