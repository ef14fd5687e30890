"""Each published mart against the same question answered in plain SQL over the replica (`Mart.reference_sql`).

    python -m shopflow.marts.verify      # exit 0 when every mart equals its plain-SQL answer
"""
from __future__ import annotations

import sys
from collections import Counter

from shopflow.config import Settings, get_settings
from shopflow.db import mysql_connection
from shopflow.quality.rules import normalized

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


def verify(settings: Settings) -> dict[str, list[str]]:
    report = {}
    with mysql_connection(settings) as conn:
        cursor = conn.cursor()
        for mart in all_marts():
            rows, problems = differences(cursor, mart)
            report[mart.name] = problems
            print(f"{mart.name}: {'equal' if not problems else 'DIFFERENT'} ({rows} rows)", flush=True)
            for problem in problems:
                print(f"  {problem}", flush=True)
    return report


if __name__ == "__main__":
    sys.exit(1 if any(verify(get_settings()).values()) else 0)
