"""Phase B of a run, one table: deletes, the reconcile that proves the replica equals the snapshot, and the new
watermark, committed together or not at all (README.md, "Reconcile").

Whole-table verification hashes every row on both sides and stores the checksum. Changed-rows verification
(incremental runs between two whole-table ones) hashes only the rows the run changed: they must be equal on both
sides, and the row counts of the whole tables must be equal; the stored checksum (and its `verified_at`) stays
the last whole verification's.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .checksum import EMPTY, Checksum
from .plan import FULL
from .results import ReplicationError, TableResult, utc_now
from .source import SourceSnapshot
from .target import Replica, StageComparison

# Connections hashing the big direct load's replica side (the server runs a query on one thread; measured on 2 cores,
# 990,870 rows: 2.0-2.4 s as one query, 1.5-1.6 s as 2 or 3 ranges at once; in full runs, copy done to run end
# 1.93-2.32 s with one query vs 1.17-1.70 s with 2 ranges, six alternating runs each)
REPLICA_CHECKSUM_SPLIT = 2


def _at_once(on_source: Callable, on_replica: Callable) -> tuple:
    """The two databases work at the same time (the source cursor is used by one thread only)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        source_side = pool.submit(on_source)
        replica_side = on_replica()
        return source_side.result(), replica_side


def before_changes(source: SourceSnapshot, replica: Replica, result: TableResult) -> StageComparison | None:
    """An incremental run's keys to delete, read before the merge; the stage's comparison with the target (the
    merge's inserted / updated / unchanged counts) when there is a stage."""
    if result.verify_all or result.deleted_keys is not None:
        return None
    result.deleted_keys = source.deleted_keys(result.plan)
    return replica.compare_stage(result.plan.table) if result.rows_read else None


def _fail(replica: Replica, result: TableResult, difference: str) -> None:
    replica.rollback()
    replica.save_state(result.plan.table, result.source_oid, None)  # the next run reloads it in full
    replica.commit()
    raise ReplicationError(f"reconcile failed for {result.name}: {difference} (marked for a full reload on the "
                           "next run)")


def _verify_whole(source: SourceSnapshot, replica: Replica, result: TableResult) -> Checksum:
    table = result.plan.table
    if result.source_checksum is not None:  # hashed in the snapshot while the table was still loading
        # the replica side is all that is left of the run: a direct load's rows are committed and untouched by the
        # run's connection, so they are hashed in key ranges on as many connections at once
        split = REPLICA_CHECKSUM_SPLIT if result.direct else 1
        expected, actual = result.source_checksum, replica.checksum(table, split)
    else:
        expected, actual = _at_once(lambda: source.checksum(table), lambda: replica.checksum(table))
    if expected != actual:
        _fail(replica, result, expected.difference(actual))
    return expected


def _verify_changed(source: SourceSnapshot, replica: Replica, result: TableResult) -> tuple[Checksum, int]:
    """The changed rows' checksum and the table's row count, both equal on both sides."""
    table, plan = result.plan.table, result.plan

    def on_source():
        return (source.checksum(table, plan) if result.rows_read else EMPTY), source.count(table)

    def on_replica():
        return (replica.staged_keys_checksum(table) if result.rows_read else EMPTY), replica.count(table)

    (source_changed, source_rows), (replica_changed, replica_rows) = _at_once(on_source, on_replica)
    if source_changed != replica_changed:
        _fail(replica, result, f"changed rows: {source_changed.difference(replica_changed)}")
    if source_rows != replica_rows:
        _fail(replica, result, f"rows source={source_rows} replica={replica_rows}")
    return source_changed, source_rows


def delete_and_reconcile(source: SourceSnapshot, replica: Replica, result: TableResult) -> None:
    plan, table = result.plan, result.plan.table
    if result.direct:
        pass  # the target was empty before this run's load: nothing to delete
    elif plan.mode == FULL:
        result.deleted += replica.delete_missing(table)
    else:
        before_changes(source, replica, result)  # nothing was merged: the deletes are the first change
        keys = result.deleted_keys if result.deleted_keys is not None else source.deleted_keys(plan)
        result.deleted += replica.delete_keys(table, keys)
    if result.verify_all:
        result.checksum = _verify_whole(source, replica, result)
        rows, stored, verified_at = result.checksum.rows, result.checksum, utc_now()
    else:  # the stored checksum stays the last whole verification's
        result.checksum, rows = _verify_changed(source, replica, result)
        stored, verified_at = result.state.checksum, result.state.verified_at
    replica.save_state(table, result.source_oid, source.xmin, rows, stored, verified_at)
    replica.commit()
    changed = result.rows_written + result.deleted
    if changed and (plan.mode == FULL or changed * 10 >= rows):
        replica.analyze(table)  # InnoDB's own rule when it recalculates by itself: 10 % of the rows changed
