"""Phase B of a run, one table: deletes, the reconcile that proves the replica equals the snapshot, and the new
watermark, committed together or not at all (README.md, "Reconcile").

Whole-table verification hashes every row on both sides. Changed-rows verification (incremental runs between two
whole-table ones) hashes only the rows the run touched: the changed rows must be equal on both sides, the row
counts of the whole tables must be equal, and the stored whole-table checksum is carried forward exactly
(old - old versions of the touched keys + their new versions), so it stays the checksum a full hash would give.
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
    """Hashes the target's current versions of every key this run will touch (staged keys, keys to delete); runs
    before the merge, since the merge may delete rows holding a unique value that a staged row takes. Returns the
    stage's comparison with the target when it took one (the merge's counts come with it)."""
    if result.verify_all or result.before is not None:
        return None
    table = result.plan.table
    result.deleted_keys = source.deleted_keys(result.plan)
    compared = replica.compare_stage(table) if result.rows_read else None
    staged = compared.before if compared else EMPTY
    result.before = staged + replica.keys_checksum(table, result.deleted_keys)
    return compared


def _fail(replica: Replica, result: TableResult, difference: str) -> None:
    replica.rollback()
    replica.save_state(result.plan.table, result.source_oid, None, None)  # the next run reloads it in full
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


def _verify_changed(source: SourceSnapshot, replica: Replica, result: TableResult) -> Checksum:
    table, plan = result.plan.table, result.plan

    def on_source():
        return (source.checksum(table, plan) if result.rows_read else EMPTY), source.count(table)

    def on_replica():
        return (replica.staged_keys_checksum(table) if result.rows_read else EMPTY), replica.count(table)

    (source_changed, source_rows), (replica_changed, replica_rows) = _at_once(on_source, on_replica)
    carried = result.state.checksum - result.before + replica_changed
    if source_changed != replica_changed:
        _fail(replica, result, f"changed rows: {source_changed.difference(replica_changed)}")
    if not source_rows == replica_rows == carried.rows:
        _fail(replica, result, f"rows source={source_rows} replica={replica_rows} (carried checksum counts "
                               f"{carried.rows})")
    return carried


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
        result.checksum, verified_at = _verify_whole(source, replica, result), utc_now()
    else:
        result.checksum, verified_at = _verify_changed(source, replica, result), result.state.verified_at
    replica.save_state(table, result.source_oid, source.xmin, result.checksum, verified_at)
    replica.commit()
    changed = result.rows_written + result.deleted
    if changed and (plan.mode == FULL or changed * 10 >= result.checksum.rows):
        replica.analyze(table)  # InnoDB's own rule when it recalculates by itself: 10 % of the rows changed
