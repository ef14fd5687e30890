"""An order-independent table checksum computed in SQL on both sides from the same canonical text form.

Canonical text of a value (identical bytes in Postgres and MySQL/MariaDB):
  integer -> decimal digits; DECIMAL(12,2) -> '12.50' (always two decimals); timestamp -> its UTC wall clock
  'YYYY-MM-DD HH:MM:SS.ffffff' (microseconds); text -> the characters themselves, as UTF-8 bytes.
A field is `<character count>:<text>`, or `N` for NULL; the length prefix makes the encoding injective (no
separator or NULL marker can be forged by a value). A row is its fields joined by ','; the row hash is the first
60 bits of MD5 of the row's UTF-8 bytes; the table checksum is (row count, exact SUM of the row hashes).
MySQL side: every part is cast to BINARY, so the client's connection charset cannot change the hashed bytes.
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


def _pg_text(column: Column) -> str:
    if column.kind == "timestamp":
        return f"to_char({column.name} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    return column.name if column.kind in _TEXT_KINDS else f"{column.name}::text"


def _mysql_text(column: Column) -> str:
    name = f"`{column.name}`"
    if column.kind == "timestamp":
        # %S, not its synonym %s: the statement may carry client-side %s placeholders (keys_checksum)
        return f"DATE_FORMAT({name}, '%Y-%m-%d %H:%i:%S.%f')"
    return name if column.kind in _TEXT_KINDS else f"CAST({name} AS CHAR)"


EMPTY = Checksum(0, 0)


def postgres_checksum_sql(table: Table, schema: str, where: str = "") -> str:
    fields = [f"COALESCE(length({t}) || ':' || {t}, 'N')" for t in map(_pg_text, replicated_columns(table))]
    row = " || ',' || ".join(fields)
    return (f"SELECT count(*), COALESCE(sum(('x' || substr(md5({row}), 1, 15))::bit(60)::bigint), 0) "
            f"FROM {schema}.{table.name}{where}")


def mysql_checksum_sql(table: Table, name: str | None = None, where: str = "") -> str:
    fields = [f"COALESCE(CONCAT(CHAR_LENGTH({t}), ':', CAST({t} AS BINARY)), 'N')"
              for t in map(_mysql_text, replicated_columns(table))]
    row = f"CONCAT_WS(',', {', '.join(fields)})"
    return (f"SELECT COUNT(*), COALESCE(SUM(CAST(CONV(SUBSTRING(MD5({row}), 1, 15), 16, 10) AS UNSIGNED)), 0) "
            f"FROM `{name or table.name}`{where}")


def checksum_from_row(row: tuple) -> Checksum:
    return Checksum(int(row[0]), int(row[1]))
