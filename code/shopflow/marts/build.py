"""One marts run: read the replica once, build every mart into its staging table, gate each one, then publish all
of them with one RENAME (or none: a failed gate fails the run and the published marts stay as they were)."""
from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.sql import Observation
from pyspark.sql import functions as F

from shopflow.config import Settings
from shopflow.db import mysql_connection
from shopflow.quality import Check, CheckResult, QualityGateError, record_results, run_checks, sources
from shopflow.quality.rules import TABLE
from shopflow.runlog import RunRecord, record_run_or_warn, tracked_run

from . import replica
from .registry import all_marts, replica_columns
from .spec import Mart
from .store import MartStore, staging_name

JOB = "build_marts"
MART_THREADS = 3  # marts staged at once: their Spark jobs share the executors, their MySQL work overlaps
log = logging.getLogger("shopflow.marts")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_run_id() -> str:
    # not `manual__`, the prefix of an Airflow run triggered by hand: a build run without Airflow
    return f"by_hand__{_now():%Y-%m-%dT%H:%M:%S}_{uuid.uuid4().hex[:6]}"


@dataclass
class MartResult:
    mart: Mart
    started_at: datetime = field(default_factory=_now)
    seconds: float = 0.0
    rows: int = 0
    checks: list[CheckResult] = field(default_factory=list)
    error: BaseException | None = None  # its staging or checks failed: nothing of it is recorded but this

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def run_record(self, run_id: str, not_published: str | None = None) -> RunRecord:
        """`not_published`: why the run published nothing (this mart's gate, another's, or the publish itself)."""
        if self.error is not None:
            detail = f"run {run_id}: not staged: {type(self.error).__name__}: {self.error}"
        else:
            detail = (f"run {run_id}: {len(self.checks) - len(self.failures)}/{len(self.checks)} checks passed"
                      + "".join(f"; {c}" for c in self.failures)
                      + (f"; not published ({not_published}), {self.rows} rows staged" if not_published else ""))
        return RunRecord(job=JOB, table_name=self.mart.name, mode="rebuild", started_at=self.started_at,
                         finished_at=_now(), seconds=round(self.seconds, 3),
                         rows_written=0 if not_published else self.rows,
                         status="failed" if not_published else "ok", detail=detail)


def staged_rows(rows: int) -> Check:
    """Every row Spark built reached the staging table."""
    return Check("staged_rows = built_rows", f"SELECT COUNT(*) FROM {TABLE}", rows)


def _stage_and_check(store: MartStore, mart: Mart, frames, expected) -> MartResult:
    """Build the mart into its staging table and check it there. The rows Spark built are counted as the write
    passes them (an observation), not by a second action over a cached copy."""
    result, start = MartResult(mart), time.monotonic()
    built = Observation(f"{mart.name}_built")
    frame = mart.build_from(frames).observe(built, F.count(F.lit(1)).alias("rows"))
    store.create_staging(mart)
    store.write_staging(frame, mart)
    result.rows = built.get["rows"]
    checks = mart.checks + (staged_rows(result.rows),)
    result.checks = run_checks(store.cur, mart.name, staging_name(mart), checks, expected)
    result.seconds = time.monotonic() - start
    log.info("%s: %d rows staged in %.1f s, %d/%d checks passed", mart.name, result.rows, result.seconds,
             len(result.checks) - len(result.failures), len(result.checks))
    return result


def _build_all(spark, settings: Settings, store: MartStore, marts: tuple[Mart, ...]) -> tuple[int, list[MartResult]]:
    """(rows read from the replica, one result per mart staged and checked)."""
    start = time.monotonic()
    frames, expected = replica.read_replica(spark, settings, store.cur, replica_columns(marts),
                                            sources(c for m in marts for c in m.checks))
    try:
        rows_read = sum(expected[replica.row_count(table)] for table in frames)
        log.info("replica read: %d rows of %s in %.1f s (with the expected values of the checks)", rows_read,
                 ", ".join(frames), time.monotonic() - start)
        return rows_read, _stage_all(settings, marts, frames, expected)
    finally:
        replica.release(frames)


def _stage_all(settings: Settings, marts: tuple[Mart, ...], frames, expected) -> list[MartResult]:
    """The marts are independent once the replica is cached: each is built, staged and checked in its own thread
    with its own MySQL connection (the build lock stays with the run's connection); results in registry order. A
    mart whose staging fails carries its error: the others still finish, and their gate results are recorded."""
    def stage(mart: Mart) -> MartResult:
        try:
            with mysql_connection(settings, autocommit=True) as conn:
                return _stage_and_check(MartStore(settings, conn.cursor()), mart, frames, expected)
        except Exception as error:
            log.error("%s: not staged: %s: %s", mart.name, type(error).__name__, error)
            return MartResult(mart, error=error)

    with ThreadPoolExecutor(max_workers=MART_THREADS) as pool:
        return list(pool.map(stage, marts))


def _not_published(error: BaseException, failures: list[CheckResult], unstaged: list[MartResult]) -> str:
    if unstaged:
        return f"{', '.join(r.mart.name for r in unstaged)} not staged: {type(unstaged[0].error).__name__}"
    if failures:
        return f"the quality gate failed for {len({c.mart for c in failures})} mart(s)"
    return type(error).__name__


def build_marts(spark, settings: Settings, run_id: str | None = None,
                marts: tuple[Mart, ...] | None = None) -> list[MartResult]:
    """Build, gate and publish `marts` (default: every registered mart); raises QualityGateError when a rule
    fails (the results are in `quality_results` either way)."""
    marts, run_id = marts or all_marts(), run_id or new_run_id()
    with tracked_run(settings, JOB, mode="rebuild") as run, mysql_connection(settings, autocommit=True) as conn:
        run.detail = f"run {run_id}"
        store = MartStore(settings, conn.cursor())
        store.lock()
        run.rows_read, results = _build_all(spark, settings, store, marts)
        record_results(store.cur, run_id, [c for r in results for c in r.checks])
        failures = [c for r in results for c in r.failures]
        unstaged = [r for r in results if r.error is not None]
        try:
            if unstaged:  # the first one's error is the run's (its exit code: a server down is retried)
                raise unstaged[0].error
            if failures:
                raise QualityGateError(failures)
            store.publish(marts)
        except BaseException as error:  # each mart's row says it was not published, and why
            reason = _not_published(error, failures, unstaged)
            for result in results:  # the error raised stays the run's (a gate's exit 3), not a failed row write
                record_run_or_warn(settings, result.run_record(run_id, reason), what=result.mart.name)
            raise
        for result in results:  # published: a per-mart row that cannot be written must not fail the build
            record_run_or_warn(settings, result.run_record(run_id), what=result.mart.name)
        run.rows_written = sum(r.rows for r in results)
        run.detail = f"run {run_id}: published " + ", ".join(f"{r.mart.name} ({r.rows} rows)" for r in results)
    log.info("%s", run.detail)
    return results
