"""An order-independent checksum of a set of rows, computed in SQL on both sides from the same canonical text form.

Canonical text of a value (identical bytes in Postgres and MySQL/MariaDB):
  integer -> decimal digits; DECIMAL(12,2) -> '12.50' (always two decimals); timestamp -> its UTC wall clock
  'YYYY-MM-DD HH:MM:SS.ffffff' (microseconds); text -> the characters themselves, as UTF-8 bytes.
A text field is `<character count>:<text>`, any other field its text as is, a NULL `N`. A row is its fields joined
by ','. The rows are hashed in blocks of the primary key (`key DIV block_keys(table)`, the same integer division on
both sides): a block's text is its rows in key order joined by a newline, its hash the first 60 bits of MD5 of that
text's UTF-8 bytes, and the checksum is (row count, exact SUM of the block hashes). The encoding is injective:
numbers and timestamps never contain ',' or a newline or start with 'N', and a text's length prefix says where it
ends, so no value can forge a separator or the NULL marker, and a block's text gives back its rows.
One MD5 per block instead of per row: MD5's cost here is per call, not per byte (order_details, 990,870 rows, one
thread: Postgres 1.09 s instead of 1.50 s, MariaDB 0.78 s instead of 1.04 s). The price: the checksum of a union
is the sum of its parts' only when no block spans two parts (key ranges cut at block boundaries: `block_cuts`).
MySQL side: text is cast to BINARY, so the client's connection charset cannot change the hashed bytes; a block's
text is limited by `max_allowed_packet` (GROUP_CONCAT cuts it with a warning, which `Replica` turns into an error),
which is why tables with a `longtext` column use blocks of 100 keys, and the stack's MariaDB allows 1 GB (at the
default 16 MB, one 17 MB review failed every run).
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


def _pg_input(column: Column) -> str:
    """A column as the inner query of `postgres_checksum_sql` selects it: a timestamp already as its UTC wall
    clock's text (DateStyle ISO, which psycopg2 sets and `open_snapshot` too), which `_pg_field` then uses twice."""
    name = column.name
    return f"({name} AT TIME ZONE 'UTC')::text AS {name}" if column.kind == "timestamp" else name


def _pg_field(column: Column) -> str:
    """A timestamp's text drops trailing zeros of the fraction, the substr puts them back: 15 % cheaper than
    `to_char` with its format on 1M rows. A number goes to concat_ws as is (its output function gives the canonical
    digits), unless it may be NULL."""
    name = column.name
    if column.kind in _TEXT_KINDS:
        text = f"length({name}) || ':' || {name}"
    elif column.kind == "timestamp":  # `name` is the text `_pg_input` made
        text = f"{name} || substr('.000000', length({name}) - 18)"
    elif column.nullable:
        text = f"{name}::text"
    else:
        return name
    return f"COALESCE({text}, 'N')" if column.nullable else text


def _mysql_field(column: Column) -> str:
    """Numbers and DATETIME(6) convert to exactly the canonical text inside CONCAT_WS (two decimals, six
    fraction digits), which costs half of an explicit DATE_FORMAT / CAST per value on 1M rows."""
    name = f"`{column.name}`"
    text = f"CONCAT(CHAR_LENGTH({name}), ':', CAST({name} AS BINARY))" if column.kind in _TEXT_KINDS else name
    return f"COALESCE({text}, 'N')" if column.nullable else text


EMPTY = Checksum(0, 0)
BLOCK_KEYS = 1_000
LONG_TEXT_BLOCK_KEYS = 100  # MySQL's GROUP_CONCAT result is limited by max_allowed_packet (the stack's: 1 GB)


def block_keys(table: Table) -> int:
    return LONG_TEXT_BLOCK_KEYS if any(c.kind == "longtext" for c in table.columns) else BLOCK_KEYS


def block_cuts(table: Table, low: int, cuts: list[int]) -> list[int]:
    """`cuts` (ascending key range starts, above `low`) moved down to block starts, so that no block spans two
    ranges: the checksums of the ranges then add up to the whole one's. Only positive multiples of the block size are
    block starts on both sides (integer division truncates: block 0 holds -999..999)."""
    size = block_keys(table)
    return sorted({cut // size * size for cut in cuts if cut // size * size > max(low, 0)})


def _pg_blocks(table: Table, relation: str, where: str) -> str:
    """Count and hash of the rows `where` selects, one row per block of keys when grouped by `key / size`. The inner
    query turns each timestamp into text once: Postgres does not share the two uses of one expression in
    `_pg_field`, and `OFFSET 0` keeps the planner from pulling the inner query up into the outer one (all 7 bench
    tables, one thread, eight alternating rounds: 2.00-2.04 s instead of 2.18-2.36 s)."""
    columns = replicated_columns(table)
    row = f"concat_ws(',', {', '.join(map(_pg_field, columns))})"
    return (f"SELECT count(*) AS n, ('x' || substr(md5(string_agg({row}, E'\\n' ORDER BY {table.primary_key})), "
            f"1, 15))::bit(60)::bigint AS h FROM (SELECT {', '.join(map(_pg_input, columns))} FROM {relation}{where} "
            f"OFFSET 0) r")


BIGINT_MIN, BIGINT_MAX = -2**63, 2**63 - 1


def postgres_checksum_sql(table: Table, schema: str, where: str = "", along_key: bool = False) -> str:
    """Grouped: the rows `where` selects are sorted into their blocks (`key / size`) and each block hashed.
    `along_key` (a whole table whose rows lie in key order, `SourceSnapshot.checksum` decides): the table is hashed
    block by block along its primary key index instead. A recursive query finds each non-empty block (the next key
    past the last block, so sparse keys cost one index probe per block, not per possible block) and a lateral
    subquery hashes that block's key range. Same checksum, no sort of the whole table (84 MB of temporary files for
    order_details): 0.86 s instead of 1.16 s, all 7 bench tables 1.63-1.67 s instead of 2.04-2.05 s (one thread).
    Block `b` holds the keys `k` with `k / size = b`: 1000b..1000b+999 for b > 0, -999..999 for b = 0,
    1000b-999..1000b for b < 0 (integer division truncates), cut to bigint's range at its ends."""
    key, size, relation = table.primary_key, block_keys(table), f"{schema}.{table.name}"
    if where or not along_key:
        return f"SELECT COALESCE(sum(n), 0), COALESCE(sum(h), 0) FROM ({_pg_blocks(table, relation, where)} " \
               f"GROUP BY {key} / {size}) blocks"
    start = f"checksum_block::numeric * {size}"  # numeric: the first and last blocks' bounds would overflow bigint
    low = f"GREATEST(CASE WHEN checksum_block > 0 THEN {start} ELSE {start} - {size - 1} END, {BIGINT_MIN})::bigint"
    high = f"LEAST(CASE WHEN checksum_block < 0 THEN {start} ELSE {start} + {size - 1} END, {BIGINT_MAX})::bigint"
    return (f"WITH RECURSIVE blocks(checksum_block) AS (SELECT min({key})::bigint / {size} FROM {relation} "
            f"UNION ALL SELECT (SELECT min({key}) FROM {relation} WHERE {key} > {high})::bigint / {size} "
            f"FROM blocks WHERE checksum_block IS NOT NULL) "
            f"SELECT COALESCE(sum(n), 0), COALESCE(sum(h), 0) FROM blocks CROSS JOIN LATERAL "
            f"({_pg_blocks(table, relation, f' WHERE {key} BETWEEN {low} AND {high}')}) block "
            f"WHERE checksum_block IS NOT NULL")


def mysql_checksum_sql(table: Table, name: str | None = None, where: str = "") -> str:
    """Needs a session `group_concat_max_len` of at least a block's text (`Replica` sets the maximum:
    `target.CHECKSUM_SESSION`)."""
    row = f"CONCAT_WS(',', {', '.join(map(_mysql_field, replicated_columns(table)))})"
    key = f"`{table.primary_key}`"
    return (f"SELECT COALESCE(SUM(n), 0), COALESCE(SUM(h), 0) FROM (SELECT COUNT(*) AS n, CAST(CONV(SUBSTRING(MD5("
            f"GROUP_CONCAT({row} ORDER BY {key} SEPARATOR X'0A')), 1, 15), 16, 10) AS UNSIGNED) AS h "
            f"FROM `{name or table.name}`{where} GROUP BY {key} DIV {block_keys(table)}) blocks")


def checksum_from_row(row: tuple) -> Checksum:
    return Checksum(int(row[0]), int(row[1]))
