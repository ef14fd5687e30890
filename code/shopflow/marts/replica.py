"""Reading the MySQL replica into Spark: partitioned JDBC reads on the primary key, cached, under the replication
lock so that all tables describe the same replication run."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from postgresdb.models import TABLES_BY_NAME
from shopflow.config import Settings
from shopflow.db import LockBusy, mysql_connection, named_lock
from shopflow.quality.gate import expected_values
from shopflow.quality.rules import Source
from shopflow.replication.checksum import BIGINT_MAX
from shopflow.replication.replica_tables import model_differences
from shopflow.replication.results import JOB as REPLICATION_JOB
from shopflow.replication.target import REPLICA_USERS, replication_lock_name
from shopflow.runlog import NOT_STARTED, clip

from .store import existing_tables, jdbc_options

# While we hold the replication job's lock, no replication run is half-way through the tables we read.
REPLICATION_LOCK_TIMEOUT_S = 900
# MySQL Connector/J streams a result set with a fetch size only with a server cursor; MariaDB's honours it as is.
READ_URL_OPTIONS = "useCursorFetch=true"
FETCH_SIZE = 10_000
MIN_ROWS_PER_PARTITION = 1_000
MAX_ROWS_PER_PARTITION = 200_000
MAX_PARTITIONS = 64


def read_partitions(rows: int, parallelism: int) -> int:
    """One partition per executor core, more when partitions would exceed MAX_ROWS_PER_PARTITION, fewer for
    tables too small to be worth splitting."""
    wanted = max(parallelism, math.ceil(rows / MAX_ROWS_PER_PARTITION))
    return max(1, min(wanted, math.ceil(rows / MIN_ROWS_PER_PARTITION), MAX_PARTITIONS))


class ReplicationBusy(LockBusy):
    pass


class ReplicaIncomplete(RuntimeError):
    """The last replication run failed (the upserts it committed may have left the replica half-applied), or the
    replica lacks a table or its columns differ from the models' (not made yet, or changed by hand)."""


def check_replica_tables(cursor, tables: Iterable[str]) -> None:
    """Raises ReplicaIncomplete when the replica lacks some of `tables`: no replication run has made them yet (compose
    makes them with its first run; a build triggered before one failed on the first read with a traceback, retried);
    or when their columns differ from the models' (changed by hand: a traceback at the read or the staging)."""
    tables = set(tables)  # read twice below: an iterator would be spent by the first
    if missing := sorted(tables - existing_tables(cursor, tables)):
        raise ReplicaIncomplete(f"the replica has no table {', '.join(missing)}: no replication run has made it yet; "
                                "run replicate_postgres_to_mysql first (its success starts a build)")
    if changed := model_differences(cursor, tables):  # a traceback at the read or the staging, retried, before
        found = "; ".join(f"{table}.{what}" for table, whats in changed.items() for what in whats)
        raise ReplicaIncomplete(f"the replica's tables differ from postgresdb/models.py ({found}): changed by hand? "
                                "Make the column(s) what the model defines; the next replication run refuses them "
                                "until then")


def check_last_replication(cursor) -> None:
    """Raises ReplicaIncomplete when the latest replication run (not one refused before it started) failed, or never
    wrote its end (killed, or MySQL unreachable as it ended: its row stays running; called with the replication lock
    held, so no run is going on). The lock keeps out a run still going, not what a failed one committed: a build
    that had waited for it read some tables of the new snapshot and others of the old, and its gate, computed from
    the same read, passed. A run writes its end before it lets the lock go."""
    cursor.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
                   "AND table_name = 'pipeline_runs'")
    if not cursor.fetchone()[0]:
        return
    cursor.execute("SELECT status, started_at, detail FROM pipeline_runs WHERE job = %s AND table_name IS NULL "
                   "AND COALESCE(mode, '') <> %s ORDER BY started_at DESC, run_id DESC LIMIT 1",
                   (REPLICATION_JOB, NOT_STARTED))
    last = cursor.fetchone()
    if last is not None and last[0] != "ok":
        ended = "failed" if last[0] == "failed" else f"ended without writing its result ({last[0]}: killed?)"
        raise ReplicaIncomplete(f"the last replication run (started {last[1]:%Y-%m-%d %H:%M:%S} UTC) {ended}, so the "
                                f"replica may hold part of it ({clip(last[2] or '', 300)}); the next successful run "
                                "makes it whole and triggers a build")


@contextmanager
def replication_paused(cursor, settings: Settings) -> Iterator[None]:
    name = replication_lock_name(settings)
    named_lock(cursor, name, REPLICATION_LOCK_TIMEOUT_S, REPLICA_USERS, ReplicationBusy)
    try:
        yield
    except Exception:
        # not after Ctrl-C (no Exception): RELEASE_LOCK would first read the answer of the query it interrupted;
        # db._transaction shuts that connection instead, which frees the lock
        _release(cursor, name)
        raise
    _release(cursor, name)


def _release(cursor, name: str) -> None:
    cursor.execute("SELECT RELEASE_LOCK(%s)", (name,))
    cursor.fetchall()


def _read_table(spark, settings: Settings, table: str, columns: tuple[str, ...]) -> tuple[DataFrame, int]:
    """(the table's columns, not cached yet; its row count now). On its own MySQL connection: the tables are set
    up side by side (each JDBC schema lookup is a round trip from the driver JVM)."""
    key = TABLES_BY_NAME[table].primary_key
    with mysql_connection(settings) as conn:
        cursor = conn.cursor()
        cursor.execute(f"SELECT COUNT(*), MIN(`{key}`), MAX(`{key}`) FROM `{table}`")
        rows, low, high = cursor.fetchone()
    stamps = {c.name for c in TABLES_BY_NAME[table].columns if c.kind == "timestamp"} & set(columns)
    reader = jdbc_options(spark.read.format("jdbc"), settings, READ_URL_OPTIONS).option(
        "dbtable", _read_query(table, columns, stamps)).option("fetchsize", FETCH_SIZE)
    if rows:
        reader = (reader.option("partitionColumn", key).option("lowerBound", low)
                  .option("upperBound", min(high + 1, BIGINT_MAX))  # a Java long; the last range is open above
                  .option("numPartitions", read_partitions(rows, spark.sparkContext.defaultParallelism)))
    return reader.load().select(*columns).withColumns({c: F.timestamp_micros(c) for c in stamps}), rows


def _read_query(table: str, columns: tuple[str, ...], stamps: set[str]) -> str:
    """The key and `columns` of `table`, those in `stamps` (DATETIMEs) as epoch microseconds: read as JDBC timestamps
    they went through Java's Julian-Gregorian calendar, where 1582-10-05..14 do not exist (read ten days later;
    replication's JDBC path reads the source so too)."""
    key = TABLES_BY_NAME[table].primary_key
    names = [key, *(c for c in columns if c != key)]
    fields = ", ".join(f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01', `{c}`) AS `{c}`" if c in stamps else f"`{c}`"
                       for c in names)
    return f"(SELECT {fields} FROM `{table}`) AS `{table}`"


def read_replica(spark, settings: Settings, cursor, columns: Mapping[str, tuple[str, ...]],
                 aggregates: Iterable[Source] = ()) -> tuple[dict[str, DataFrame], dict[Source, Any]]:
    """The given columns of each table, cached (call `release` when done), and the value of each aggregate over
    them. One Spark job per table both fills its cache and computes its aggregates and row count."""
    frames: dict[str, DataFrame] = {}
    try:
        with replication_paused(cursor, settings):
            check_last_replication(cursor)
            check_replica_tables(cursor, columns)
            with ThreadPoolExecutor(max_workers=max(1, len(columns))) as pool:
                read = dict(zip(columns, pool.map(lambda item: _read_table(spark, settings, *item), columns.items())))
            counts = {table: rows for table, (_, rows) in read.items()}
            frames.update((table, frame.persist(StorageLevel.MEMORY_AND_DISK)) for table, (frame, _) in read.items())
            values = expected_values(frames, {*aggregates, *(row_count(t) for t in frames)})
        for table, rows in counts.items():
            if values[row_count(table)] != rows:
                raise RuntimeError(f"replica table {table}: read {values[row_count(table)]} rows, it held {rows}")
        return frames, values
    except BaseException:
        release(frames)
        raise


def row_count(table: str) -> Source:
    return Source(table, "COUNT(*)")
def release(frames: Mapping[str, DataFrame]) -> None:
    for frame in frames.values():
        frame.unpersist()
