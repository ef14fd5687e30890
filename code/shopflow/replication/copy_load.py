"""The fast write path: Spark tasks that pipe Postgres `COPY … TO STDOUT` into MySQL `LOAD DATA LOCAL INFILE`.

Each task copies its key ranges (one big range, or several small ones) one after the other, inside the run's
exported snapshot on one Postgres connection, through a FIFO (no file on disk, no row passes through Python objects)
into the staging table, or straight into an empty target table on a full load, on one MySQL connection. All ranges
of all tables are one Spark job, so the 3 executors stay busy and no table waits for another.

CSV on both sides (PG `FORMAT csv, NULL 'NULL'`; MySQL `ENCLOSED BY '"' ESCAPED BY ''`): no backslash escapes, whose
sets differ between the two servers (PG text COPY writes `\\f`, which LOAD DATA reads as `f`). A NULL is the bare
word NULL, a text value 'NULL' is quoted by PG and read back as text. LOAD DATA LOCAL turns every conversion problem
into a warning: a range with warnings (or a row count that differs) is reported, and the pipeline then loads that
table through the validating JDBC path instead, which names the offending rows. The reconcile checksum afterwards
proves what was stored either way.
"""
from __future__ import annotations

import math
import os
import tempfile
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg2.errors

from postgresdb.models import Table
from shopflow.config import Settings
from shopflow.db import mysql_connection, pg_connection

from .plan import TablePlan, changed_rows_filter, key_ranges
from .source import lock_timeout_ms
from .transform import replicated_columns

if TYPE_CHECKING:  # results imports this module
    from .results import TableResult

COPY_CHUNK = 1 << 20
WARNING_SAMPLE = 3
# A direct load of at least this many rows gets a Spark job of its own (see `big_direct_load`).
BIG_LOAD_ROWS = 100_000
# Ranges of fewer rows share tasks (about this many rows per task, at most one task per core): a tiny range costs
# more in task start than in copying.
SHARED_TASK_ROWS = 20_000


@dataclass(frozen=True)
class KeyRange:
    """[low, high) of the primary key of the table `plan` reads, loaded into `into` (stage or target)."""
    plan: TablePlan
    low: int
    high: int
    into: str
    direct: bool  # into the target itself: foreign keys are checked by the reconcile, not row by row
    rows: int  # expected rows (the plan's rows spread evenly over its ranges)


@dataclass(frozen=True)
class RangeResult:
    table: str
    copied: int  # rows COPY sent
    loaded: int  # rows LOAD DATA stored
    warnings: int
    sample: tuple[str, ...]  # the first warnings, for the log

    @property
    def clean(self) -> bool:
        return self.warnings == 0 and self.copied == self.loaded


def copy_sql(plan: TablePlan, schema: str, low: int, high: int) -> str:
    """COPY of one key range of the rows `plan` reads; timestamps as their UTC wall clock, which DATETIME(6) stores
    as is."""
    def expression(column) -> str:
        return f"({column.name} AT TIME ZONE 'UTC')" if column.kind == "timestamp" else column.name
    table = plan.table
    key, where = table.primary_key, changed_rows_filter(plan)
    bounds = f"{key} >= {int(low)} AND {key} < {int(high)}"
    where = f"{where} AND {bounds}" if where else f" WHERE {bounds}"
    select = ", ".join(expression(c) for c in replicated_columns(table))
    return f"COPY (SELECT {select} FROM {schema}.{table.name}{where}) TO STDOUT WITH (FORMAT csv, NULL 'NULL')"


def load_sql(table: Table, into: str, fifo: str) -> str:
    columns = ", ".join(f"`{c.name}`" for c in replicated_columns(table))
    return (f"LOAD DATA LOCAL INFILE '{fifo}' INTO TABLE `{into}` CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n' "
            f"({columns})")


def _copy_into(cursor, sql: str, fifo: str, outcome: dict) -> None:
    """Opens the FIFO first, so the loading side never waits for a writer that failed: an error closes the pipe
    early (LOAD DATA sees the end of its input) and is re-raised by the loading side."""
    try:
        with open(fifo, "w", encoding="utf-8") as out:
            cursor.copy_expert(sql, out, size=COPY_CHUNK)
            outcome["rows"] = cursor.rowcount
    except BaseException as error:
        outcome["error"] = error


def _release(fifo: str, writer: threading.Thread) -> None:
    """A writer still blocked opening the FIFO (LOAD DATA failed before reading it) gets a reader and ends."""
    if writer.is_alive():
        try:
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            pass
        writer.join(timeout=30)


def _copy_range(schema: str, source, target, key_range: KeyRange, fifo: str) -> RangeResult:
    """One range: `source` (a cursor in the run's snapshot) writes it into a FIFO that `target` loads."""
    table, outcome = key_range.plan.table, {}
    os.mkfifo(fifo)
    writer = threading.Thread(target=_copy_into, daemon=True,
                              args=(source, copy_sql(key_range.plan, schema, key_range.low, key_range.high), fifo,
                                    outcome))
    writer.start()
    try:
        target.execute(load_sql(table, key_range.into, fifo))
        loaded = target.rowcount
    finally:
        _release(fifo, writer)
    writer.join()
    if "error" in outcome:
        raise outcome["error"]
    target.execute("SHOW COUNT(*) WARNINGS")
    warnings = int(target.fetchone()[0])
    sample = ()
    if warnings:
        target.execute(f"SHOW WARNINGS LIMIT {WARNING_SAMPLE}")
        sample = tuple(f"{level} {code}: {message}" for level, code, message in target.fetchall())
    return RangeResult(table.name, int(outcome["rows"]), loaded, warnings, sample)


def copy_ranges(settings: Settings, snapshot_id: str, ranges: list[KeyRange]) -> list[RangeResult]:
    """Runs on an executor: its ranges one after the other, from one Postgres transaction in the run's snapshot into
    one MySQL connection; returns what each side counted per range."""
    with tempfile.TemporaryDirectory(prefix="shopflow-copy-") as workdir, \
            pg_connection(settings) as pg, pg.cursor() as source, \
            mysql_connection(settings, autocommit=True, allow_local_infile=True) as conn:
        source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        source.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_id,))
        source.execute("SET lock_timeout = %s", (f"{lock_timeout_ms(settings)}ms",))  # see lock_timeout_ms
        target, checked, results = conn.cursor(), True, []
        for number, key_range in enumerate(ranges):
            if key_range.direct == checked:  # InnoDB's bulk insert into an empty table (see the module docstring)
                checked = not key_range.direct
                target.execute(f"SET SESSION foreign_key_checks = {int(checked)}, unique_checks = {int(checked)}")
            try:
                results.append(_copy_range(settings.POSTGRES_SCHEMA, source, target, key_range,
                                           os.path.join(workdir, f"range-{number}.csv")))
            except psycopg2.errors.LockNotAvailable:
                waited = settings.REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS
                raise RuntimeError(
                    f"{key_range.plan.table.name}: the read waited {waited:g} s for the source table's lock "
                    "(REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS): a TRUNCATE, ALTER or VACUUM FULL waits behind this "
                    "run's snapshot. The run gives way to it; a retry goes on") from None
        return results


def plan_ranges(plan: TablePlan, rows: int, low: int, high: int, into: str, direct: bool) -> list[KeyRange]:
    """A direct load is one range: InnoDB's bulk insert holds the empty table until it commits, so a second range
    into it would only wait."""
    spans = [(low, high + 1)] if direct else key_ranges(rows, low, high)
    return [KeyRange(plan, a, b, into, direct, rows // len(spans)) for a, b in spans]


def tasks_of(ranges: list[KeyRange], slots: int, shared_below: int = SHARED_TASK_ROWS) -> list[list[KeyRange]]:
    """Biggest first: a range of `shared_below` rows or more is a task of its own; the smaller ones share tasks, as
    few as hold about `shared_below` rows each but at most `slots`, dealt out biggest first, each range to the task
    holding the fewest rows so far."""
    ordered = sorted(ranges, key=lambda r: r.rows, reverse=True)
    own = [[r] for r in ordered if r.rows >= shared_below]
    small = [r for r in ordered if r.rows < shared_below]
    count = max(1, min(slots, math.ceil(sum(r.rows for r in small) / shared_below)))
    shared: list[list[KeyRange]] = []
    for key_range in small:
        if len(shared) < count:
            shared.append([key_range])
        else:
            min(shared, key=lambda task: sum(r.rows for r in task)).append(key_range)
    return own + shared


def load_ranges(spark, settings: Settings, snapshot_id: str, ranges: list[KeyRange]) -> list[RangeResult]:
    """All ranges as one Spark job, biggest first (see `tasks_of`; a task copies its ranges one after the other)."""
    if not ranges:
        return []
    tasks = tasks_of(ranges, spark.sparkContext.defaultParallelism)
    spark.sparkContext.setJobDescription(f"replication: COPY -> LOAD DATA, {len(ranges)} key ranges in "
                                         f"{len(tasks)} tasks")
    return (spark.sparkContext.parallelize(tasks, len(tasks))
            .flatMap(lambda task: copy_ranges(settings, snapshot_id, task)).collect())


def big_direct_load(results: list[TableResult]) -> TableResult | None:
    """The largest table loaded straight into its empty target, if big and other tables load too: it gets a Spark
    job of its own, and the others are reconciled while it still loads (its single bulk-insert range leaves a core
    idle most of that time)."""
    loading = [r for r in results if r.stats.rows]
    direct = [r for r in loading if r.direct and r.stats.rows >= BIG_LOAD_ROWS]
    return max(direct, key=lambda r: r.stats.rows) if direct and len(loading) > 1 else None
