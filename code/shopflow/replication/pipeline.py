"""One replication run: plan each table, extract + upsert in FK order, then deletes + reconcile + watermark in
reverse FK order (children before parents, so neither phase ever breaks a foreign key). See README.md."""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import functions as F

from postgresdb.models import TABLES
from shopflow.config import Settings
from shopflow.db import mysql_connection
from shopflow.runlog import RunRecord, record_run, tracked_run

from .checksum import Checksum
from .mysql_sql import REJECTS_TABLE
from .plan import FULL, TablePlan, plan_table
from .source import SourceSnapshot, open_snapshot
from .target import Replica
from .transform import REJECT_REASON, accepted_rows, rejected_rows, to_mysql_types, with_reject_reason

JOB = "replicate_postgres_to_mysql"
REJECT_SAMPLE = 1_000
log = logging.getLogger("shopflow.replication")


class ReplicationError(RuntimeError):
    """The run must fail: a row the replica would reject, lost rows, or a reconcile mismatch."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass
class TableResult:
    plan: TablePlan
    source_oid: int
    started_at: datetime = field(default_factory=_now)
    seconds: float = 0.0
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    deleted: int = 0
    rejected: int = 0
    checksum: Checksum | None = None

    @property
    def name(self) -> str:
        return self.plan.table.name

    @property
    def rows_written(self) -> int:
        return self.inserted + self.updated

    def summary(self) -> str:
        return (f"{self.name} {self.plan.mode} ({self.plan.reason}): read {self.rows_read}, inserted "
                f"{self.inserted}, updated {self.updated}, unchanged {self.unchanged}, deleted {self.deleted}"
                + (f" (moved for a unique value {self.moved})" if self.moved else "")
                + (f"; checksum {self.checksum} equal on both sides" if self.checksum else ""))

    def run_record(self, status: str, detail: str | None = None) -> RunRecord:
        return RunRecord(job=JOB, table_name=self.name, mode=self.plan.mode, started_at=self.started_at,
                         finished_at=_now(), seconds=round(self.seconds, 3), rows_read=self.rows_read,
                         rows_written=self.rows_written, rows_deleted=self.deleted, rows_rejected=self.rejected,
                         checksum=str(self.checksum) if self.checksum else None, status=status,
                         detail=(detail or self.summary())[:2000])


def _plan(source: SourceSnapshot, replica: Replica, force_full: bool) -> list[TableResult]:
    states, results = replica.states(), []
    for table in TABLES:
        state, oid = states.get(table.name), source.table_oid(table)
        truncated = source.truncated_since(table, state.watermark if state else None)
        results.append(TableResult(plan_table(table, state, oid, source.xmax, truncated, force_full), oid))
    return results


def _reject(replica: Replica, result: TableResult, checked) -> None:
    table = result.plan.table
    sample = [(r.row_key, r.reason) for r in rejected_rows(checked, table).limit(REJECT_SAMPLE).collect()]
    replica.record_rejects(table, sample)
    examples = "; ".join(f"key {key}: {reason}" for key, reason in sample[:5])
    raise ReplicationError(f"{table.name}: {result.rejected} row(s) the replica would reject, nothing of this table "
                           f"loaded (first {len(sample)} in {REJECTS_TABLE}): {examples}")


def _extract_and_upsert(spark, source: SourceSnapshot, replica: Replica, result: TableResult) -> None:
    table = result.plan.table
    result.started_at = _now()
    replica.truncate_stage(table)
    stats = source.row_stats(result.plan)
    if not stats.rows:
        return
    checked = with_reject_reason(source.read(spark, result.plan, stats), table).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        result.rows_read, result.rejected = checked.agg(F.count(F.lit(1)), F.count(REJECT_REASON)).first()
        if result.rows_read != stats.rows:
            raise ReplicationError(f"{table.name}: read {result.rows_read} rows, the snapshot holds {stats.rows}")
        if result.rejected:
            _reject(replica, result, checked)
        replica.write_stage(to_mysql_types(accepted_rows(checked), table), table)
    finally:
        checked.unpersist()
    staged = replica.stage_rows(table)
    if staged != result.rows_read:
        raise ReplicationError(f"{table.name}: staged {staged} rows of {result.rows_read} read")
    counts = replica.upsert(table, staged)
    result.inserted, result.updated, result.unchanged = counts.inserted, counts.updated, counts.unchanged
    result.deleted, result.moved = counts.deleted, counts.moved


def _delete_and_reconcile(source: SourceSnapshot, replica: Replica, result: TableResult) -> None:
    """Deletes, reconcile and the new watermark commit together, or not at all."""
    plan, table = result.plan, result.plan.table
    if plan.mode == FULL:
        result.deleted += replica.delete_missing(table)
    else:
        result.deleted += replica.delete_keys(table, source.deleted_keys(plan))
    with ThreadPoolExecutor(max_workers=1) as pool:  # the two databases hash at the same time
        source_side = pool.submit(source.checksum, table)
        actual = replica.checksum(table)
        expected = source_side.result()
    if expected != actual:
        replica.rollback()
        replica.save_state(table, result.source_oid, None, None)  # the next run reloads this table in full
        replica.commit()
        raise ReplicationError(f"reconcile failed for {table.name}: {expected.difference(actual)} "
                               "(marked for a full reload on the next run)")
    result.checksum = expected
    replica.save_state(table, result.source_oid, source.xmin, expected)
    replica.commit()


def _timed(settings: Settings, result: TableResult, step: Callable[[], None]) -> None:
    start = time.monotonic()
    try:
        step()
    except BaseException as error:
        result.seconds += time.monotonic() - start
        record_run(settings, result.run_record("failed", f"{type(error).__name__}: {error}"))
        raise
    result.seconds += time.monotonic() - start


def _run_mode(results: list[TableResult]) -> str:
    modes = {r.plan.mode for r in results}
    return modes.pop() if len(modes) == 1 else "mixed"


def replicate(spark, settings: Settings, force_full: bool = False,
              on_step: Callable[[str, str], None] | None = None) -> dict[str, TableResult]:
    """Make the replica equal to one snapshot of the source; `on_step(phase, table)` runs after each table's
    commit in phase "upsert" and "reconcile" (tests use it to interrupt a run)."""
    step_done = on_step or (lambda phase, table: None)
    with tracked_run(settings, JOB) as run, ExitStack() as stack:
        replica = Replica(settings, stack.enter_context(mysql_connection(settings)))
        replica.lock()  # before the snapshot: a waiting run must not hold an older snapshot than the one ahead
        replica.ensure_tables()
        source = stack.enter_context(open_snapshot(settings))
        results = _plan(source, replica, force_full)
        run.mode = _run_mode(results)
        for result in results:
            _timed(settings, result, lambda: _extract_and_upsert(spark, source, replica, result))
            step_done("upsert", result.name)
        for result in reversed(results):
            _timed(settings, result, lambda: _delete_and_reconcile(source, replica, result))
            record_run(settings, result.run_record("ok"))
            log.info("%s", result.summary())
            step_done("reconcile", result.name)
        run.rows_read = sum(r.rows_read for r in results)
        run.rows_written = sum(r.rows_written for r in results)
        run.rows_deleted = sum(r.deleted for r in results)
        run.detail = f"snapshot xmin {source.xmin}; " + "; ".join(
            f"{r.name} {r.plan.mode} read {r.rows_read} written {r.rows_written} deleted {r.deleted}" for r in results)
    return {r.name: r for r in results}
