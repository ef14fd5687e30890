"""One replication run: plan each table, extract + upsert in FK order, then deletes + reconcile + watermark in
reverse FK order (children before parents, so neither phase ever breaks a foreign key). See README.md."""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import functions as F

from postgresdb.models import TABLES, TABLES_BY_NAME
from shopflow.config import Settings
from shopflow.db import mysql_connection
from shopflow.runlog import NOT_STARTED, record_run, record_run_or_warn, tracked_run

from . import copy_load, parents, reconcile, source_checks, tombstones
from .mysql_sql import REJECTS_TABLE, stage_name
from .plan import FULL, needs_full_verification, plan_table
from .results import (JOB, ReplicationError, ReplicationRefused, TableResult, run_mode, schema_drift, summarize,
                      tracking_off, utc_now)
from .source import SourceSnapshot, open_snapshot
from .target import Replica
from .transform import REJECT_REASON, accepted_rows, rejected_rows, to_mysql_types, with_reject_reason

REJECT_SAMPLE = 1_000
log = logging.getLogger("shopflow.replication")


def _plan(settings: Settings, source: SourceSnapshot, replica: Replica, replica_drift: tuple[dict, dict],
          force_full: bool) -> list[TableResult]:
    (replica_lacking, replica_retyped), states, results, now = replica_drift, replica.states(), [], utc_now()
    replica.source_system_id, replica.source_timeline = source.system_id, source.timeline  # stored with each state
    oids, pruned_below = {table.name: source.table_oid(table) for table in TABLES}, source.pruned_below()
    found, untracked = source_checks.inspect(source, oids)
    source_lacking, retyped = source_checks.differences(found, TABLES, oids)
    drift = schema_drift(source.schema, source_lacking, settings.MYSQL_DATABASE, replica_lacking, retyped,
                         replica_retyped)
    if refused := drift or tracking_off(source.schema, untracked):
        # a full reload once the column, its type or the tracking is back: the replica lacks values, or changes went
        # untracked (an ALTER … TYPE rewrites the rows without their triggers: a rounded value keeps its change_txid;
        # a column dropped and added again comes back with other values, its rows' change_txid unchanged)
        for name in {**replica_lacking, **untracked, **retyped, **replica_retyped, **source_lacking}:
            replica.save_state(TABLES_BY_NAME[name], oids[name], None)
        replica.commit()
        raise ReplicationRefused(refused)
    for table in TABLES:
        state, oid = states.get(table.name), oids[table.name]
        truncated = source.truncated_since(table, state.watermark if state else None)
        plan = plan_table(table, state, oid, source.xmax, truncated, force_full, pruned_below.get(table.name, 0),
                          source.system_id, source.timeline)
        verify_all = needs_full_verification(plan, state, now, settings.REPLICATION_VERIFY_ALL_HOURS)
        results.append(TableResult(plan, oid, state=state, verify_all=verify_all))
    return results


def _reject(replica: Replica, result: TableResult, checked) -> None:
    table = result.plan.table
    sample = [(r.row_key, r.reason) for r in rejected_rows(checked, table).limit(REJECT_SAMPLE).collect()]
    replica.record_rejects(table, sample)
    examples = "; ".join(f"key {key}: {reason}" for key, reason in sample[:5])
    raise ReplicationRefused(f"{table.name}: {result.rejected} row(s) the replica would reject, nothing of this "
                             f"table loaded (first {len(sample)} in {REJECTS_TABLE}): {examples}")


def _extract_and_upsert(spark, source: SourceSnapshot, replica: Replica, result: TableResult) -> None:
    """The validating JDBC path: read, check every value against its MySQL column, stage, merge."""
    table = result.plan.table
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
    _merge_stage(replica, result)


def _merge_stage(replica: Replica, result: TableResult) -> None:
    table = result.plan.table
    staged = replica.stage_rows(table)
    if staged != result.rows_read:
        raise ReplicationError(f"{table.name}: staged {staged} rows of {result.rows_read} read")
    reconcile.counted_before_changes(result)
    counts = parents.upserted(replica, table, staged)
    result.inserted, result.updated, result.unchanged = counts.inserted, counts.updated, counts.unchanged
    result.moved = counts.moved


def _copy_all(spark, settings: Settings, source: SourceSnapshot, replica: Replica, results: list[TableResult],
              while_big_loads: Callable[[TableResult], None]) -> float:
    """The copy path's load of every table (one Spark job, or two: see `copy_load.big_direct_load`);
    `while_big_loads` runs once everything but the big table is loaded. Returns the seconds until every table was
    loaded."""
    ranges: dict[str, list[copy_load.KeyRange]] = {}
    for result in results:
        table, result.started_at = result.plan.table, utc_now()
        replica.truncate_stage(table)
        result.stats = stats = source.row_stats(result.plan)
        ranges[result.name] = []
        if stats.rows:
            result.direct = result.plan.mode == FULL and replica.is_empty(table)
            into = table.name if result.direct else stage_name(table)
            ranges[result.name] = copy_load.plan_ranges(result.plan, stats.rows, stats.min_key, stats.max_key, into,
                                                        result.direct)
    big = copy_load.big_direct_load(results)
    by_table = {r.name: r for r in results}

    def load(names: list[str]) -> None:
        todo = [key_range for name in names for key_range in ranges[name]]
        for outcome in copy_load.load_ranges(spark, settings, source.snapshot_id, todo):
            by_table[outcome.table].loads.append(outcome)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-big") as pool:
        big_job = pool.submit(load, [big.name]) if big else None
        load([r.name for r in results if r is not big])
        if big_job:
            while_big_loads(big)
            big_job.result()
    return time.monotonic() - start


def _copied_cleanly(result: TableResult) -> bool:
    """Every row of the snapshot copied, every range without warnings and loaded as copied."""
    return sum(r.copied for r in result.loads) == result.stats.rows and all(r.clean for r in result.loads)


def _apply_copied(spark, source: SourceSnapshot, replica: Replica, result: TableResult) -> None:
    """Merge what the copy path staged; a table whose load was not clean goes through the validating path."""
    table, loads = result.plan.table, result.loads
    copied, loaded = sum(r.copied for r in loads), sum(r.loaded for r in loads)
    if result.stats.rows and not _copied_cleanly(result):
        samples = "; ".join(w for r in loads for w in r.sample)[:500]
        log.warning("%s: copy path not clean (copied %d, loaded %d of %d rows; %s): loading it through the "
                    "validating JDBC path", table.name, copied, loaded, result.stats.rows, samples or "no warnings")
        if result.direct:
            replica.clear(table)
            result.direct = False
        _extract_and_upsert(spark, source, replica, result)
    elif result.direct:
        result.rows_read = result.inserted = loaded
    elif copied:
        result.rows_read = copied
        _merge_stage(replica, result)


def _timed(settings: Settings, result: TableResult, step: Callable[[], None]) -> None:
    start = time.monotonic()
    try:
        step()
    except BaseException as error:
        result.seconds += time.monotonic() - start
        record_run_or_warn(settings, result.run_record("failed", f"{type(error).__name__}: {error}"))
        raise
    result.seconds += time.monotonic() - start


def _reconcile(settings: Settings, source: SourceSnapshot, replica: Replica, result: TableResult,
               step_done: Callable[[str, str], None]) -> None:
    _timed(settings, result, lambda: reconcile.delete_and_reconcile(source, replica, result))
    result.reconciled = True
    record_run(settings, result.run_record("ok"))
    log.info("%s", result.summary())
    step_done("reconcile", result.name)


def _finish_early(spark, settings: Settings, source: SourceSnapshot, replica: Replica, results: list[TableResult],
                  big: TableResult, step_done: Callable[[str, str], None]) -> None:
    """While the big table still loads: the tables loaded straight into their empty targets, cleanly, and whose
    parents are all finished too (FK order) are reconciled and committed now. They are equal to the snapshot with
    all their parents, so a later failure of the big table leaves them consistent (they have no deletes, so the
    reverse FK order of phase B does not concern them). Then the big table's checksum in the snapshot: its
    reconcile only has the replica side left to hash."""
    finished: set[str] = set()
    for result in results:
        if result is big or not result.stats.rows:
            continue
        parents = result.plan.table.parents - {result.name}
        if not (result.direct and _copied_cleanly(result) and parents <= finished):
            continue
        _timed(settings, result, lambda: _apply_copied(spark, source, replica, result))
        step_done("upsert", result.name)
        _reconcile(settings, source, replica, result, step_done)
        finished.add(result.name)
    if big.verify_all:  # the snapshot side of the big table's reconcile, while its load still runs
        _timed(settings, big, lambda: setattr(big, "source_checksum", source.checksum(big.plan.table)))


def _upsert_all(spark, settings: Settings, source: SourceSnapshot, replica: Replica, results: list[TableResult],
                ahead: reconcile.ReadAhead, step_done: Callable[[str, str], None]) -> None:
    """Phase A in FK order. A failure empties the tables the copy path loaded directly and not reconciled yet (empty
    before, filled without row-by-row FK checks): a failed first run leaves no orphan rows. One stopped by a signal
    ends at once (jobs/db_exit): its rows stay until the next run reconciles them (marts refuse the replica then)."""
    copy = settings.REPLICATION_WRITE_PATH == "copy"
    try:
        if copy:
            seconds = _copy_all(spark, settings, source, replica, results,
                                lambda big: _finish_early(spark, settings, source, replica, results, big, step_done))
            log.info("copy path: all tables loaded in %.1f s", seconds)
        ahead.read_source()
        for result in (r for r in results if not r.reconciled):
            apply = _apply_copied if copy else _extract_and_upsert
            if not copy:
                result.started_at = utc_now()
            _timed(settings, result, lambda: apply(spark, source, replica, result))
            step_done("upsert", result.name)
    except BaseException:
        for result in reversed([r for r in results if r.direct and not r.reconciled]):
            replica.clear(result.plan.table)
        raise


def replicate(spark, settings: Settings, force_full: bool = False,
              on_step: Callable[[str, str], None] | None = None) -> dict[str, TableResult]:
    """Make the replica equal to one snapshot of the source; `on_step(phase, table)` runs after each table's
    commit in phase "upsert" and "reconcile" (tests use it to interrupt a run)."""
    step_done = on_step or (lambda phase, table: None)
    # the lock's connection outlives the run's row: a marts build waiting for the lock reads how this run ended
    with mysql_connection(settings) as conn, tracked_run(settings, JOB, mode=NOT_STARTED) as run, \
            ExitStack() as stack:
        replica = Replica(settings, conn)
        replica.lock()  # before the snapshot: a waiting run must not hold an older snapshot than the one ahead
        if settings.REPLICATION_WRITE_PATH == "copy":
            replica.check_local_infile()
        replica_lacking, made, replica_retyped = replica.ensure_tables()
        if made:  # replica tables made again, empty: the replica changed already, so its row is running from here
            run.mode = None
            replica.record_started(run)
        source = stack.enter_context(open_snapshot(settings))
        results = _plan(settings, source, replica, (replica_lacking, replica_retyped), force_full)
        run.mode = run_mode(results)
        if run.run_id is None:  # the replica changes from here on: a run that dies leaves this row running
            replica.record_started(run)
        stack.enter_context(tombstones.pruning(settings, [r.state.watermark if r.state else None for r in results]))
        ahead = stack.enter_context(reconcile.ReadAhead(settings, source, results))
        _upsert_all(spark, settings, source, replica, results, ahead, step_done)
        for result in reversed([r for r in results if not r.reconciled]):
            _reconcile(settings, source, replica, result, step_done)
        summarize(run, results, source.xmin)
    return {r.name: r for r in results}
