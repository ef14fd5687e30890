"""Running quality rules: expected values from the replica frames (Spark), observed values from the staged mart
(SQL on MySQL), one `CheckResult` per rule."""
from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .rules import Check, Source


@dataclass(frozen=True)
class CheckResult:
    mart: str
    check: str
    passed: bool
    observed: Any
    expected: Any

    def __str__(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.mart} {self.check}: {verdict} (observed {self.observed}, expected {self.expected})"


class QualityGateError(RuntimeError):
    """A mart failed a quality rule: nothing was published."""

    def __init__(self, failures: list[CheckResult]):
        self.failures = failures
        super().__init__(f"{len(failures)} quality check(s) failed, no mart published: "
                         + "; ".join(map(str, failures)))


def sources(checks: Iterable[Check]) -> set[Source]:
    return {c.expected for c in checks if isinstance(c.expected, Source)}


def expected_values(frames: Mapping[str, Any], wanted: Iterable[Source]) -> dict[Source, Any]:
    """Every Source evaluated with one Spark aggregation per replica table; the tables' jobs run side by side (on a
    small cluster one table's JDBC read leaves cores idle while the database answers)."""
    by_table: dict[str, list[Source]] = defaultdict(list)
    for source in sorted(set(wanted), key=str):
        by_table[source.table].append(source)

    def evaluate(table: str) -> list[tuple[Source, Any]]:
        table_sources = by_table[table]
        return list(zip(table_sources, frames[table].selectExpr(*(s.expression for s in table_sources)).first()))

    with ThreadPoolExecutor(max_workers=max(1, len(by_table))) as pool:
        return {source: value for pairs in pool.map(evaluate, by_table) for source, value in pairs}


def run_checks(cursor, mart: str, table: str, checks: Iterable[Check],
               expected: Mapping[Source, Any]) -> list[CheckResult]:
    """Each rule's SQL over `table` (the staged mart), compared with its expected value."""
    results = []
    for check in checks:
        cursor.execute(check.sql(table))
        observed = cursor.fetchone()[0]
        wanted = expected[check.expected] if isinstance(check.expected, Source) else check.expected
        results.append(CheckResult(mart, check.name, check.passes(observed, wanted), observed, wanted))
    return results
