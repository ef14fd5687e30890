"""Quality rules, declared beside each mart: one value measured in SQL over the staged mart, compared with an
expected value.

The expected value is a constant or a `Source`: an aggregate of a replica table that the job computes in Spark over
the very rows the mart was built from (not by querying the replica again, which a replication run may have changed
meanwhile). Pure: rule builders and the comparison; `gate.py` runs them.

SQL here runs on MySQL 8 and MariaDB; `{table}` in a rule's SQL stands for the (backquoted) staged table.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable

TABLE = "{table}"
_OPERATORS = {"=": operator.eq, "<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Source:
    """An aggregate over one replica table in Spark SQL, e.g. Source("orders", "SUM(total_amount)")."""
    table: str
    expression: str

    def __str__(self) -> str:
        return f"{self.table}: {self.expression}"


@dataclass(frozen=True)
class Check:
    name: str
    observed_sql: str  # a SELECT of one value; TABLE stands for the staged mart
    expected: Any = 0  # a constant or a Source
    op: str = "="  # passes when `observed <op> expected`
    bound_may_be_empty: bool = False  # with <= or >=: an expected NULL (a bound from an empty table) bounds nothing

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise ValueError(f"check {self.name}: unknown operator {self.op!r}")
        if self.bound_may_be_empty and self.op == "=":
            raise ValueError(f"check {self.name}: only a bound (<= or >=) may come from an empty table")

    def passes(self, observed: Any, expected: Any) -> bool:
        if self.bound_may_be_empty and normalized(expected) is None:
            return True
        return passes(observed, self.op, expected)

    def sql(self, table: str) -> str:
        return self.observed_sql.replace(TABLE, f"`{table}`")


def _quoted(columns: Iterable[str]) -> str:
    return ", ".join(f"`{c}`" for c in columns)


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def rows_where(name: str, condition: str) -> Check:
    """No row of the mart may satisfy `condition` (the observed value is how many do)."""
    return Check(name, f"SELECT COUNT(*) FROM {TABLE} WHERE {condition}", 0)


def not_null(*columns: str) -> Check:
    return rows_where(f"not_null({', '.join(columns)})", " OR ".join(f"`{c}` IS NULL" for c in columns))


def unique(*columns: str) -> Check:
    """Observed: how many key values occur more than once."""
    return Check(f"unique({', '.join(columns)})",
                 f"SELECT COUNT(*) FROM (SELECT 1 FROM {TABLE} GROUP BY {_quoted(columns)} "
                 "HAVING COUNT(*) > 1) duplicated_keys", 0)


def accepted_values(column: str, values: Iterable[str]) -> Check:
    """NULLs are not counted here: `not_null` says whether a column may hold them."""
    return rows_where(f"accepted_values({column})", f"`{column}` NOT IN ({', '.join(map(_literal, values))})")


def in_range(column: str, low: int | None = None, high: int | None = None) -> Check:
    if low is None and high is None:
        raise ValueError(f"in_range({column}): give a low or a high bound")
    outside = ([f"`{column}` < {low}"] if low is not None else []) + \
              ([f"`{column}` > {high}"] if high is not None else [])
    bounds = f"{'' if low is None else f'{low} <= '}{column}{'' if high is None else f' <= {high}'}"
    return rows_where(f"range({bounds})", " OR ".join(outside))


def reconciles(aggregate: str, source: Source, op: str = "=", bound_may_be_empty: bool = False) -> Check:
    """An aggregate of the mart (MySQL SQL) against an aggregate of a replica table (Spark SQL). With
    `bound_may_be_empty`, a bound (<= or >=) whose table has no rows (NULL) passes whatever the mart holds."""
    return Check(f"{aggregate} {op} {source}", f"SELECT {aggregate} FROM {TABLE}", source, op, bound_may_be_empty)


def total_equals(column: str, source: Source) -> Check:
    """SUM(column) over the mart equals an aggregate of the replica; both are 0, not NULL, without rows."""
    return reconciles(f"COALESCE(SUM(`{column}`), 0)", Source(source.table, f"COALESCE({source.expression}, 0)"))


def rounded_means_add_up(mean: str, count: str, table: str, value: str) -> list[Check]:
    """Means rounded to 2 decimals (`mean`, over `count` values each) add back up to the total of `value` over the
    replica's `table` (one value per row, NOT NULL): each is off by at most 0.005, so the weighted sum by at most
    0.005 per row. Catches a wrong denominator or values lost in a join, which the means' range cannot."""
    weighted, total = f"COALESCE(SUM(`{mean}` * `{count}`), 0)", f"COALESCE(SUM({value}), 0)"
    return [reconciles(weighted, Source(table, f"{total} {sign} 0.005 * COUNT(*)"), op)
            for sign, op in (("-", ">="), ("+", "<="))]


def keyed_total_equals(key: str, column: str, source: Source) -> Check:
    """SUM(key * column) over the mart equals the replica's SUM(key * value) (`source.expression` is the value): a
    total under the right key, which a total alone cannot tell from one under another key. Computed in DECIMAL(38,
    0) (the name keeps the plain form): keys near 2^63 overflowed BIGINT there (Spark's ANSI mode fails the build)."""
    exact = "CAST({} AS DECIMAL(38, 0))"
    check = reconciles(f"COALESCE(SUM(`{key}` * `{column}`), 0)",
                       Source(source.table, f"COALESCE(SUM({key} * {source.expression}), 0)"))
    return Check(check.name, f"SELECT COALESCE(SUM({exact.format(f'`{key}`')} * `{column}`), 0) FROM {TABLE}",
                 Source(source.table, f"COALESCE(SUM({exact.format(key)} * {source.expression}), 0)"))


def same_values(table: str, columns: Iterable[str]) -> Check:
    """The mart holds the replica `table`'s values of `columns` row for row: a sum of the CRC32 of each row's values
    (as text, `|` between them, NULLs skipped) on both sides, so a name or status moved to another key shows."""
    text = "CONCAT_WS('|', {})"
    return reconciles(f"COALESCE(SUM(CRC32({text.format(_quoted(columns))})), 0)",
                      Source(table, f"COALESCE(SUM(crc32({text.format(', '.join(columns))})), 0)"))


def row_count_equals(table: str) -> Check:
    return reconciles("COUNT(*)", Source(table, "COUNT(*)"))


def not_empty_when(table: str) -> Check:
    """The mart has rows exactly when the replica table it is built from has rows."""
    return Check(f"not_empty_when({table})", f"SELECT COUNT(*) > 0 FROM {TABLE}", Source(table, "COUNT(*) > 0"))


def normalized(value: Any) -> Any:
    """One representation per value whichever client produced it (MySQL gives 1/0 and Decimal sums, Spark gives
    bools and ints)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value))
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return value


def passes(observed: Any, op: str, expected: Any) -> bool:
    """`observed <op> expected`; NULL only matches NULL (an empty mart of an empty replica)."""
    observed, expected = normalized(observed), normalized(expected)
    if observed is None or expected is None:
        return observed is None and expected is None
    if isinstance(observed, date) != isinstance(expected, date):
        return False
    return _OPERATORS[op](observed, expected)
