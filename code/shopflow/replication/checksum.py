"""An order-independent table checksum computed in SQL on both sides from the same canonical text form.

Canonical text of a value (identical bytes in Postgres and MySQL/MariaDB):
  integer -> decimal digits; DECIMAL(12,2) -> '12.50' (always two decimals); timestamp -> its UTC wall clock
  'YYYY-MM-DD HH:MM:SS.ffffff' (microseconds); text -> the characters themselves, as UTF-8 bytes.
A text field is `<character count>:<text>`, any other field its text as is, a NULL `N`. The encoding is injective:
numbers and timestamps never contain ',' or start with 'N', and a text's length prefix says where it ends, so no
value can forge a separator or the NULL marker. A row is its fields joined by ','; the row hash is the first 60 bits
of MD5 of the row's UTF-8 bytes; the table checksum is (row count, exact SUM of the row hashes).
MySQL side: text is cast to BINARY, so the client's connection charset cannot change the hashed bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

from postgresdb.models import Column, Table

from .transform import replicated_columns

_TEXT_KINDS = ("text", "longtext")


@dataclass(frozen=True)
class Checksum:
    rows: int
    hash_sum: int

    def __str__(self) -> str:
        return f"{self.rows}:{self.hash_sum}"

    def __add__(self, other: "Checksum") -> "Checksum":
        return Checksum(self.rows + other.rows, self.hash_sum + other.hash_sum)

    def __sub__(self, other: "Checksum") -> "Checksum":
        return Checksum(self.rows - other.rows, self.hash_sum - other.hash_sum)

    @classmethod
    def parse(cls, text: str | None) -> "Checksum | None":
        """The stored form `rows:sum`; None for a missing or malformed value (forces a full verification)."""
        rows, _, hash_sum = (text or "").partition(":")
        return cls(int(rows), int(hash_sum)) if rows.isdigit() and hash_sum.isdigit() else None

    def difference(self, other: "Checksum") -> str:
        """Human-readable difference of `self` (source) against `other` (replica)."""
        parts = []
        if self.rows != other.rows:
            parts.append(f"rows source={self.rows} replica={other.rows} (diff {other.rows - self.rows:+d})")
        if self.hash_sum != other.hash_sum:
            parts.append(f"checksum source={self} replica={other}")
        return "; ".join(parts) or "equal"


def _pg_field(column: Column) -> str:
    name = column.name
    if column.kind in _TEXT_KINDS:
        text = f"length({name}) || ':' || {name}"
    elif column.kind == "timestamp":
        text = f"to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    else:
        text = f"{name}::text"
    return f"COALESCE({text}, 'N')" if column.nullable else text


def _mysql_field(column: Column, alias: str = "") -> str:
    """Numbers and DATETIME(6) convert to exactly the canonical text inside CONCAT_WS (two decimals, six
    fraction digits), which costs half of an explicit DATE_FORMAT / CAST per value on 1M rows."""
    name = f"{alias}`{column.name}`"
    text = f"CONCAT(CHAR_LENGTH({name}), ':', CAST({name} AS BINARY))" if column.kind in _TEXT_KINDS else name
    return f"COALESCE({text}, 'N')" if column.nullable else text


EMPTY = Checksum(0, 0)


def postgres_checksum_sql(table: Table, schema: str, where: str = "") -> str:
    row = " || ',' || ".join(map(_pg_field, replicated_columns(table)))
    return (f"SELECT count(*), COALESCE(sum(('x' || substr(md5({row}), 1, 15))::bit(60)::bigint), 0) "
            f"FROM {schema}.{table.name}{where}")


def mysql_hash_sum(table: Table, alias: str = "") -> str:
    """The SUM of the row hashes over the rows of a query on `table` (columns qualified by `alias`, e.g. "t.")."""
    row = f"CONCAT_WS(',', {', '.join(_mysql_field(c, alias) for c in replicated_columns(table))})"
    return f"COALESCE(SUM(CAST(CONV(SUBSTRING(MD5({row}), 1, 15), 16, 10) AS UNSIGNED)), 0)"


def mysql_checksum_sql(table: Table, name: str | None = None, where: str = "") -> str:
    return f"SELECT COUNT(*), {mysql_hash_sum(table)} FROM `{name or table.name}`{where}"


def checksum_from_row(row: tuple) -> Checksum:
    return Checksum(int(row[0]), int(row[1]))
