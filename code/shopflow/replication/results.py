"""The per-table record of a replication run: its plan, what it read and wrote, and its `pipeline_runs` row."""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone

from shopflow.db import LockBusy
from shopflow.runlog import RunRecord

from . import copy_load
from .checksum import Checksum
from .plan import TablePlan, TableState
from .source import RowStats

JOB = "replicate_postgres_to_mysql"


class ReplicationError(RuntimeError):
    """The run must fail: a row the replica would reject, lost rows, or a reconcile mismatch."""


class ReplicaBusy(ReplicationError, LockBusy):
    """Another run held the replica's lock for longer than the wait (retried: it ends)."""


class ReplicationRefused(ReplicationError):
    """The run must fail and a retry would fail the same way until someone changes the source, the replica or a
    setting: tables that differ from the models, rows the replica would reject, local_infile off."""


def schema_drift(source_schema: str, source_lacking: dict[str, list[str]], replica_database: str,
                 replica_lacking: dict[str, list[str]], source_retyped: dict[str, list[str]] | None = None,
                 replica_retyped: dict[str, list[str]] | None = None) -> str:
    """What a run that found tables lacking the models' columns, or columns of another type, says; empty when none
    does."""
    found = [f"{where}.{table} has no column {', '.join(columns)}"
             for where, lacking in ((source_schema, source_lacking), (replica_database, replica_lacking))
             for table, columns in lacking.items()]
    found += [f"{where}.{table}.{what}"
              for where, retyped in ((source_schema, source_retyped or {}), (replica_database, replica_retyped or {}))
              for table, whats in retyped.items() for what in whats]
    if not found:
        return ""
    return (f"the tables differ from postgresdb/models.py, nothing replicated: {'; '.join(found)}. "
            "Make the column(s) what the model defines, or change the model and both tables together. A "
            "replica table is loaded in full by the first run after its columns are back, or after it was dropped "
            "(the run makes it again).")


def tracking_off(source_schema: str, untracked: dict[str, list[str]]) -> str:
    """What a run that found change-tracking triggers missing or off says; empty when none is."""
    if not untracked:
        return ""
    found = "; ".join(f"{source_schema}.{table}: {', '.join(names)}" for table, names in untracked.items())
    return (f"change tracking is off in the source, nothing replicated: triggers missing or not enabled ALWAYS "
            f"({found}). The changes made meanwhile were not tracked. `make up` (or `python -m shopflow.stack ensure "
            "postgres`) creates them and enables them again; the next run then loads these tables in full.")


def summarize(run: RunRecord, results: list[TableResult], xmin: int) -> None:
    """The whole run's row: what its tables read, wrote and deleted."""
    run.rows_read = sum(r.rows_read for r in results)
    run.rows_written = sum(r.rows_written for r in results)
    run.rows_deleted = sum(r.deleted for r in results)
    run.detail = f"snapshot xmin {xmin}; " + "; ".join(
        f"{r.name} {r.plan.mode} read {r.rows_read} written {r.rows_written} deleted {r.deleted}" for r in results)


def run_mode(results: list[TableResult]) -> str:
    modes = {r.plan.mode for r in results}
    return modes.pop() if len(modes) == 1 else "mixed"


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass
class TableResult:
    plan: TablePlan
    source_oid: int
    started_at: datetime = field(default_factory=utc_now)
    seconds: float = 0.0
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    deleted: int = 0
    rejected: int = 0
    checksum: Checksum | None = None
    stats: RowStats | None = None
    direct: bool = False  # the copy path loaded an empty target itself (no stage, no merge, nothing to delete)
    loads: list[copy_load.RangeResult] = field(default_factory=list)
    state: TableState | None = None
    verify_all: bool = True  # hash whole tables (else only the rows this run touches; see reconcile.py)
    deleted_keys: list[int] | None = None
    source_checksum: Checksum | None = None  # the whole source table's, when hashed ahead (see pipeline.py)
    source_side: Future | None = None  # (changed rows' checksum, row count) in the snapshot (reconcile.ReadAhead)
    replica_rows: Future | None = None  # the replica's row count before the run changed it (reconcile.ReadAhead)
    reconciled: bool = False  # phase B done and committed (early for a table loaded while a bigger one still loads)

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
                + (f"; checksum {self.checksum} of the {'whole table' if self.verify_all else 'changed rows'} equal "
                   "on both sides" if self.checksum else ""))

    def run_record(self, status: str, detail: str | None = None) -> RunRecord:
        return RunRecord(job=JOB, table_name=self.name, mode=self.plan.mode, started_at=self.started_at,
                         finished_at=utc_now(), seconds=round(self.seconds, 3), rows_read=self.rows_read,
                         rows_written=self.rows_written, rows_deleted=self.deleted, rows_rejected=self.rejected,
                         checksum=str(self.checksum) if self.checksum else None, status=status,
                         detail=detail or self.summary())
