"""The dashboard's query functions against real MariaDB: a scratch database with the marts' real DDL and a
hand-checked seed (test_dashboard_support), then the same database without tables and with empty ones."""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from mysql.connector import Error as MySQLError
from test_dashboard_support import NOW, OVERVIEW, RUN_COLUMNS, RUNS, SEED, ago, insert, scratch_db
from test_marts_replica import execute

from shopflow.dashboard import queries as q
from shopflow.runlog import PIPELINE_RUNS_DDL, ensure_pipeline_runs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded(mysql):
    with scratch_db(mysql, "queries") as settings:
        yield settings


def records(result: q.Result) -> list[tuple]:
    assert result.missing_table is None
    return [tuple(row) for row in result.frame.itertuples(index=False)]


def test_overview_matches_the_marts(seeded):
    (row,) = q.overview(seeded).frame.to_dict("records")
    assert row == {"users": 4, "customers": 3, "orders": Decimal(7), "revenue": Decimal(OVERVIEW["revenue"]),
                   "average_check": Decimal(OVERVIEW["average_check"])}
    assert records(q.orders_by_status(seeded)) == [("Completed", 5, Decimal("160.50"), 2),
                                                   ("Cancelled", 1, Decimal("9.99"), 1),
                                                   ("Pending", 1, Decimal("20.00"), 1)]


def test_weekly_activity_in_week_order(seeded):
    assert records(q.weekly_activity(seeded)) == [
        (date(2026, 1, 5), 2, 3, Decimal("120.50"), 1), (date(2026, 1, 12), 0, 0, Decimal("0.00"), 0),
        (date(2026, 1, 19), 2, 4, Decimal("69.99"), 3)]


def test_products_by_rating(seeded):
    assert records(q.rating_summary(seeded)) == [(5, 4, 1, Decimal(12), Decimal("3.31"))]  # 13.25 / 4 = 3.3125
    # ties on rating: more reviews first; the unrated product is in neither list
    assert records(q.ranked_products(seeded, True, 3)) == [(11, "Desk", Decimal("4.50"), 5),
                                                          (10, "Lamp ✨", Decimal("4.50"), 2),
                                                          (14, "Vase", Decimal("3.00"), 1)]
    assert [r[0] for r in records(q.ranked_products(seeded, False, 10))] == [12, 14, 11, 10]
    assert records(q.rating_distribution(seeded)) == [(Decimal("1.0"), 1), (Decimal("3.0"), 1), (Decimal("4.5"), 2)]


def test_loyalty_tiers_and_points(seeded):
    assert records(q.loyalty_tiers(seeded)) == [("Bronze", 1, Decimal(0), Decimal("0.0")),
                                                ("Gold", 2, Decimal(495), Decimal("247.5")),
                                                ("Silver", 1, Decimal(120), Decimal("120.0"))]
    assert [(r[0], r[4]) for r in records(q.top_loyalty_users(seeded, 3))] == [(1, 500), (2, 120), (3, 0)]


def test_average_check(seeded):
    assert records(q.average_check(seeded)) == sorted((s, t, Decimal(v)) for s, t, v, _ in SEED["mart_average_check"])


def test_last_run_is_the_latest_whole_run_and_can_ask_for_a_status(seeded):
    (latest,) = q.last_run(seeded, q.REPLICATION_JOB).frame.to_dict("records")
    (good,) = q.last_run(seeded, q.REPLICATION_JOB, "ok").frame.to_dict("records")
    assert (latest["status"], latest["seconds"]) == ("failed", Decimal("55.500"))
    assert (good["status"], good["rows_written"]) == ("ok", 900)  # the job row, not the later per-table one
    seeded_ago = (datetime.now(timezone.utc).replace(tzinfo=None) - NOW).total_seconds()  # RUNS are relative to NOW
    assert abs(good["age_seconds"] - (29 * 60 + seeded_ago)) <= 90
    assert q.last_run(seeded, "no_such_job").empty


def test_last_stream_batch_is_the_latest_applied_one_with_its_lag(seeded):
    (batch,) = q.last_stream_batch(seeded).frame.to_dict("records")
    # the latest ok batch, not the failed or replayed ones before it
    assert (batch["events_behind"], batch["finished_at"]) == (7, RUNS[9][4])
    seeded_ago = (datetime.now(timezone.utc).replace(tzinfo=None) - NOW).total_seconds()
    assert abs(batch["age_seconds"] - (12.9 * 60 + seeded_ago)) <= 90


def test_last_runs_per_job(seeded):
    frame = q.last_runs(seeded).frame
    assert list(frame["job"]) == ["build_marts", "replicate_postgres_to_mysql", "stream_users"]
    assert list(frame["status"]) == ["ok", "failed", "ok"]
    assert frame["rows_written"].fillna(-1).tolist() == [19, -1, 48]  # the failed run wrote nothing (NULL)
    assert "airflow_run_id" in frame.columns  # which DAG run to open in Airflow (NULL here: not run by Airflow)
    replication = frame.set_index("job").loc["replicate_postgres_to_mysql"]
    assert replication["last_ok"] == RUNS[0][4]  # finished_at of the last ok run, to the microsecond


def _rows_read(monkeypatch, query, settings) -> int:
    """How many rows the server read for one dashboard query (its session's Handler_read_* counters)."""
    real, reads = q.mysql_connection, []

    def handler_reads(conn) -> int:
        cur = conn.cursor()
        cur.execute("SHOW SESSION STATUS LIKE 'Handler_read%'")
        return sum(int(value) for _name, value in cur.fetchall())

    @contextmanager
    def counted(*args, **kwargs):
        with real(*args, **kwargs) as conn:
            before = handler_reads(conn)
            yield conn
            reads.append(handler_reads(conn) - before)

    monkeypatch.setattr(q, "mysql_connection", counted)
    query(settings)
    return reads[0]


def test_last_runs_reads_a_few_rows_however_long_the_run_history(mysql, monkeypatch):
    """Not a speed claim: a guard against a query that reads the whole history per page view. A window MAX that
    MariaDB recomputed per row took 24 s at 20,000 rows; then, without the (job, table_name) key, learning that the
    stream has no whole-run rows read every batch row (2.6M row reads at a month of `make stream`). A table made by
    an older version gets the key from `ensure_pipeline_runs` (`make up`)."""
    with scratch_db(mysql, "history", marts="none", runs=False) as settings:
        execute(settings, PIPELINE_RUNS_DDL.replace(",\n    KEY ix_pipeline_runs_job_table (job, table_name)", ""))
        rows = [(job, table, "ok", ago(i), ago(i - 0.1), 6.0, 1, 1, 0, None)
                for i in range(1, 7_001) for job, table in ((q.REPLICATION_JOB, None), (q.REPLICATION_JOB, "users"),
                                                            (q.STREAMING_JOB, "users"))]
        insert(settings, "pipeline_runs", RUN_COLUMNS, rows)
        without_key = _rows_read(monkeypatch, q.last_runs, settings)
        ensure_pipeline_runs(settings)
        ensure_pipeline_runs(settings)  # once added, left as it is
        reads = _rows_read(monkeypatch, q.last_runs, settings)
        frame = q.last_runs(settings).frame
        history_reads = _rows_read(monkeypatch, lambda s: q.run_history(s, limit=50), settings)
        history = q.run_history(settings, limit=50).frame
    assert list(frame["job"]) == [q.REPLICATION_JOB, q.STREAMING_JOB]
    assert list(frame["started_at"]) == [ago(1), ago(1)]
    assert without_key > 7_000 and reads < 1_000, (without_key, reads)
    # the same guard for the chart of each job's latest runs: 50 of each, reading a few thousand rows at most
    assert history.groupby("job").size().to_dict() == {q.REPLICATION_JOB: 50, q.STREAMING_JOB: 50}
    assert history_reads < 3_000, history_reads


def test_run_history_of_an_empty_run_table_has_its_columns(mysql):
    """The chart reads `seconds` and `started_at`: a fresh stack's empty table gave the first query's columns."""
    with scratch_db(mysql, "history_empty", marts="none", runs=False) as settings:
        execute(settings, PIPELINE_RUNS_DDL)
        history = q.run_history(settings)
    assert history.empty and tuple(history.frame.columns) == q.RUN_HISTORY_COLUMNS


def test_run_history_holds_whole_runs_and_stream_batches_only(seeded):
    frame = q.run_history(seeded).frame
    assert len(frame) == 2 + 2 + 4  # not the per-table replication row nor the per-mart build row
    assert frame["started_at"].is_monotonic_increasing
    # per job: the stream's batches (one row each) pushed the batch jobs out of one limit shared by all
    assert list(q.run_history(seeded, limit=1).frame["job"]) == ["build_marts", "stream_users",
                                                                  "replicate_postgres_to_mysql"]


def test_quality_gates(seeded):
    assert [(r[0], r[2], r[3]) for r in records(q.quality_runs(seeded))] == [("run-b", 3, 0), ("run-a", 2, 1)]
    assert [(r[0], r[2], r[3]) for r in records(q.quality_runs(seeded, limit=1))] == [("run-b", 3, 0)]  # the latest
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in records(q.failed_checks(seeded))] == [
        ("run-a", "mart_weekly_activity", "no_week_missing", "1", "0")]
    assert q.failed_checks(seeded, gates=1).empty  # run-b, the latest gate, passed: run-a's failure is not listed


def test_a_gate_run_again_under_its_run_id_shows_its_latest_attempt(mysql):
    """Clearing a build task in the UI runs the gate again under the same run id: the latest gate is that attempt,
    with its own checks only (not the first attempt's failure added)."""
    with scratch_db(mysql, "gate_rerun", marts="none") as settings:
        insert(settings, "quality_results", ("run_id", "checked_at", "mart", "check_name", "passed"),
               [("run-a", ago(5), "mart_weekly_activity", "no_week_missing", True),
                ("run-a", ago(5), "mart_weekly_activity", "not_null(week_start)", True)])
        assert [(r[0], r[1], r[2], r[3]) for r in records(q.quality_runs(settings))] == [
            ("run-a", ago(5), 2, 0), ("run-b", ago(19), 3, 0)]
        assert [(r[0], r[2], r[3]) for r in records(q.quality_runs(settings, limit=1))] == [("run-a", 2, 0)]
        assert q.failed_checks(settings).empty  # run-a's first attempt failed; its latest, the one shown, passed


def test_rejected_events_count_committed_batches_only(seeded):
    (row,) = q.rejected_events(seeded).frame.to_dict("records")
    assert (row["rejected"], row["events_read"], row["batches"]) == (7, 150, 2)


ALL_QUERIES = {"overview": (), "orders_by_status": (), "weekly_activity": (), "rating_summary": (),
               "ranked_products": (True,), "rating_distribution": (), "loyalty_tiers": (), "top_loyalty_users": (),
               "average_check": (), "last_run": (q.BUILD_MARTS_JOB,), "last_runs": (), "run_history": (),
               "quality_runs": (), "failed_checks": (), "rejected_events": (), "last_stream_batch": ()}


def test_missing_tables_give_an_empty_result_naming_the_table(mysql):
    with scratch_db(mysql, "missing", marts="none", runs=False) as settings:
        results = {name: getattr(q, name)(settings, *args) for name, args in ALL_QUERIES.items()}
    for name, result in results.items():
        assert result.empty, name
        assert result.missing_table in {"mart_user_activity", "mart_user_loyalty_points", "mart_weekly_activity",
                                        "mart_product_rating", "mart_average_check", "pipeline_runs",
                                        "quality_results"}, name
    assert results["weekly_activity"].missing_table == "mart_weekly_activity"
    assert results["failed_checks"].missing_table == "quality_results"


def test_empty_marts_give_no_rows_not_a_row_of_nulls(mysql):
    with scratch_db(mysql, "empty", marts="empty", runs=False) as settings:
        for name in ("overview", "orders_by_status", "weekly_activity", "rating_summary", "loyalty_tiers",
                     "average_check"):
            result = getattr(q, name)(settings)
            assert result.empty and result.missing_table is None, name


def test_overview_shows_the_users_before_any_order(mysql):
    """Users replicated, no order yet: the overview still has its row, with the users counted (it had none)."""
    with scratch_db(mysql, "noorders", marts="empty", runs=False) as settings:
        insert(settings, "mart_user_loyalty_points",
               ("user_id", "first_name", "last_name", "loyalty_status", "total_loyalty_points"),
               SEED["mart_user_loyalty_points"][:2])
        (row,) = q.overview(settings).frame.to_dict("records")
    assert row == {"users": 2, "customers": 0, "orders": None, "revenue": None, "average_check": None}


def test_other_errors_are_not_swallowed(seeded):
    with pytest.raises(MySQLError) as refused:
        q.overview(dataclasses.replace(seeded, MARTS_READER_PASSWORD="wrong-password"))
    assert refused.value.errno == 1045  # access denied


def test_a_query_that_does_not_answer_ends_in_the_connectors_error(mysql, monkeypatch):
    """A lock held by an admin's ALTER or LOCK TABLES kept the page "Running…" for as long (MariaDB's lock wait is a
    day): the app shows a connector error in one line instead."""
    monkeypatch.setattr(q, "QUERY_TIMEOUT_S", 1)
    with scratch_db(mysql, "slow", marts="none", runs=False) as settings:
        with pytest.raises(MySQLError, match="timed out|timeout"):
            q.fetch(settings, "SELECT SLEEP(20)")
