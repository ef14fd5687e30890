"""build_marts against a scratch replica in MariaDB (local Spark session): marts equal plain SQL over the replica,
readers never see a missing or half mart, a failing gate publishes nothing."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from test_marts_replica import SEED, execute, insert, scratch_replica

from postgresdb.models import ORDER_STATUSES
from shopflow import db
from shopflow.marts import all_marts
from shopflow.marts.build import JOB, build_marts
from shopflow.marts.store import PUBLISH_ATTEMPT_S, MartStore, PublishBlocked, staging_name
from shopflow.marts.verify import differences, replica_changed_since_build
from shopflow.quality import QualityGateError
from shopflow.runlog import NOT_STARTED

pytestmark = pytest.mark.integration
MART_NAMES = sorted(m.name for m in all_marts())


@pytest.fixture(scope="module")
def replica(mysql):
    with scratch_replica(mysql, "marts_build") as settings:
        yield settings


@pytest.fixture(scope="module")
def published(spark, replica):
    """The marts built once from the seed."""
    return build_marts(spark, replica, run_id="it-first")


def tables(settings) -> list[str]:
    return sorted(r[0] for r in execute(settings, "SELECT table_name FROM information_schema.tables "
                                                  "WHERE table_schema = DATABASE() AND table_name LIKE 'mart%'"))


def mart_rows(settings) -> dict[str, list[tuple]]:
    return {name: execute(settings, f"SELECT * FROM `{name}` ORDER BY 1, 2") for name in MART_NAMES}


def test_every_mart_equals_the_same_question_in_plain_sql(replica, published):
    assert tables(replica) == MART_NAMES  # published, no staging or __old table left
    with db.mysql_connection(replica) as conn:
        cursor = conn.cursor()
        assert {m.name: differences(cursor, m) for m in all_marts()} == {
            "mart_average_check": (4, []), "mart_product_rating": (3, []), "mart_user_activity": (5, []),
            "mart_user_loyalty_points": (4, []), "mart_weekly_activity": (6, [])}
    rows = mart_rows(replica)
    assert rows["mart_product_rating"] == [(1, "Bouilloire", Decimal("4.50"), 2), (2, "Lampe ✨", Decimal("4.13"), 8),
                                           (3, "Tasse", None, 0)]
    assert ("Completed", "Gold", Decimal("10.01"), 2) in rows["mart_average_check"]
    assert rows["mart_user_loyalty_points"][2] == (3, "Ana", "Lið", "Bronze", 0)
    assert [r[0].isoformat() for r in rows["mart_weekly_activity"] if r[1:] == (0, 0, 0, 0)] == ["2024-01-29"]


def test_every_check_and_run_is_recorded(replica, published):
    results = execute(replica, "SELECT mart, check_name, passed, observed, expected FROM quality_results "
                               "WHERE run_id = 'it-first'")
    assert len(results) == sum(len(m.checks) + 1 for m in all_marts()) and all(r[2] for r in results)
    assert ("mart_user_activity", "COALESCE(SUM(`total_spent`), 0) = orders: COALESCE(SUM(total_amount), 0)", 1,
            "10000000028.51", "10000000028.51") in results
    runs = execute(replica, "SELECT table_name, status, rows_written FROM pipeline_runs WHERE job = %s "
                            "ORDER BY run_id", params=(JOB,))
    rows = [len(execute(replica, r.mart.reference_sql)) for r in published]  # each mart's, then the build's total
    assert runs[:len(rows) + 1] == [(r.mart.name, "ok", n) for r, n in zip(published, rows)] + [(None, "ok", sum(rows))]


def test_verify_says_when_the_replica_changed_after_the_marts_were_built(replica, published):
    """A replication run that wrote rows, or failed (its upserts may be committed), after the last build started:
    the marts may differ from the replica for that reason alone, and `verify` says so first."""
    def note():
        with db.mysql_connection(replica) as conn:
            return replica_changed_since_build(conn.cursor())

    def replication_run(status: str, written: int | None, deleted: int | None = 0, mode: str | None = None):
        execute(replica, "INSERT INTO pipeline_runs (job, started_at, finished_at, rows_written, rows_deleted, "
                         "status, mode) VALUES ('replicate_postgres_to_mysql', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), "
                         "%s, %s, %s, %s)", params=(written, deleted, status, mode))

    assert note() is None  # built, no replication since
    try:
        replication_run("ok", 0)
        assert note() is None  # a run that changed nothing
        replication_run("failed", None, None, mode=NOT_STARTED)
        assert note() is None  # refused before it started (the Spark master down): it changed nothing
        replication_run("ok", 0, deleted=1)
        assert "a replication run changed the replica at" in note()  # a run that only deleted
        execute(replica, "DELETE FROM pipeline_runs WHERE job = 'replicate_postgres_to_mysql'")
        replication_run("failed", None)
        assert "a replication run changed the replica at" in note()
        # not "build the marts again": a build refuses (exit 3) after a failed replication run
        assert "A marts build would refuse now: the last replication run (started " in note()
        assert "failed, so the replica may hold part of it" in note() and "dags trigger" not in note()
        replication_run("ok", 5)
        assert "the last marts build started" in note() and "dags trigger build_marts" in note()
    finally:
        execute(replica, "DELETE FROM pipeline_runs WHERE job = 'replicate_postgres_to_mysql'")
    assert note() is None


def test_readers_see_the_old_or_the_new_mart_during_a_rebuild(spark, replica, published):
    insert(replica, "products", [(4, "Vase", None, 1, "1.00", 1, "2024-03-01 00:00:00")])
    seen, errors, done = set(), [], threading.Event()

    def read_while_building():
        with db.mysql_connection(replica, autocommit=True) as conn:
            cursor = conn.cursor()
            while not done.is_set():
                try:
                    cursor.execute("SELECT COUNT(*), COUNT(rating) FROM mart_product_rating")
                    seen.add(cursor.fetchone())
                except Exception as error:  # a missing table would show up here
                    errors.append(error)

    reader = threading.Thread(target=read_while_building)
    reader.start()
    try:
        build_marts(spark, replica, run_id="it-rebuild")
    finally:
        done.set()
        reader.join()
        after = execute(replica, "SELECT COUNT(*), COUNT(rating) FROM mart_product_rating")
        execute(replica, "DELETE FROM products WHERE product_id = 4")  # the module's replica and marts as they were
        build_marts(spark, replica, run_id="it-rebuild-undone")
    assert errors == []
    assert (3, 2) in seen and seen <= {(3, 2), (4, 2)}  # whole old mart, or whole new one, never a part
    assert after == [(4, 2)]
    assert tables(replica) == MART_NAMES


def test_an_empty_replica_gives_empty_marts(spark, mysql):
    with scratch_replica(mysql, "marts_empty", seed=False) as empty:
        results = build_marts(spark, empty, run_id="it-empty")
        assert tables(empty) == MART_NAMES and all(rows == [] for rows in mart_rows(empty).values())
    assert [r.rows for r in results] == [0] * len(MART_NAMES) and not [c for r in results for c in r.failures]


def test_users_without_any_order_give_their_weeks_and_empty_order_marts(spark, mysql):
    """Users but no orders yet (a new shop, or users streamed in before any order was generated): the weekly mart
    holds the registrations' weeks and passes its gate, although the orders' first and last weeks are NULL."""
    with scratch_replica(mysql, "marts_users_only", seed=False) as users_only:
        insert(users_only, "users", SEED["users"])
        results = {r.mart.name: r for r in build_marts(spark, users_only, run_id="it-users-only")}
        weekly = execute(users_only, "SELECT MIN(week_start), MAX(week_start), SUM(new_users), SUM(orders) "
                                     "FROM mart_weekly_activity")
    assert not [c for r in results.values() for c in r.failures]
    assert weekly[0][2:] == (len(SEED["users"]), 0) and weekly[0][0] <= weekly[0][1]
    assert results["mart_average_check"].rows == 0 and results["mart_user_loyalty_points"].rows == len(SEED["users"])


def _unknown_status(settings):
    statuses = ", ".join(f"'{status}'" for status in ORDER_STATUSES)
    execute(settings, "ALTER TABLE orders DROP CONSTRAINT ck_orders_status_0",
            "UPDATE orders SET status = 'Lost' WHERE order_id = 6")
    return lambda: execute(settings, "UPDATE orders SET status = 'Pending' WHERE order_id = 6",
                           f"ALTER TABLE orders ADD CONSTRAINT ck_orders_status_0 CHECK (status IN ({statuses}))")


def _order_of_an_unknown_user(settings):
    execute(settings, "SET foreign_key_checks = 0", "INSERT INTO orders VALUES (7, 99, '2024-02-07 00:00:00', 1.00, "
                                                    "'Pending', NULL, UTC_TIMESTAMP(6))")
    return lambda: execute(settings, "DELETE FROM orders WHERE order_id = 7")


@pytest.mark.parametrize("corrupt, failing", [
    (_unknown_status, {("mart_user_activity", "accepted_values(status)"),
                       ("mart_average_check", "accepted_values(status)")}),
    (_order_of_an_unknown_user, {  # the joins drop it: the counts and sums no longer match the replica's
        ("mart_user_activity", "COALESCE(SUM(`order_count`), 0) = orders: COALESCE(COUNT(*), 0)"),
        ("mart_user_activity", "COALESCE(SUM(`total_spent`), 0) = orders: COALESCE(SUM(total_amount), 0)"),
        ("mart_user_activity", "COUNT(*) = orders: COUNT(DISTINCT user_id, status)"),
        ("mart_user_activity", "COUNT(DISTINCT `user_id`) = orders: COUNT(DISTINCT user_id)"),
        ("mart_average_check", "COALESCE(SUM(`order_count`), 0) = orders: COALESCE(COUNT(*), 0)"),
        ("mart_average_check", "COALESCE(SUM(`average_check` * `order_count`), 0) >= orders: "
                               "COALESCE(SUM(total_amount), 0) - 0.005 * COUNT(*)")}),
], ids=["status outside the accepted list", "order of an unknown user"])
def test_a_failing_gate_fails_the_run_and_keeps_the_published_marts(spark, replica, published, corrupt, failing):
    before = mart_rows(replica)
    restore = corrupt(replica)
    try:
        with pytest.raises(QualityGateError) as error:
            build_marts(spark, replica, run_id=f"it-{corrupt.__name__}")
    finally:
        restore()
    assert {(f.mart, f.check) for f in error.value.failures} == failing
    assert mart_rows(replica) == before
    assert tables(replica) == sorted(MART_NAMES + [f"{n}__staging" for n in MART_NAMES])  # left to inspect
    failed = execute(replica, "SELECT mart, check_name FROM quality_results WHERE run_id = %s AND NOT passed",
                     params=(f"it-{corrupt.__name__}",))
    assert set(failed) == failing
    [(status, detail)] = execute(replica, "SELECT status, detail FROM pipeline_runs WHERE job = %s AND table_name "
                                          "IS NULL ORDER BY run_id DESC LIMIT 1", params=(JOB,))
    assert status == "failed" and "QualityGateError" in detail
    per_mart = execute(replica, "SELECT table_name, status, rows_written, detail FROM pipeline_runs WHERE job = %s "
                                "AND detail LIKE %s", params=(JOB, f"run it-{corrupt.__name__}:%"))
    assert sorted(r[0] for r in per_mart) == MART_NAMES  # the marts that passed their gate were not published either
    reason = f"not published (the quality gate failed for {len({mart for mart, _ in failing})} mart(s))"
    assert all(r[1:3] == ("failed", 0) and reason in r[3] for r in per_mart), per_mart


def test_a_session_holding_a_mart_open_fails_the_publish_by_name_without_stalling_readers(replica, published):
    """An idle transaction that read a mart (a SQL client with autocommit off) blocks the publishing RENAME; the
    rename waits a few seconds at a time, so other readers get through meanwhile, and then fails naming that
    session. The published marts stay as they were."""
    before, marts = mart_rows(replica), all_marts()
    latencies, done = [], threading.Event()

    def read_while_publishing():
        with db.mysql_connection(replica, autocommit=True) as conn:
            cursor = conn.cursor()
            while not done.is_set():
                start = time.monotonic()
                cursor.execute("SELECT COUNT(*) FROM mart_product_rating")
                cursor.fetchall()
                latencies.append(time.monotonic() - start)
                time.sleep(0.2)

    with db.mysql_connection(replica) as holder, db.mysql_connection(replica, autocommit=True) as conn:
        held = holder.cursor()
        held.execute("SELECT CONNECTION_ID()")
        [(holder_id,)] = held.fetchall()
        held.execute("SELECT COUNT(*) FROM mart_product_rating")  # opens the transaction, which holds the mart
        held.fetchall()
        store = MartStore(replica, conn.cursor())
        for mart in marts:
            store.create_staging(mart)
        reader = threading.Thread(target=read_while_publishing)
        reader.start()
        start = time.monotonic()
        try:
            with pytest.raises(PublishBlocked, match=rf"waited 8 s for other sessions to close them: (.*; )?"
                                                     rf"session {holder_id} \({replica.MYSQL_USER}@127\.0\.0\.1:\d+, in a "
                                                     r"transaction since .*, now Sleep\)"):
                store.publish(marts, wait_s=8)
        finally:
            done.set()
            reader.join()
        assert 8 <= time.monotonic() - start < 8 + PUBLISH_ATTEMPT_S + 2
        holder.rollback()
        conn.cursor().execute(f"DROP TABLE {', '.join(f'`{staging_name(m)}`' for m in marts)}")
    # a reader waits behind each rename attempt (up to PUBLISH_ATTEMPT_S), never for the whole 8 s
    assert len(latencies) >= 5 and max(latencies) < 4, latencies
    assert mart_rows(replica) == before and tables(replica) == MART_NAMES


