"""Reading the Postgres source: one exported REPEATABLE READ snapshot shared by the driver and every Spark partition.

The driver's transaction exports its snapshot (`pg_export_snapshot()`); each JDBC partition imports it in
`sessionInitStatement`, so all seven tables, the row counts, the tombstones and the reconcile checksums describe one
and the same instant, and `pg_snapshot_xmin` of that snapshot is the next watermark (see README.md).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import psycopg2.errors
from pyspark.sql import functions as F

from postgresdb.models import CHANGE_TXID, TABLES, TOMBSTONE_HORIZON, TOMBSTONES, Table
from shopflow.config import Settings
from shopflow.db import lock_holders, pg_connection

from .checksum import BIGINT_MAX, Checksum, checksum_from_row, postgres_checksum_sql
from .plan import FETCH_SIZE, TablePlan, changed_rows_filter, partition_count, read_query
from .transform import replicated_columns

POSTGRES_DRIVER = "org.postgresql.Driver"
KEY_ORDER_CORRELATION = 0.85  # see `SourceSnapshot.in_key_order`


@dataclass(frozen=True)
class RowStats:
    rows: int
    min_key: int | None
    max_key: int | None


class SourceSnapshot:
    """The run's snapshot connection; its queries may come from two threads (the read-ahead of phase B, see
    `reconcile.ReadAhead`), one at a time."""

    def __init__(self, settings: Settings, cursor, snapshot_id: str, xmin: int, xmax: int, system_id: int | None,
                 timeline: int | None = None):
        self.settings, self.schema, self._cur = settings, settings.POSTGRES_SCHEMA, cursor
        self.snapshot_id, self.xmin, self.xmax, self.system_id = snapshot_id, xmin, xmax, system_id
        self.timeline = timeline
        self._lock = threading.Lock()

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            self._cur.execute(sql, params)
            return self._cur.fetchall()

    def _one(self, sql: str, params: tuple = ()) -> tuple:
        return self._all(sql, params)[0]

    def table_oid(self, table: Table) -> int:
        from .results import ReplicationRefused  # results imports this module

        oid = self._one("SELECT to_regclass(%s)::oid", (f"{self.schema}.{table.name}",))[0]
        if oid is None:  # a retry finds it missing too: exit 3, not a traceback retried by Airflow
            raise ReplicationRefused(f"source table {self.schema}.{table.name} does not exist (POSTGRES_SCHEMA="
                                     f"{self.schema}; `make up` makes the source tables)")
        return int(oid)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """A query's rows, on the snapshot's connection (`source_checks`)."""
        return self._all(sql, params)

    def truncated_since(self, table: Table, since: int | None) -> bool:
        """A TRUNCATE tombstone (row_id NULL) newer than the watermark: the table must be reloaded in full."""
        if since is None:
            return False
        return self._one(f"SELECT EXISTS (SELECT 1 FROM {self.schema}.{TOMBSTONES} WHERE table_name = %s "
                         f"AND row_id IS NULL AND {CHANGE_TXID} >= %s)", (table.name, since))[0]

    def pruned_below(self) -> dict[str, int]:
        """Per table, its tombstones with `change_txid` below this may have been pruned (`tombstones.py`); tables
        none of whose tombstones were pruned are left out, and so are all when the source's DDL predates the
        horizon's table."""
        horizon = f"{self.schema}.{TOMBSTONE_HORIZON}"
        if self._one("SELECT to_regclass(%s)", (horizon,))[0] is None:
            return {}
        return {name: int(below) for name, below in self._all(f"SELECT table_name, pruned_below FROM {horizon}")}

    def row_stats(self, plan: TablePlan) -> RowStats:
        key = plan.table.primary_key
        rows, low, high = self._one(f"SELECT count(*), min({key}), max({key}) "
                                    f"FROM {self.schema}.{plan.table.name}{changed_rows_filter(plan)}")
        return RowStats(rows, low, high)

    def deleted_keys(self, plan: TablePlan) -> list[int]:
        """Keys tombstoned since the watermark and absent from this snapshot (a key deleted, then re-inserted
        with the same id, stays: only what the snapshot lacks may be deleted from the replica)."""
        key = plan.table.primary_key
        rows = self._all(
            f"SELECT DISTINCT d.row_id FROM {self.schema}.{TOMBSTONES} d WHERE d.table_name = %s "
            f"AND d.row_id IS NOT NULL AND d.{CHANGE_TXID} >= %s AND NOT EXISTS "
            f"(SELECT 1 FROM {self.schema}.{plan.table.name} t WHERE t.{key} = d.row_id) ORDER BY 1",
            (plan.table.name, plan.since))
        return [row[0] for row in rows]

    def checksum(self, table: Table, plan: TablePlan | None = None) -> Checksum:
        """Of the whole table, or of the rows `plan` reads (its changed rows). A whole table whose rows lie in key
        order is hashed along its key index (`postgres_checksum_sql`)."""
        where = changed_rows_filter(plan) if plan else ""
        along_key = not where and self.in_key_order(table)
        return checksum_from_row(self._one(postgres_checksum_sql(table, self.schema, where, along_key)))

    def in_key_order(self, table: Table) -> bool:
        """The planner's statistics correlate the primary key with the rows' physical order by at least
        KEY_ORDER_CORRELATION; False without statistics. Hashing along the key reads the heap in key order, which
        pays off only when that is about the physical order (order_details, rows shuffled to a correlation of 1.0,
        0.90, 0.70, 0.39 and 0.0: 0.92-0.95, 0.97, 1.27, 1.45-1.61 and 1.78-2.26 s, grouped 1.13-1.29 s)."""
        rows = self._all("SELECT correlation FROM pg_stats WHERE schemaname = %s AND tablename = %s "
                         "AND attname = %s", (self.schema, table.name, table.primary_key))
        return bool(rows) and rows[0][0] is not None and rows[0][0] >= KEY_ORDER_CORRELATION

    def count(self, table: Table) -> int:
        return self._one(f"SELECT count(*) FROM {self.schema}.{table.name}")[0]

    def read(self, spark, plan: TablePlan, stats: RowStats):
        """The plan's rows as a DataFrame, read in parallel ranges of the primary key, all in this snapshot."""
        s = self.settings
        reader = (spark.read.format("jdbc")
                  .option("url", s.postgres_jdbc_url).option("driver", POSTGRES_DRIVER)
                  .option("user", s.POSTGRES_USER).option("password", s.POSTGRES_PASSWORD)
                  .option("dbtable", read_query(plan, self.schema))
                  .option("fetchsize", FETCH_SIZE)  # > 0 also makes Spark open a transaction, needed below
                  .option("sessionInitStatement", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; "
                                                  f"SET TRANSACTION SNAPSHOT '{self.snapshot_id}'; "
                                                  f"SET lock_timeout = '{lock_timeout_ms(s)}ms'"))
        if stats.rows:
            reader = (reader.option("partitionColumn", plan.table.primary_key)
                      # the last range is open above: the bound only sizes the ranges (and fits a Java long)
                      .option("lowerBound", stats.min_key).option("upperBound", min(stats.max_key + 1, BIGINT_MAX))
                      .option("numPartitions", partition_count(stats.rows)))
        micros = {c.name for c in replicated_columns(plan.table) if c.kind == "timestamp"}  # see read_query
        return reader.load().withColumns({name: F.timestamp_micros(name) for name in micros})


def lock_timeout_ms(settings: Settings) -> int:
    """The `lock_timeout` of the run's reads. The run's snapshot connection holds ACCESS SHARE on every source table
    until the run ends; a TRUNCATE, ALTER or VACUUM FULL that comes meanwhile queues behind it, and the reads, which
    need the same ACCESS SHARE, queue behind that. Postgres sees no deadlock (the run waits on its reads in the
    client), so without a timeout all three would wait for good; with it, the run fails, its locks go, the other
    statement proceeds, and the run is retried."""
    return round(settings.REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS * 1000)


_MISSING = (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName)


def _lock_tables(cur, settings: Settings) -> None:
    """ACCESS SHARE on the source tables before the snapshot is taken (LOCK, SET and SAVEPOINT take none): TRUNCATE
    is not MVCC-safe, and a snapshot taken before a TRUNCATE committed would see its table empty, and its TRUNCATE
    tombstone not at all. Waiting here for a TRUNCATE (or a rewriting ALTER) in progress means the snapshot sees
    what it committed. A missing table (or schema) locks nothing: the run's own check (`table_oid`) then refuses the
    run, naming it, before anything is read. A lock held longer than REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS (an
    ALTER or TRUNCATE left open in a SQL client) fails the run naming the sessions, as the reads' timeout does,
    instead of a wait without a word until Airflow's task timeout."""
    from .results import ReplicationError  # results imports this module

    schema = settings.POSTGRES_SCHEMA
    cur.execute("SAVEPOINT lock_tables")
    cur.execute("SET LOCAL lock_timeout = %s", (f"{lock_timeout_ms(settings)}ms",))
    try:
        cur.execute(f"LOCK TABLE {', '.join(f'{schema}.{table.name}' for table in TABLES)} IN ACCESS SHARE MODE")
    except _MISSING:
        cur.execute("ROLLBACK TO SAVEPOINT lock_tables")
    except psycopg2.errors.LockNotAvailable:
        cur.execute("ROLLBACK TO SAVEPOINT lock_tables")
        waited = settings.REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS
        holders = lock_holders(settings, [t.name for t in TABLES])
        raise ReplicationError(f"the source tables stayed locked for {waited:g} s (REPLICATION_SOURCE_LOCK_TIMEOUT"
                               f"_SECONDS) before the run could take its snapshot: {holders}. Nothing was read; a "
                               "retry goes on once they commit or roll back") from None
    cur.execute("SET LOCAL lock_timeout = DEFAULT")
    cur.execute("RELEASE SAVEPOINT lock_tables")


@contextmanager
def open_snapshot(settings: Settings) -> Iterator[SourceSnapshot]:
    """Holds the exporting transaction open (read only) until the run is over."""
    with pg_connection(settings) as conn:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            cur.execute("SHOW server_encoding")
            if (encoding := cur.fetchone()[0]) != "UTF8":
                from .results import ReplicationRefused  # results imports this module
                raise ReplicationRefused(f"the source database's encoding is {encoding}; it must be UTF8 (the "
                                         "checksums hash UTF-8 bytes)")
            # the run's counts and checksums: parallel workers cost more CPU than they saved on 2 cores shared
            # with the load (README "Settings")
            cur.execute("SET max_parallel_workers_per_gather = %s", (settings.REPLICATION_SOURCE_PARALLEL_WORKERS,))
            cur.execute("SET datestyle = 'ISO, YMD'")  # the checksum's timestamp text (psycopg2 sets it too)
            _lock_tables(cur, settings)
            cur.execute("SELECT pg_export_snapshot(), pg_snapshot_xmin(pg_current_snapshot())::text::bigint, "
                        "pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            snapshot = cur.fetchone()
            yield SourceSnapshot(settings, cur, *snapshot, _system_id(cur), _timeline(cur))


def _system_id(cur) -> int | None:
    """The source cluster's identity (`plan.plan_table`); None where the role may not call pg_control_system()."""
    cur.execute("SELECT has_function_privilege('pg_control_system()', 'EXECUTE')")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT system_identifier FROM pg_control_system()")
    return int(cur.fetchone()[0])


def _timeline(cur) -> int | None:
    """The source cluster's current WAL timeline (the first 8 hex digits of its WAL file name; `plan.plan_table`);
    None on a standby, which has no current WAL position of its own."""
    cur.execute("SELECT CASE WHEN NOT pg_is_in_recovery() THEN ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), "
                "1, 8))::bit(32)::bigint END")
    return cur.fetchone()[0]
