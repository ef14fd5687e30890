"""Pruning the source's tombstones: `deleted_rows` gets one row per deleted source row, and without pruning it grows
forever (README.md, "Tombstones").

A replica reads the tombstones with `change_txid` >= a table's watermark, so a tombstone below the lowest watermark of
all its tables has been consumed. The job only knows its own replica: it deletes those tombstones once older than
`REPLICATION_TOMBSTONE_RETENTION_HOURS`, and raises the table's horizon in `deleted_rows_horizon` in the same
statement. Another replica of the same source whose watermark of a table lies below that table's horizon may have
missed a delete: its next run reloads that table in full (`plan.plan_table`) instead of keeping rows the source
deleted.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

from postgresdb.models import CHANGE_TXID, TOMBSTONE_HORIZON, TOMBSTONES
from shopflow.config import Settings
from shopflow.db import pg_connection

log = logging.getLogger("shopflow.replication")
PRUNE_BATCH = 100_000  # tombstones per run at most: a backlog (the first run after an upgrade) goes over several runs
LOCK_TIMEOUT, STATEMENT_TIMEOUT = "5s", "120s"  # a prune that cannot finish soon gives up (logged), the run goes on


def prune(settings: Settings, below: int, batch: int = PRUNE_BATCH) -> tuple[int, int]:
    """Deletes up to `batch` tombstones with `change_txid` < `below` that are older than the retention, and raises
    the horizon of each table they were of past the newest of them (never lowers it); returns (tombstones deleted,
    tables whose horizon was set). Waits at most LOCK_TIMEOUT for a lock (another replica's prune)."""
    schema, retention_s = settings.POSTGRES_SCHEMA, settings.REPLICATION_TOMBSTONE_RETENTION_HOURS * 3600
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL lock_timeout = %s", (LOCK_TIMEOUT,))
        cur.execute("SET LOCAL statement_timeout = %s", (STATEMENT_TIMEOUT,))
        cur.execute(f"""WITH gone AS (
    DELETE FROM {schema}.{TOMBSTONES} WHERE tombstone_id IN (
        SELECT tombstone_id FROM {schema}.{TOMBSTONES} WHERE {CHANGE_TXID} < %s
            AND deleted_at < clock_timestamp() - make_interval(secs => %s) LIMIT %s)
    RETURNING table_name, {CHANGE_TXID}),
raised AS (
    INSERT INTO {schema}.{TOMBSTONE_HORIZON} AS h (table_name, pruned_below)
    SELECT table_name, max({CHANGE_TXID}) + 1 FROM gone GROUP BY table_name
    ON CONFLICT (table_name) DO UPDATE SET pruned_below = GREATEST(h.pruned_below, EXCLUDED.pruned_below),
        pruned_at = EXCLUDED.pruned_at
    RETURNING table_name)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM raised)""", (below, retention_s, batch))
        deleted, tables = cur.fetchone()
        return int(deleted), int(tables)


@contextmanager
def pruning(settings: Settings, watermarks: list[int | None]) -> Iterator[None]:
    """Prunes below the lowest of the replica's stored watermarks (one per table; none if a table has none) on a
    connection and thread of its own while the run goes on, and waits for it at the end. A failure is logged, not
    raised: the run's replica is not affected by it."""
    if not watermarks or any(w is None for w in watermarks):
        yield
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prune-tombstones") as pool:
        pruned = pool.submit(prune, settings, min(watermarks))
        try:
            yield
        finally:
            if error := pruned.exception():  # waits for the prune
                hint = " (`make up` applies the source's DDL)" if "does not exist" in str(error) else ""
                log.warning("tombstones not pruned, the run is not affected%s: %s: %s", hint, type(error).__name__,
                            str(error).strip())
            elif (done := pruned.result())[0]:
                log.info("tombstones: %d pruned (consumed by every table, older than %g h), %s.%s set for %d "
                         "table(s)", done[0], settings.REPLICATION_TOMBSTONE_RETENTION_HOURS,
                         settings.POSTGRES_SCHEMA, TOMBSTONE_HORIZON, done[1])
