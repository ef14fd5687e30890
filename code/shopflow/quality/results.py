"""`quality_results` in MySQL: one row per rule per mart per run, passed or not."""
from __future__ import annotations

from typing import Iterable

from .gate import CheckResult

QUALITY_RESULTS_DDL = """CREATE TABLE IF NOT EXISTS quality_results (
    result_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    run_id VARCHAR(250) NOT NULL,
    checked_at DATETIME(6) NOT NULL,
    mart VARCHAR(64) NOT NULL,
    check_name VARCHAR(255) NOT NULL,
    passed BOOLEAN NOT NULL,
    observed VARCHAR(255) NULL,
    expected VARCHAR(255) NULL,
    KEY ix_quality_results_run (run_id),
    KEY ix_quality_results_mart_checked (mart, checked_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""

_INSERT = ("INSERT INTO quality_results (run_id, checked_at, mart, check_name, passed, observed, expected) "
           "VALUES (%s, UTC_TIMESTAMP(6), %s, %s, %s, %s, %s)")


def _text(value) -> str | None:
    return None if value is None else str(value)[:255]


def record_results(cursor, run_id: str, results: Iterable[CheckResult]) -> None:
    cursor.execute(QUALITY_RESULTS_DDL)
    cursor.executemany(_INSERT, [(run_id, r.mart, r.check[:255], r.passed, _text(r.observed), _text(r.expected))
                                 for r in results])
