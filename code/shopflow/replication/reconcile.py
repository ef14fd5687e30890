"""Phase B of a run, one table: deletes, the reconcile that proves the replica equals the snapshot, and the new
watermark, committed together or not at all (README.md, "Reconcile").

Whole-table verification hashes every row on both sides and stores the checksum. Changed-rows verification
(incremental runs between two whole-table ones) hashes only the rows the run changed: they must be equal on both
sides, and the row counts of the whole tables must be equal; the stored checksum (and its `verified_at`) stays
the last whole verification's. `ReadAhead` takes the parts of that which need not wait for phase B beside phase A.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from shopflow.config import Settings
from shopflow.db import mysql_connection

from .checksum import EMPTY, Checksum
from .plan import FULL
from .results import ReplicationError, TableResult, utc_now
from .source import SourceSnapshot
from .target import Replica

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


class ReadAhead:
    """The changed-rows verification's reads that need not wait for phase B, done while the run's connections are
    otherwise idle, for each table phase B will verify by its changed rows:
    - the replica's row count before any of the run's changes, on a connection of its own from the run's start
      (during the copy, when MariaDB only loads the stages), in merge order; a table's merge waits for its count
      (`counted_before_changes`). Phase B adds the rows the merge inserted and subtracts those the run
      deleted (`_verify_changed`);
    - the snapshot side (the changed rows' checksum and the row count) on the snapshot connection once the copy is
      done, beside phase A's merges, in phase B's order.
    The row counts are O(table): order_details' take 60-85 ms on each side. Measured (bench data, 1 % changed),
    counting the replica at the run's start instead of after the merges: phase B 0.07 s instead of 0.14 s, the copy
    0.04 s slower; the incremental run 0.48-0.56 s instead of 0.50-0.58 s (five alternating pairs; bench/NOTES.md)."""

    def __init__(self, settings: Settings, source: SourceSnapshot, results: list[TableResult]):
        self.settings, self.source = settings, source
        self.tables = [r for r in reversed(results) if not r.verify_all]  # phase B's order
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="read-ahead")
        for result in self.tables:
            result.replica_rows = Future()

        def counts() -> None:
            with mysql_connection(self.settings, autocommit=True) as conn:
                replica = Replica(self.settings, conn)
                for result in reversed(self.tables):  # merge order
                    result.replica_rows.set_result(replica.count(result.plan.table))
        if self.tables:
            self._pool.submit(self._settle, "replica_rows", counts)

    def read_source(self) -> None:
        """The keys to delete (quick), then the snapshot sides in the background."""
        for result in self.tables:
            result.deleted_keys = self.source.deleted_keys(result.plan)
            result.source_side = Future()

        def sides() -> None:
            for result in self.tables:
                result.source_side.set_result((self.source.checksum(result.plan.table, result.plan),
                                               self.source.count(result.plan.table)))
        self._pool.submit(self._settle, "source_side", sides)

    def _settle(self, name: str, fill: Callable[[], None]) -> None:
        """Runs `fill`; if it fails, every table whose future it had not set yet gets the error (none waits)."""
        try:
            fill()
        except BaseException as error:
            for result in self.tables:
                if not getattr(result, name).done():
                    getattr(result, name).set_exception(error)

    def __enter__(self) -> "ReadAhead":
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)  # before the snapshot connection closes


def counted_before_changes(result: TableResult) -> None:
    """Waits for `ReadAhead`'s count of the table, which must see the replica before its merge commits:
    `_verify_changed` adds the run's changes to it. Phase B's deletes need no wait: they commit after the check."""
    if result.replica_rows is not None:
        result.replica_rows.result()


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


def _verify_changed(replica: Replica, result: TableResult) -> tuple[Checksum, int]:
    """The changed rows' checksum and the table's row count, both equal on both sides (the snapshot side and the
    replica's count read ahead: `ReadAhead`). The replica was counted before the run changed it: the rows with keys
    outside the stage are untouched but for the run's deletes, and the changed-rows checksum proves the staged keys
    all present, so the count now is the count then plus the staged keys the merge inserted, minus the deletes."""
    replica_changed = replica.staged_keys_checksum(result.plan.table) if result.rows_read else EMPTY
    source_changed, source_rows = result.source_side.result()
    replica_rows = result.replica_rows.result() + result.inserted - result.deleted
    if source_changed != replica_changed:
        _fail(replica, result, f"changed rows: {source_changed.difference(replica_changed)}")
    if source_rows != replica_rows:
        _fail(replica, result, f"rows source={source_rows} replica={replica_rows}")
    return source_changed, source_rows


def delete_and_reconcile(source: SourceSnapshot, replica: Replica, result: TableResult) -> None:
    plan, table = result.plan, result.plan.table
    if result.direct:  # the target was empty before this run's load: nothing to delete
        replica.analyze(table)  # its committed rows, before they are hashed (see `target.CHECKSUM_SESSION`)
    elif plan.mode == FULL:
        result.deleted += replica.delete_missing(table)
    else:
        if result.deleted_keys is None:
            result.deleted_keys = source.deleted_keys(plan)
        result.deleted += replica.delete_keys(table, result.deleted_keys)
    if result.verify_all:
        result.checksum = _verify_whole(source, replica, result)
        rows, stored, verified_at = result.checksum.rows, result.checksum, utc_now()
    else:  # the stored checksum stays the last whole verification's
        result.checksum, rows = _verify_changed(replica, result)
        stored, verified_at = result.state.checksum, result.state.verified_at
    replica.save_state(table, result.source_oid, source.xmin, rows, stored, verified_at)
    replica.commit()
    changed = result.rows_written + result.deleted
    if changed and not result.direct and (plan.mode == FULL or changed * 10 >= rows):
        replica.analyze(table)  # InnoDB's own rule when it recalculates by itself: 10 % of the rows changed
