"""`pipeline_runs` in MySQL: one row per job run (or per table / per micro-batch), written by every job."""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import mysql.connector

from shopflow.config import Settings
from shopflow.db import mysql_connection

PIPELINE_RUNS_DDL = """CREATE TABLE IF NOT EXISTS pipeline_runs (
    run_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    job VARCHAR(64) NOT NULL,
    table_name VARCHAR(64) NULL,
    mode VARCHAR(16) NULL,
    started_at DATETIME(6) NOT NULL,
    finished_at DATETIME(6) NULL,
    seconds DECIMAL(12,3) NULL,
    rows_read BIGINT NULL,
    rows_written BIGINT NULL,
    rows_deleted BIGINT NULL,
    rows_rejected BIGINT NULL,
    checksum VARCHAR(64) NULL,
    status VARCHAR(16) NOT NULL,
    detail TEXT NULL,
    airflow_run_id VARCHAR(250) NULL,
    KEY ix_pipeline_runs_job_started (job, started_at),
    KEY ix_pipeline_runs_job_table (job, table_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""
# added since the table was first made; ensure_pipeline_runs adds them to an older one (a row's write too: _write)
ADDED_KEYS = {"ix_pipeline_runs_job_table": "(job, table_name)"}
ADDED_COLUMNS = {"airflow_run_id": "VARCHAR(250) NULL"}
UNKNOWN_COLUMN, DUPLICATE_COLUMN = 1054, 1060  # a row written into a table older than a column; a column added twice

DETAIL_CHARS = 2_000
log = logging.getLogger(__name__)


def clip(text: str, limit: int = DETAIL_CHARS) -> str:
    """`text` cut to `limit` characters keeping its start and its end: an error relayed from a Spark worker is a
    traceback whose last lines say what went wrong."""
    if len(text) <= limit:
        return text
    head = limit // 4
    return f"{text[:head]} … {text[-(limit - head - 3):]}"


_COLUMNS = ("job", "table_name", "mode", "started_at", "finished_at", "seconds", "rows_read", "rows_written",
            "rows_deleted", "rows_rejected", "checksum", "status", "detail", "airflow_run_id")


def airflow_run_id() -> str | None:
    """The Airflow DAG run this process works for (Airflow's task process exports it, spark-submit and the driver
    inherit it), with the try when it is a retry; None outside Airflow."""
    run_id = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    if not run_id:
        return None
    attempt = os.environ.get("AIRFLOW_CTX_TRY_NUMBER", "1")
    return run_id[:235] + (f" (try {attempt})" if attempt not in ("", "1") else "")


@dataclass
class RunRecord:
    job: str
    table_name: str | None = None
    mode: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(tzinfo=None))
    finished_at: datetime | None = None
    seconds: float | None = None
    rows_read: int | None = None
    rows_written: int | None = None
    rows_deleted: int | None = None
    rows_rejected: int | None = None
    checksum: str | None = None
    status: str = "running"
    detail: str | None = None
    run_id: int | None = None  # its row, once `record_started` wrote it: the end updates that row
    airflow_run_id: str | None = field(default_factory=airflow_run_id)


def ensure_pipeline_runs(settings: Settings) -> None:
    """pipeline_runs with the keys added since an older version made it (`make up`, each replication run). Without
    (job, table_name) the dashboard's last runs read every stream batch row to learn the stream has no whole-run
    rows: 2.6M row reads and 1.8 s at a month of `make stream` (17,000 batches a day), 39 reads with it."""
    with mysql_connection(settings, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(PIPELINE_RUNS_DDL)
        cur.execute("SELECT DISTINCT index_name FROM information_schema.statistics "
                    "WHERE table_schema = DATABASE() AND table_name = 'pipeline_runs'")
        have = {name for (name,) in cur.fetchall()}
        for name, columns in ADDED_KEYS.items():
            if name not in have:
                cur.execute(f"ALTER TABLE pipeline_runs ADD KEY {name} {columns}")
        _add_columns(cur)
        cur.close()


def _add_columns(cur) -> None:
    cur.execute("SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name = 'pipeline_runs'")
    have = {name.lower() for (name,) in cur.fetchall()}
    for name, kind in ADDED_COLUMNS.items():
        if name not in have:  # at the end: instant in InnoDB (MariaDB 10.3+, MySQL 8.0.29+)
            try:
                cur.execute(f"ALTER TABLE pipeline_runs ADD COLUMN {name} {kind}")
            except mysql.connector.Error as error:  # another job's write added it meanwhile (MySQL 8: no IF NOT EXISTS)
                if error.errno != DUPLICATE_COLUMN:
                    raise


def _write(cur, sql: str, values: tuple) -> None:
    """Runs a row's INSERT or UPDATE; a table made by an older version gets the columns added since, once (a job
    runs before `make up` or a replication run added them)."""
    try:
        cur.execute(sql, values)
    except mysql.connector.Error as error:
        if error.errno != UNKNOWN_COLUMN:
            raise
        _add_columns(cur)
        cur.execute(sql, values)


def _values(record: RunRecord) -> tuple:
    return tuple(clip(record.detail) if c == "detail" and record.detail else getattr(record, c) for c in _COLUMNS)


_INSERT = f"INSERT INTO pipeline_runs ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"


def record_run(settings: Settings, record: RunRecord) -> None:
    """Its row: a new one, or the one `record_started` wrote, updated."""
    with mysql_connection(settings) as conn:
        cur = conn.cursor()
        cur.execute(PIPELINE_RUNS_DDL)
        if record.run_id is None:
            _write(cur, _INSERT, _values(record))
        else:
            _write(cur, f"UPDATE pipeline_runs SET {', '.join(f'{c} = %s' for c in _COLUMNS)} WHERE run_id = %s",
                   _values(record) + (record.run_id,))
        cur.close()


UNFINISHED_LOOKBACK = 20  # latest whole-run rows of the job that began (not `not started`) `record_started` reads
UNFINISHED = ("ended without writing its result (its process was killed, or MySQL was unreachable as it ended); "
              "found by the next run")


def record_started(cursor, record: RunRecord) -> None:
    """Writes `record` as running through `cursor` (the caller commits) and keeps its row's id for its end. Rows of
    `record.job` still running among its latest ones are first written as failed (`UNFINISHED`): call it only while
    holding the lock that keeps out another run of the job, so that row's run cannot be going on. A run killed
    (kill -9, the OOM killer) or whose end could not be written leaves its row running until then."""
    cursor.execute(PIPELINE_RUNS_DDL)
    cursor.execute("SELECT run_id, status FROM pipeline_runs WHERE job = %s AND table_name IS NULL "
                   "AND COALESCE(mode, '') <> %s ORDER BY started_at DESC, run_id DESC LIMIT %s",
                   (record.job, NOT_STARTED, UNFINISHED_LOOKBACK))
    for run_id, status in cursor.fetchall():  # behind any number of runs that failed before they began
        if status == "running":
            cursor.execute("UPDATE pipeline_runs SET status = 'failed', detail = %s WHERE run_id = %s",
                           (UNFINISHED, run_id))
    # not _write: an ALTER would commit the caller's transaction (the replication job, which ran ensure_pipeline_runs)
    cursor.execute(_INSERT, _values(record))
    record.run_id = cursor.lastrowid


def record_run_or_warn(settings: Settings, record: RunRecord, what: str | None = None) -> None:
    """`record_run`, with a failure to write logged instead of raised: for a failed run, whose own error is being
    raised (MySQL down is often its very cause), and for a stream batch already committed in Postgres (raising would
    make Spark replay it). `what` names the row in the warning (default: its table, else its job)."""
    try:
        record_run(settings, record)
    except Exception as error:
        log.warning("pipeline_runs row for %s not written (%s: %s)", what or record.table_name or record.job,
                    type(error).__name__, error)


NOT_STARTED = "not started"  # the mode of a batch job's row from record_exit: it changed nothing


def record_exit(settings: Settings, job: str, detail: str, **fields) -> None:
    """One failed row for a run that ended before its work began (the Spark master down, spark-submit without the
    JDBC jars, the broker gone): the dashboard's latest run is then that failure, not an older success."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    record_run_or_warn(settings, RunRecord(job=job, started_at=now, finished_at=now, seconds=0.0, status="failed",
                                           detail=detail, **({"mode": NOT_STARTED} | fields)))


# this process's runs under way (tracked_run) and how many ended: what a SIGTERM stops (`record_stopped`)
_UNDER_WAY: list[RunRecord] = []
_ENDED = [0]


@contextmanager
def tracked_run(settings: Settings, job: str, **fields):
    """Yields a RunRecord to fill in; writes it with status ok/failed, duration and the error on the way out."""
    record, start = RunRecord(job=job, **fields), time.monotonic()
    _UNDER_WAY.append(record)
    try:
        yield record
        record.status = "ok" if record.status == "running" else record.status
    except BaseException as error:
        _ended(record)
        record.status, record.detail = "failed", f"{type(error).__name__}: {error}"
        _finish(record, start)
        record_run_or_warn(settings, record)
        raise
    _ended(record)
    _finish(record, start)
    record_run(settings, record)


def _ended(record: RunRecord) -> None:
    _UNDER_WAY[:] = [run for run in _UNDER_WAY if run is not record]  # record_stopped may have taken it
    _ENDED[0] += 1


def record_stopped(settings: Settings, job: str, detail: str) -> None:
    """For a job stopped by a signal, which ends at once after this: this process's runs under way written as failed
    with `detail`, or one `record_exit` row when none had begun yet; nothing when its run had already ended."""
    if not _UNDER_WAY and not _ENDED[0]:
        record_exit(settings, job, detail)
    for record in _UNDER_WAY[:]:
        _UNDER_WAY.remove(record)
        record.status, record.detail = "failed", detail
        record.finished_at = datetime.now(timezone.utc).replace(tzinfo=None)
        record.seconds = round((record.finished_at - record.started_at).total_seconds(), 3)
        record_run_or_warn(settings, record)


def _finish(record: RunRecord, start: float) -> None:
    record.finished_at = datetime.now(timezone.utc).replace(tzinfo=None)
    record.seconds = round(time.monotonic() - start, 3)
