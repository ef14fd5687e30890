"""Writing the MySQL/MariaDB replica: tables, staging, upsert, deletes, checksum, state. One connection per run."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from postgresdb.models import Table
from shopflow.config import Settings
from shopflow.config_values import address
from shopflow.db import mysql_connection, named_lock
from shopflow.runlog import RunRecord, record_started

from . import mysql_sql as sql
from .checksum import EMPTY, Checksum, block_cuts, checksum_from_row, mysql_checksum_sql
from .plan import TableState, chunks, key_ranges
from .replica_tables import ensure_tables
from .results import ReplicaBusy, ReplicationRefused

# Write path, by measurement (README.md, "Write path"): JDBC batches into the staging table, then one
# INSERT ... SELECT ... ON DUPLICATE KEY UPDATE. MariaDB Connector/J: the bulk protocol (1.5x the rewritten
# multi-row INSERTs, 4x the driver defaults); MySQL Connector/J (compose): rewritten multi-row INSERTs.
WRITE_URL_OPTIONS = {
    "org.mariadb.jdbc.Driver": "useServerPrepStmts=true&useBulkStmts=true",
    "com.mysql.cj.jdbc.Driver": "rewriteBatchedStatements=true&useUnicode=true&characterEncoding=UTF-8",
}
WRITE_BATCH_SIZE = 5_000
MAX_WRITERS = 4
DELETE_CHUNK = 5_000
LOCK_TIMEOUT_S = 900  # the marts job holds the same lock while it reads the replica
REPLICA_USERS = "a replication run, a marts build reading the replica, or a marts verify"  # who holds that lock
# A checksum block's text is one GROUP_CONCAT (checksum.py); beyond this, max_allowed_packet is the limit. The
# checksum sorts its rows into blocks: MariaDB sizes that sort's buffer by the table's row estimate, up to
# sort_buffer_size (default 2 MB, which spilled order_details' 990,870 rows to temporary files in 167 merge passes per
# half); 128 MB holds about 2M rows (990,870 need 64 MB). Memory is taken only as the estimate needs it, which is why a
# freshly loaded table is analyzed before it is hashed (`reconcile.delete_and_reconcile`).
CHECKSUM_SESSION = "SET SESSION group_concat_max_len = 1073741824, sort_buffer_size = 134217728"


def mysql_driver_class(settings: Settings) -> str:
    """The JDBC driver in MYSQL_JDBC_JAR: MariaDB Connector/J locally, MySQL Connector/J in compose."""
    return "org.mariadb.jdbc.Driver" if "mariadb" in settings.MYSQL_JDBC_JAR.lower() else "com.mysql.cj.jdbc.Driver"


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int
    unchanged: int
    moved: int  # staged rows taken out of a unique value's way, then re-inserted by the upsert


@dataclass(frozen=True)
class StageComparison:
    existing: int  # staged keys already in the target
    changed: int  # of which differ in some column


def replication_lock_name(settings: Settings) -> str:
    """The MySQL user lock a replication run holds throughout; the marts job takes it to read a settled replica."""
    return f"shopflow.replication.{settings.MYSQL_DATABASE}"


class Replica:
    def __init__(self, settings: Settings, conn):
        self.settings, self.conn = settings, conn
        self.cur = conn.cursor()
        self.cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        self.cur.execute(CHECKSUM_SESSION)
        self.lock_name = replication_lock_name(settings)
        # the source cluster's identity, stored with every state (`plan_table`)
        self.source_system_id: int | None = None
        self.source_timeline: int | None = None

    def _one(self, statement: str, params: tuple = ()) -> tuple:
        self.cur.execute(statement, params)
        return self.cur.fetchone()

    def lock(self) -> None:
        """One replication run per replica at a time (a manual run next to the DAG's would race)."""
        named_lock(self.cur, self.lock_name, LOCK_TIMEOUT_S, REPLICA_USERS, ReplicaBusy)

    def check_local_infile(self) -> None:
        """The copy path loads with LOAD DATA LOCAL INFILE, which the server refuses while local_infile is off (MySQL
        8's default): say so before any work, not as a traceback from the first Spark task."""
        if not self._one("SELECT @@GLOBAL.local_infile")[0]:
            at = address(self.settings.MYSQL_HOST, self.settings.MYSQL_PORT)
            raise ReplicationRefused(f"the replica server at {at} "
                                     "has local_infile off, which REPLICATION_WRITE_PATH=copy needs for LOAD DATA "
                                     "LOCAL INFILE: turn it on (SET GLOBAL local_infile = 1, or local_infile = ON in "
                                     "its config), or set REPLICATION_WRITE_PATH=jdbc (slower)")

    def ensure_tables(self) -> tuple[dict[str, list[str]], list[str], dict[str, list[str]]]:
        """See `replica_tables.ensure_tables`; committed at once."""
        found = ensure_tables(self.cur)
        self.conn.commit()
        return found

    def analyze(self, table: Table) -> None:
        """Fresh optimizer statistics after a run changed the table (InnoDB does not recompute them itself)."""
        self.cur.execute(f"ANALYZE TABLE `{table.name}`")
        self.cur.fetchall()

    def states(self) -> dict[str, TableState]:
        self.cur.execute(f"SELECT table_name, source_oid, watermark, checksum, verified_at, source_system_id, "
                         f"source_timeline FROM {sql.STATE_TABLE}")
        return {name: TableState(name, oid, watermark, Checksum.parse(checksum), verified, system_id, timeline)
                for name, oid, watermark, checksum, verified, system_id, timeline in self.cur.fetchall()}

    def truncate_stage(self, table: Table) -> None:
        self.cur.execute(f"TRUNCATE TABLE `{sql.stage_name(table)}`")

    def write_stage(self, df, table: Table) -> None:
        """Spark JDBC append into the (empty) staging table: each partition one transaction of batched INSERTs."""
        s, driver = self.settings, mysql_driver_class(self.settings)
        partitions = min(MAX_WRITERS, df.rdd.getNumPartitions())
        (df.coalesce(partitions).write.format("jdbc").mode("append")
         .option("url", f"{s.mysql_jdbc_url}?{WRITE_URL_OPTIONS[driver]}").option("driver", driver)
         .option("user", s.MYSQL_USER).option("password", s.MYSQL_PASSWORD)
         .option("dbtable", sql.stage_name(table)).option("batchsize", WRITE_BATCH_SIZE)
         .save())

    def is_empty(self, table: Table) -> bool:
        self.conn.commit()
        return self._one(f"SELECT COUNT(*) FROM (SELECT 1 FROM `{table.name}` LIMIT 1) AS any_row")[0] == 0

    def clear(self, table: Table) -> None:
        """Empties a table the copy path loaded directly (rare failure path; its children are cleared too)."""
        with self._foreign_keys_unchecked():
            self.cur.execute(f"DELETE FROM `{table.name}`")
        self.conn.commit()

    def stage_rows(self, table: Table) -> int:
        self.conn.commit()  # start a fresh transaction: see the rows Spark's connections committed
        return self._one(f"SELECT COUNT(*) FROM `{sql.stage_name(table)}`")[0]

    @contextmanager
    def _foreign_keys_unchecked(self, unchecked: bool = True) -> Iterator[None]:
        """For statements whose intermediate rows may break a foreign key while the end state cannot: every row
        removed is re-inserted or is deleted in the source (and so are its children, whose deletes come first in
        reverse FK order), and the table is reconciled against the snapshot in the same run."""
        if unchecked:
            self.cur.execute("SET SESSION foreign_key_checks = 0")
        try:
            yield
        finally:
            if unchecked:
                self.cur.execute("SET SESSION foreign_key_checks = 1")

    def compare_stage(self, table: Table) -> StageComparison:
        """Before the merge, one pass over stage ⋈ target: the staged keys already in the target, and how many of
        them differ."""
        existing, changed = (int(v) for v in self._one(sql.changed_rows_sql(table)))
        return StageComparison(existing, changed)

    def upsert(self, table: Table, staged: int) -> UpsertCounts:
        """Staging -> target in one transaction, committed here. The stored whole-table checksum is dropped in the
        same transaction: until this run's reconcile has proven the changes and stored it back, the table is not
        known to match it (a run killed in between makes the next run hash whole tables)."""
        compared = self.compare_stage(table)  # before the unique-value deletes below change the target
        existing, changed = compared.existing, compared.changed
        moved = 0
        for gone, holders in sql.unique_conflicts_sql(table):
            self.cur.execute(gone)  # set aside: phase B deletes (and counts) those rows after their children
            with self._foreign_keys_unchecked():
                moved += self._rowcount(holders)
        with self._foreign_keys_unchecked(sql.references_itself(table)):
            self.cur.execute(sql.upsert_sql(table))
        self.cur.execute(f"UPDATE {sql.STATE_TABLE} SET checksum = NULL WHERE table_name = %s", (table.name,))
        self.conn.commit()
        return UpsertCounts(staged - existing, changed, existing - changed, moved)

    def _rowcount(self, statement: str, params: tuple = ()) -> int:
        self.cur.execute(statement, params)
        return self.cur.rowcount

    def delete_missing(self, table: Table) -> int:
        with self._foreign_keys_unchecked(sql.references_itself(table)):
            return self._rowcount(sql.delete_missing_sql(table))

    def delete_keys(self, table: Table, keys: list[int]) -> int:
        with self._foreign_keys_unchecked(sql.references_itself(table)):
            return sum(self._rowcount(sql.delete_keys_sql(table, len(chunk)), tuple(chunk))
                       for chunk in chunks(keys, DELETE_CHUNK))

    def checksum(self, table: Table, split: int = 1) -> Checksum:
        """The whole table's checksum. `split` > 1: hashed as that many key ranges at once, each on a connection of
        its own (the server runs one query on one thread); only for rows this connection has no uncommitted change
        to, since the other connections do not see those."""
        if split <= 1:
            return fetch_checksum(table, self.cur, mysql_checksum_sql(table))
        key = f"`{table.primary_key}`"
        low, high = self._one(f"SELECT MIN({key}), MAX({key}) FROM `{table.name}`")
        if low is None:
            return EMPTY
        statement = mysql_checksum_sql(table, where=f" WHERE {key} >= %s AND {key} < %s")

        def hash_range(span: tuple[int, int]) -> Checksum:
            with mysql_connection(self.settings) as conn:
                cur = conn.cursor()
                cur.execute(CHECKSUM_SESSION)
                return fetch_checksum(table, cur, statement, span)

        # `split` spans (fewer if fewer keys or blocks), cut at block starts
        starts = [start for start, _ in key_ranges(split, int(low), int(high), rows_per_range=1)]
        bounds = [int(low), *block_cuts(table, int(low), starts[1:]), int(high) + 1]
        spans = list(zip(bounds, bounds[1:]))
        with ThreadPoolExecutor(max_workers=len(spans), thread_name_prefix="replica-checksum") as pool:
            return sum(pool.map(hash_range, spans), EMPTY)

    def staged_keys_checksum(self, table: Table) -> Checksum:
        """Of the target rows whose key is in the stage (before the merge: their old versions; after: the new)."""
        return fetch_checksum(table, self.cur, mysql_checksum_sql(table, where=sql.in_stage_filter(table)))

    def count(self, table: Table) -> int:
        return self._one(f"SELECT COUNT(*) FROM `{table.name}`")[0]

    def save_state(self, table: Table, source_oid: int, watermark: int | None, rows: int | None = None,
                   checksum: Checksum | None = None, verified_at=None) -> None:
        """`checksum`: the whole table's, taken at `verified_at`; `rows`: the table's rows now."""
        self.cur.execute(sql.save_state_sql(), (table.name, source_oid, self.source_system_id, self.source_timeline,
                                                watermark, rows, str(checksum or "") or None, verified_at))

    def record_rejects(self, table: Table, rejects: list[tuple[str, str]]) -> None:
        self.cur.executemany(f"INSERT INTO {sql.REJECTS_TABLE} (rejected_at, table_name, row_key, reason) "
                             "VALUES (UTC_TIMESTAMP(6), %s, %s, %s)", [(table.name, k, r) for k, r in rejects])
        self.conn.commit()

    def commit(self) -> None:
        self.conn.commit()

    def record_started(self, run: RunRecord) -> None:
        """`runlog.record_started` on this connection, which holds the replication lock (nothing else uncommitted)."""
        record_started(self.cur, run)
        self.commit()

    def rollback(self) -> None:
        self.conn.rollback()


def fetch_checksum(table: Table, cur, statement: str, params: tuple = ()) -> Checksum:
    """A checksum query's result; a warning means GROUP_CONCAT cut a block's text (max_allowed_packet)."""
    cur.execute(statement, params)
    checksum = checksum_from_row(cur.fetchone())
    if cur.warning_count:
        cur.execute("SHOW WARNINGS")
        raise ReplicationRefused(f"{table.name}: the replica's checksum query warned ({cur.fetchall()[:3]}): a "
                                 "block of keys is longer than the server's max_allowed_packet; raise it (checksum.py)")
    return checksum
