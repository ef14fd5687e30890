"""The dashboard's questions: one plain function each, `Settings` in, a `Result` (a pandas frame) out.

They read only the marts and the run tables, as the read-only account (`MARTS_READER_USER`). No caching here: the
app layer caches briefly. A table that does not exist yet (a fresh stack, marts never built) is not an error: the
result is empty and names the missing table, so a page can say so instead of showing a traceback.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import mysql.connector
import pandas as pd
from mysql.connector import errorcode

from shopflow.config import Settings
from shopflow.db import mysql_connection

# The `job` values in pipeline_runs (shopflow.marts.build.JOB, shopflow.replication.pipeline.JOB,
# shopflow.streaming.sink.JOB); repeated here because importing those modules pulls in pyspark.
BUILD_MARTS_JOB = "build_marts"
REPLICATION_JOB = "replicate_postgres_to_mysql"
STREAMING_JOB = "stream_users"
CONNECT_TIMEOUT_S = 5
# a query held by a lock (an ALTER, LOCK TABLES) or a server gone mid-query: the page says so instead of running on
QUERY_TIMEOUT_S = 30


@dataclass(frozen=True)
class Result:
    frame: pd.DataFrame
    missing_table: str | None = None  # set when the table asked for does not exist

    @property
    def empty(self) -> bool:
        return self.frame.empty


def _missing_table(error: mysql.connector.Error) -> str:
    found = re.search(r"Table '(?:[^'.]+\.)?([^']+)' doesn't exist", str(error.msg))
    return found[1] if found else "?"


def fetch(settings: Settings, sql: str, params: tuple = ()) -> Result:
    """Run one SELECT as the read-only account; autocommit, so no snapshot or metadata lock outlives it (a held
    lock would delay the marts build's atomic RENAME)."""
    try:
        with mysql_connection(settings, autocommit=True, user=settings.MARTS_READER_USER,
                              password=settings.MARTS_READER_PASSWORD, connection_timeout=CONNECT_TIMEOUT_S,
                              read_timeout=QUERY_TIMEOUT_S) as conn:
            cur = conn.cursor()
            cur.execute(sql, params)
            frame = pd.DataFrame(cur.fetchall(), columns=cur.column_names)
            cur.close()
    except mysql.connector.Error as error:
        if error.errno != errorcode.ER_NO_SUCH_TABLE:
            raise
        return Result(pd.DataFrame(), missing_table=_missing_table(error))
    return Result(frame)


# --- overview ---------------------------------------------------------------------------------------------------

def overview(settings: Settings) -> Result:
    """One row (none while the marts hold neither users nor orders): users, customers who ordered, orders, revenue,
    average check (the last three NULL while there are users but no orders)."""
    return fetch(settings, """
        SELECT (SELECT COUNT(*) FROM mart_user_loyalty_points) AS users, COUNT(DISTINCT user_id) AS customers,
               SUM(order_count) AS orders, SUM(total_spent) AS revenue,
               ROUND(SUM(total_spent) / SUM(order_count), 2) AS average_check
        FROM mart_user_activity HAVING COUNT(*) > 0 OR (SELECT COUNT(*) FROM mart_user_loyalty_points) > 0""")


def orders_by_status(settings: Settings) -> Result:
    return fetch(settings, """
        SELECT status, SUM(order_count) AS orders, SUM(total_spent) AS revenue, COUNT(*) AS customers
        FROM mart_user_activity GROUP BY status ORDER BY orders DESC, status""")


def last_run(settings: Settings, job: str, status: str | None = None) -> Result:
    """The latest whole-job row of `job` (with `status`, if given) and its age in seconds by the server's clock."""
    return fetch(settings, """
        SELECT job, status, started_at, finished_at, seconds, rows_read, rows_written, detail,
               TIMESTAMPDIFF(SECOND, COALESCE(finished_at, started_at), UTC_TIMESTAMP()) AS age_seconds
        FROM pipeline_runs
        WHERE job = %s AND table_name IS NULL AND (%s IS NULL OR status = %s)
        ORDER BY started_at DESC, run_id DESC LIMIT 1""", (job, status, status))


# --- weekly activity, products, loyalty, average check -----------------------------------------------------------

def weekly_activity(settings: Settings) -> Result:
    return fetch(settings, """
        SELECT week_start, new_users, orders, revenue, active_users FROM mart_weekly_activity ORDER BY week_start""")


def rating_summary(settings: Settings) -> Result:
    """One row (none while the mart is empty): products, rated, unrated, reviews, mean of the product ratings."""
    return fetch(settings, """
        SELECT COUNT(*) AS products, COUNT(rating) AS rated, COUNT(*) - COUNT(rating) AS unrated,
               SUM(review_count) AS reviews, ROUND(AVG(rating), 2) AS average_rating
        FROM mart_product_rating HAVING COUNT(*) > 0""")


def ranked_products(settings: Settings, best: bool, limit: int = 10) -> Result:
    """The `limit` best (or worst) rated products; ties go to the one with more reviews, then the lower id."""
    order = "DESC" if best else "ASC"
    return fetch(settings, f"""
        SELECT product_id, name, rating, review_count FROM mart_product_rating WHERE rating IS NOT NULL
        ORDER BY rating {order}, review_count DESC, product_id LIMIT %s""", (int(limit),))


def rating_distribution(settings: Settings) -> Result:
    """Rated products per half-star band (a 4.37 falls in band 4.0, i.e. [4.0, 4.5))."""
    return fetch(settings, """
        SELECT CAST(FLOOR(rating * 2) / 2 AS DECIMAL(2,1)) AS band, COUNT(*) AS products
        FROM mart_product_rating WHERE rating IS NOT NULL GROUP BY band ORDER BY band""")


def loyalty_tiers(settings: Settings) -> Result:
    return fetch(settings, """
        SELECT loyalty_status, COUNT(*) AS users, SUM(total_loyalty_points) AS total_points,
               ROUND(AVG(total_loyalty_points), 1) AS average_points
        FROM mart_user_loyalty_points GROUP BY loyalty_status ORDER BY loyalty_status""")


def top_loyalty_users(settings: Settings, limit: int = 10) -> Result:
    return fetch(settings, """
        SELECT user_id, first_name, last_name, loyalty_status, total_loyalty_points FROM mart_user_loyalty_points
        ORDER BY total_loyalty_points DESC, user_id LIMIT %s""", (int(limit),))


def average_check(settings: Settings) -> Result:
    return fetch(settings, """
        SELECT status, loyalty_status, average_check FROM mart_average_check ORDER BY status, loyalty_status""")


# --- pipeline health ---------------------------------------------------------------------------------------------
# A job writes one whole-run row (table_name NULL) plus detail rows per table; the streaming job writes only
# per-batch rows. A job's "runs" are its whole-run rows, or all its rows when it has none (`whole` below).
_JOBS = """(SELECT d.job, EXISTS (SELECT 1 FROM pipeline_runs w WHERE w.job = d.job AND w.table_name IS NULL) AS whole
                FROM (SELECT DISTINCT job FROM pipeline_runs) d) j"""


def last_runs(settings: Settings) -> Result:
    """Per job its latest run and when its latest successful run finished. Each is one backward walk of the
    (job, started_at) index, so the page stays fast as the table grows (a window MAX over each job's rows took
    MariaDB 24 s at 20,000 rows: it recomputes the whole frame per row)."""
    return fetch(settings, f"""
        SELECT r.job, r.status, r.started_at, r.finished_at, r.seconds,
               (SELECT o.finished_at FROM pipeline_runs o
                WHERE o.job = j.job AND o.status = 'ok' AND (o.table_name IS NULL OR NOT j.whole)
                ORDER BY o.started_at DESC, o.run_id DESC LIMIT 1) AS last_ok,
               r.rows_read, r.rows_written, r.rows_rejected, r.airflow_run_id, r.detail,
               CASE WHEN r.status = 'running' THEN TIMESTAMPDIFF(SECOND, r.started_at, UTC_TIMESTAMP(6)) END
                   AS running_s
        FROM {_JOBS}
        JOIN pipeline_runs r ON r.run_id = (
                SELECT l.run_id FROM pipeline_runs l WHERE l.job = j.job AND (l.table_name IS NULL OR NOT j.whole)
                ORDER BY l.started_at DESC, l.run_id DESC LIMIT 1)
        ORDER BY r.job""")


RUN_HISTORY_COLUMNS = ("job", "status", "started_at", "seconds", "rows_written")


def run_history(settings: Settings, limit: int = 200) -> Result:
    """The latest `limit` runs of each job, oldest first. One limit for all jobs let the stream's batch rows (≈ 700
    an hour under `make stream`) push the batch jobs' runs out of the chart. First where each job's latest runs
    start (a walk of `limit` entries of its (job, started_at) index), then one range of that index per job: the
    same in one statement read every row of every job (MariaDB joined on the job alone)."""
    starts = fetch(settings, f"""
        SELECT j.job, j.whole, COALESCE((SELECT l.started_at FROM pipeline_runs l
                                         WHERE l.job = j.job AND (l.table_name IS NULL OR NOT j.whole)
                                         ORDER BY l.started_at DESC, l.run_id DESC LIMIT 1 OFFSET %s), '1000-01-01')
        FROM {_JOBS}""", (int(limit) - 1,))
    if starts.empty:  # no runs yet (or no table): the history's columns, no rows
        return Result(pd.DataFrame(columns=RUN_HISTORY_COLUMNS), starts.missing_table)
    one_job = (f"SELECT run_id, {', '.join(RUN_HISTORY_COLUMNS)} FROM pipeline_runs "
               "WHERE job = %s AND started_at >= %s AND (table_name IS NULL OR %s)")
    ranges = " UNION ALL ".join([one_job] * len(starts.frame))
    params = tuple(value for job, whole, start in starts.frame.itertuples(index=False)
                   for value in (job, start, not whole))
    return fetch(settings, f"SELECT {', '.join(RUN_HISTORY_COLUMNS)} FROM ({ranges}) runs ORDER BY started_at, run_id",
                 params)


def quality_runs(settings: Settings, limit: int = 10) -> Result:
    """The latest `limit` quality-gate runs, latest first: when, how many checks, how many failed. A task cleared in
    the UI (or retried) runs the gate again under the same run id: a run shows its latest attempt, the results with
    its last `checked_at` (a build writes all of its results in one INSERT, so they share it). The latest runs are
    those of the highest result ids, found by a loose scan of the run_id index (which holds the id): grouping the
    whole table took 1.3 s at a year of 15-minute builds (1.8M rows, MariaDB), this 0.09 s."""
    return fetch(settings, """
        SELECT q.run_id, q.checked_at, COUNT(*) AS checks,
               CAST(SUM(CASE WHEN q.passed THEN 0 ELSE 1 END) AS SIGNED) AS failed
        FROM (SELECT run_id, MAX(result_id) AS last_id FROM quality_results
              GROUP BY run_id ORDER BY last_id DESC LIMIT %s) latest
        JOIN quality_results q ON q.run_id = latest.run_id
             AND q.checked_at = (SELECT l.checked_at FROM quality_results l WHERE l.result_id = latest.last_id)
        GROUP BY q.run_id, q.checked_at, latest.last_id ORDER BY latest.last_id DESC""", (int(limit),))


def failed_checks(settings: Settings, gates: int = 10, limit: int = 50) -> Result:
    """The failed checks of the latest `gates` quality-gate runs (those `quality_runs` lists, each its latest attempt),
    latest first. All failed checks ever read the whole table (no index on `passed`) and listed failures fixed long
    ago."""
    return fetch(settings, """
        SELECT q.checked_at, q.run_id, q.mart, q.check_name, q.observed, q.expected
        FROM (SELECT run_id, MAX(result_id) AS last_id FROM quality_results
              GROUP BY run_id ORDER BY last_id DESC LIMIT %s) latest
        JOIN quality_results q ON q.run_id = latest.run_id
             AND q.checked_at = (SELECT l.checked_at FROM quality_results l WHERE l.result_id = latest.last_id)
        WHERE NOT q.passed ORDER BY q.checked_at DESC, q.result_id DESC LIMIT %s""", (int(gates), int(limit)))


def last_stream_batch(settings: Settings) -> Result:
    """The streaming job's latest applied batch: its age by the server's clock, and the events the topic still held
    after it (`events_behind`, the batch's recorded lag; NULL when the job could not ask the broker, or the detail
    was clipped). Not `lag`: a reserved word in MySQL 8."""
    return fetch(settings, """
        SELECT finished_at, TIMESTAMPDIFF(SECOND, finished_at, UTC_TIMESTAMP()) AS age_seconds,
               CAST(JSON_VALUE(IF(JSON_VALID(detail), detail, NULL), '$.lag') AS SIGNED) AS events_behind
        FROM pipeline_runs WHERE job = %s AND status = 'ok'
        ORDER BY started_at DESC, run_id DESC LIMIT 1""", (STREAMING_JOB,))


def rejected_events(settings: Settings) -> Result:
    """Events the streaming job dead-lettered, summed over its committed batches (a replayed batch adds none)."""
    return fetch(settings, """
        SELECT CAST(COALESCE(SUM(rows_rejected), 0) AS SIGNED) AS rejected,
               CAST(COALESCE(SUM(rows_read), 0) AS SIGNED) AS events_read, COUNT(*) AS batches,
               MAX(finished_at) AS last_batch
        FROM pipeline_runs WHERE job = %s AND status = 'ok'""", (STREAMING_JOB,))
