"""Pure decisions of a replication run: full or incremental per table, the read query, read partitions."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator, Sequence

from postgresdb.models import CHANGE_TXID, Table

from .checksum import Checksum
from .transform import DATETIME_INFINITY_US, DATETIME_MIN_US, replicated_columns

FULL, INCREMENTAL = "full", "incremental"
ROWS_PER_PARTITION = 50_000
MAX_PARTITIONS = 32
FETCH_SIZE = 10_000


@dataclass(frozen=True)
class TableState:
    """One row of `replication_state` in the replica: what the last committed load of a table was based on."""
    table_name: str
    source_oid: int | None
    watermark: int | None  # snapshot xmin of the last committed load; None forces a full reload
    checksum: Checksum | None = None  # of the whole replica table, taken at verified_at
    verified_at: datetime | None = None  # when both whole tables were last hashed and found equal
    source_system_id: int | None = None  # the source cluster's system identifier (None: stored by an older version)
    source_timeline: int | None = None  # the source cluster's WAL timeline (None: unknown, or an older version)


@dataclass(frozen=True)
class TablePlan:
    table: Table
    mode: str
    since: int | None  # read rows with change_txid >= since; None reads every row
    reason: str


def plan_table(table: Table, state: TableState | None, source_oid: int, snapshot_xmax: int,
               truncated_since: bool, force_full: bool = False, pruned_below: int = 0,
               source_system_id: int | None = None, source_timeline: int | None = None) -> TablePlan:
    """Incremental from the stored watermark unless something makes the stored state untrustworthy.
    `pruned_below`: the source's tombstones below it may be gone (`tombstones.py`). `source_system_id`: the source
    cluster's (`pg_control_system()`); a cluster made again by initdb gives its tables the same OIDs, and its
    transaction ids may pass the stored watermark before the next run, so the OID and the watermark alone can miss
    it. `source_timeline`: its WAL timeline, which a restore to a point in time and a promoted standby change while
    keeping the system identifier and the OIDs: their transaction ids after the restore point are used again, so
    rows changed since then may carry ids below the stored watermark."""
    def full(reason: str) -> TablePlan:
        return TablePlan(table, FULL, None, reason)

    if force_full:
        return full("full reload requested")
    if state is None or state.watermark is None:
        return full("no watermark (first run, replica table made again, or marked for reload)")
    if None not in (state.source_system_id, source_system_id) and state.source_system_id != source_system_id:
        return full(f"the source is another Postgres cluster (system identifier {state.source_system_id} -> "
                    f"{source_system_id}): made again or restored")
    if None not in (state.source_timeline, source_timeline) and state.source_timeline != source_timeline:
        return full(f"the source's timeline changed ({state.source_timeline} -> {source_timeline}): restored to a "
                    "point in time, or a standby promoted; transaction ids since its restore point are used again")
    if state.source_oid != source_oid:
        return full(f"source table was recreated (oid {state.source_oid} -> {source_oid})")
    if state.watermark > snapshot_xmax:
        return full(f"watermark {state.watermark} is ahead of the source ({snapshot_xmax}): source was replaced")
    if state.watermark < pruned_below:
        return full(f"tombstones since the watermark {state.watermark} were pruned (up to {pruned_below}): deletes "
                    "may be missing")
    if truncated_since:
        return full("source table was truncated since the watermark")
    return TablePlan(table, INCREMENTAL, state.watermark, f"changes with {CHANGE_TXID} >= {state.watermark}")


def needs_full_verification(plan: TablePlan, state: TableState | None, now: datetime, every_hours: float) -> bool:
    """Whole tables are hashed on a full load, when nothing trustworthy is stored, and every `every_hours`
    (0: every run); otherwise an incremental run hashes only the rows it touched (README, "Reconcile")."""
    if plan.mode == FULL or state is None or state.checksum is None or state.verified_at is None:
        return True
    return every_hours == 0 or (now - state.verified_at).total_seconds() >= every_hours * 3600


def changed_rows_filter(plan: TablePlan) -> str:
    return "" if plan.since is None else f" WHERE {CHANGE_TXID} >= {int(plan.since)}"


def read_query(plan: TablePlan, schema: str) -> str:
    """The rows this run replicates (a subquery usable as Spark's JDBC `dbtable`). Timestamps as epoch microseconds
    (`source.read` makes them timestamps again): read as such, JDBC takes them through Java's Julian-Gregorian
    calendar, where 1582-10-05 to 1582-10-14 do not exist and became ten days later in the replica."""
    columns = ", ".join(_micros(c.name) if c.kind == "timestamp" else c.name for c in replicated_columns(plan.table))
    return f"(SELECT {columns} FROM {schema}.{plan.table.name}{changed_rows_filter(plan)}) AS changed_rows"


def _micros(column: str) -> str:
    """±infinity and years from 100000 on (from before the source refused them; near the largest, 294276, the
    microseconds overflow a bigint) as values outside DATETIME, which the run rejects by name, as it did when the
    JDBC driver read 'infinity' as 9999-12-31 23:59:59.999."""
    return (f"CASE WHEN {column} >= timestamptz '100000-01-01 00:00:00+00' THEN {DATETIME_INFINITY_US} "
            f"WHEN {column} = '-infinity' THEN {DATETIME_MIN_US - 1} "
            f"ELSE (extract(epoch FROM {column}) * 1000000)::bigint END AS {column}")


def partition_count(rows: int, rows_per_partition: int = ROWS_PER_PARTITION, maximum: int = MAX_PARTITIONS) -> int:
    """Enough partitions that none holds more than `rows_per_partition` rows (up to `maximum`)."""
    return max(1, min(maximum, math.ceil(rows / rows_per_partition)))


def chunks(values: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


ROWS_PER_RANGE = 200_000


def key_ranges(rows: int, low: int, high: int, rows_per_range: int = ROWS_PER_RANGE) -> list[tuple[int, int]]:
    """[start, end) spans of the key covering low..high inclusive, about `rows_per_range` rows each (keys are
    assumed evenly spread, as sequences make them); never more spans than keys."""
    count = min(MAX_PARTITIONS, max(1, math.ceil(rows / rows_per_range)), high - low + 1)
    step = math.ceil((high + 1 - low) / count)
    return [(start, min(high + 1, start + step)) for start in range(low, high + 1, step)]
