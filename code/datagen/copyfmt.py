"""Raw generator rows -> Postgres COPY text (tab-separated, `\\N` for NULL), streamed in chunks.

The same value formatting backs `to_python`, so tests of the decoded rows also test what lands in Postgres.
"""
from __future__ import annotations

import re
import time
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Callable, Iterable, Iterator

from postgresdb.models import Table

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]").search


def text(value: str) -> str:
    # Generated text rarely needs escaping; the search is much cheaper than translate() on every value.
    return value.translate(_ESCAPES) if _NEEDS_ESCAPE(value) else value


def money(cents: int) -> str:
    """1234 -> '12.34' (exact; generated amounts are never negative)."""
    return f"{cents // 100}.{cents % 100:02d}"


@lru_cache(maxsize=None)
def _day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


def timestamp(seconds: int) -> str:
    """Epoch seconds -> '2024-05-06 07:08:09+00' (what Postgres prints for timestamptz in UTC)."""
    day, rest = divmod(seconds, 86_400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{_day(day)} {hour:02d}:{minute:02d}:{second:02d}+00"


_FORMATS: dict[str, Callable] = {"id": str, "id_ref": str, "int": str, "smallint": str, "text": text,
                                 "longtext": text, "money": money, "timestamp": timestamp}
_PARSERS: dict[str, Callable] = {"id": int, "id_ref": int, "int": int, "smallint": int,
                                 "money": Decimal, "timestamp": datetime.fromisoformat}


def _formats(table: Table) -> list[Callable]:
    return [_FORMATS[column.kind] for column in table.columns]


def copy_line(table: Table, row: tuple) -> str:
    return _line(_formats(table), row)


def _line(formats: list[Callable], row: tuple) -> str:
    return "\t".join([NULL if value is None else fmt(value) for fmt, value in zip(formats, row)]) + "\n"


def copy_chunks(table: Table, rows: Iterable[tuple], counter: list[int] | None = None,
                rows_per_chunk: int = 20_000) -> Iterator[bytes]:
    """UTF-8 COPY text in chunks of `rows_per_chunk` rows; adds the rows seen to `counter[0]`."""
    formats, lines = _formats(table), []
    for row in rows:
        lines.append(_line(formats, row))
        if len(lines) >= rows_per_chunk:
            yield "".join(lines).encode("utf-8")
            if counter is not None:
                counter[0] += len(lines)
            lines = []
    if lines:
        yield "".join(lines).encode("utf-8")
        if counter is not None:
            counter[0] += len(lines)


class ChunkReader:
    """A read-only file-like over byte chunks, for `cursor.copy_expert` (which sends whatever read() returns).
    psycopg2 turns an exception raised by read() into a failed COPY (QueryCanceled, "error in .read() call"): the
    exception is kept in `error`, for the caller to raise instead (Ctrl-C, which generating the rows inside the COPY
    nearly always lands in, was reported as "Postgres refused the load", exit 1)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            return next(self._chunks, b"")
        except BaseException as error:
            self.error = error
            raise


def copy_sql(schema: str, table: Table) -> str:
    return f"COPY {schema}.{table.name} ({', '.join(table.column_names)}) FROM STDIN"


def to_python(table: Table, row: tuple) -> dict:
    """A raw row as {column: value} with Decimal money and aware datetimes, parsed back from its COPY text."""
    return {column.name: _decode(column.kind, value) for column, value in zip(table.columns, row)}


def _decode(kind: str, value):
    if value is None or kind not in _PARSERS:  # text is only escaped for COPY: the raw string is the value
        return value
    return _PARSERS[kind](_FORMATS[kind](value))
