"""`verify`'s plain-SQL answers where the server's session defaults would bend them (code/shopflow/marts/verify.py)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal

import pytest
from test_marts_replica import SEED, execute, insert, scratch_replica

from shopflow import db
from shopflow.marts import all_marts, product_rating, weekly_activity
from shopflow.marts.build import build_marts
from shopflow.marts.verify import differences, reference_rows
from shopflow.stack.services import base_env

pytestmark = pytest.mark.integration


def test_reference_averages_are_exact_and_the_weekly_calendar_is_not_cut_short(mysql):
    """Users registered 26 years apart span 1,358 weeks (MariaDB's recursion stopped at 1,001); 455/101 = 4.50495…
    rounds to 4.50, as the mart rounds it."""
    with scratch_replica(mysql, "marts_verify", seed=False) as settings:
        insert(settings, "users", [(1, "Ann", "Lee", "ann@x.io", None, "2000-01-03 00:00:00", "Gold"),
                                   (2, "Bo", "Kim", "bo@x.io", None, "2026-01-05 00:00:00", "Silver")])
        insert(settings, "product_categories", [(1, "Maison", None)])
        insert(settings, "products", [(1, "Bouilloire", None, 1, "10.00", 5, "2024-01-01 00:00:00")])
        insert(settings, "reviews", [(i, 1 + i % 2, 1, 5 if i <= 51 else 4, None, "2024-01-12 00:00:00")
                                     for i in range(1, 102)])
        with db.mysql_connection(settings) as conn:
            cursor = conn.cursor()
            assert reference_rows(cursor, product_rating.MART) == [(Decimal(1), "Bouilloire", Decimal("4.50"),
                                                                    Decimal(101))]
            weeks = [row[0] for row in reference_rows(cursor, weekly_activity.MART)]
    assert (len(weeks), min(weeks), max(weeks)) == (1_358, date(2000, 1, 3), date(2026, 1, 5))


def test_keys_anywhere_in_bigints_range(spark, mysql):
    """Keys near 2^63: a gate's keyed total (SUM(product_id * count)) overflowed Spark's long, and a key of 2^63 - 1
    the replica read's upper bound (largest key + 1): every build failed with a traceback (exit 1, retried)."""
    big, keyed = 4 * 10**18, {"users": (0,), "products": (0,), "orders": (1,), "reviews": (1, 2),
                              "loyalty_points": (1,)}
    with scratch_replica(mysql, "marts_big_keys", seed=False) as settings:
        for table, rows in SEED.items():
            insert(settings, table, [tuple(big + v if i in keyed.get(table, ()) else v for i, v in enumerate(row))
                                     for row in rows])
        insert(settings, "loyalty_points", [(2**63 - 1, big + 4, 7, "Order", "2024-01-25 00:00:00")])
        assert not [c for r in build_marts(spark, settings, run_id="it-big-keys") for c in r.failures]
        with db.mysql_connection(settings) as conn:
            assert {m.name: differences(conn.cursor(), m)[1] for m in all_marts()} == {m.name: [] for m in all_marts()}


def test_weeks_across_the_gregorian_switch(spark, mysql):
    """Users registered around October 1582 (the stream takes years from 1000): Spark's calendar Monday 1582-10-11
    went through JDBC's java.sql.Date, which has no 1582-10-05..14, and was stored as 1582-10-15, a Friday; the gate
    failed at every build (exit 3), nothing published again. And a DATETIME in those days was read ten days later."""
    with scratch_replica(mysql, "marts_1582", seed=False) as settings:
        insert(settings, "users", [(1, "Ann", "Lee", "ann@x.io", None, "1582-09-27 10:00:00", "Gold"),
                                   (2, "Bo", "Kim", "bo@x.io", None, "1582-11-01 00:00:00", "Silver"),
                                   (3, "Cy", "Ng", "cy@x.io", None, "1582-10-07 12:00:00", "Silver")])
        assert not [c for r in build_marts(spark, settings, run_id="it-1582") for c in r.failures]
        with db.mysql_connection(settings) as conn:
            assert differences(conn.cursor(), weekly_activity.MART) == (6, [])
        assert date(1582, 10, 11) in [w for (w,) in execute(settings, "SELECT week_start FROM mart_weekly_activity")]


def test_a_mart_verify_has_compared_can_be_published_while_it_compares_the_others(mysql, monkeypatch):
    """verify read every mart in one transaction, so each mart it had read stayed locked (InnoDB metadata lock) until
    it ended: a build publishing that mart meanwhile (RENAME TABLE) waited, up to PublishBlocked."""
    from shopflow.marts import verify as verify_module
    from shopflow.marts.registry import all_marts
    from shopflow.runlog import PIPELINE_RUNS_DDL

    with scratch_replica(mysql, "marts_verify_mdl") as settings:
        execute(settings, PIPELINE_RUNS_DDL, *(mart.ddl(mart.name) for mart in all_marts()))
        compared, real = [], verify_module.differences

        def publish_the_first_meanwhile(cursor, mart):
            if compared:  # the first mart was compared: rename it the way a publish does, while verify goes on
                first = compared[0]
                with db.mysql_connection(settings, autocommit=True) as other:
                    publisher = other.cursor()
                    publisher.execute("SET SESSION lock_wait_timeout = 2")
                    publisher.execute(f"RENAME TABLE `{first}` TO `{first}__old`, `{first}__old` TO `{first}`")
            compared.append(mart.name)
            return real(cursor, mart)

        monkeypatch.setattr(verify_module, "differences", publish_the_first_meanwhile)
        report = verify_module.verify(settings)
    assert len(compared) == len(report) > 1


def test_verify_waits_for_a_replication_run_still_applying_its_tables(mysql, caplog):
    """A replication run commits table by table: verify compared marts with plain SQL over a half-applied replica and
    reported DIFFERENT without a word. It now waits for the run's lock, as the build does."""
    from concurrent.futures import ThreadPoolExecutor

    from shopflow.marts.registry import all_marts
    from shopflow.marts.replica import REPLICATION_LOCK_TIMEOUT_S
    from test_job_exits import _waits_for_lock

    from shopflow.marts.verify import verify
    from shopflow.replication.target import replication_lock_name
    from shopflow.runlog import PIPELINE_RUNS_DDL

    with scratch_replica(mysql, "marts_verify_run") as settings:
        execute(settings, PIPELINE_RUNS_DDL, *(mart.ddl(mart.name) for mart in all_marts()))
        with db.mysql_connection(settings, autocommit=True) as run, ThreadPoolExecutor(max_workers=1) as pool:
            lock = run.cursor()
            lock.execute("SELECT GET_LOCK(%s, 0)", (replication_lock_name(settings),))
            assert lock.fetchone() == (1,)
            comparing = pool.submit(verify, settings)
            deadline = time.monotonic() + 60  # until it waits in GET_LOCK (a sleep raced a slow connect)
            while not _waits_for_lock(settings, replication_lock_name(settings)):
                assert not comparing.done() and time.monotonic() < deadline, "verify ended or never waited for it"
                time.sleep(0.1)
            assert not comparing.done()  # still waiting for the run
            lock.execute("SELECT RELEASE_LOCK(%s)", (replication_lock_name(settings),))
            lock.fetchall()
            report = comparing.result(timeout=120)
    assert set(report) == {mart.name for mart in all_marts()}
    assert [r.getMessage() for r in caplog.records if r.name == "shopflow"] == [  # db.named_lock's line
        f"waiting for the lock {replication_lock_name(settings)!r}, held by a replication run, a marts build reading "
        f"the replica, or a marts verify (at most {REPLICATION_LOCK_TIMEOUT_S} s)"]


def test_ctrl_c_ends_a_verify_waiting_for_the_replication_lock_at_once(mysql, tmp_path):
    """Ctrl-C raised KeyboardInterrupt into the lock wait's MySQL call; closing the connection then sent a statement
    whose answer came only after the interrupted one's: verify went on for up to the lock's 900 s, then printed a
    traceback."""
    from test_job_exits import in_its_lock_wait

    from shopflow.replication.target import replication_lock_name

    with scratch_replica(mysql, "marts_verify", seed=False) as settings:
        command = [sys.executable, "-m", "shopflow.marts.verify"]
        with in_its_lock_wait(settings, replication_lock_name(settings), command, tmp_path / "verify.log") as run:
            run.send_signal(signal.SIGINT)
            try:
                code = run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail("verify went on for 30 s after Ctrl-C")
    assert (code, (tmp_path / "verify.log").read_text().splitlines()[-1]) == (130, "verify: interrupted")


def test_ctrl_c_ends_a_verify_whose_query_waits_at_once(mysql, tmp_path):
    """Its lock's RELEASE_LOCK, sent in a `finally` on the connection Ctrl-C had left mid-query, read that query's
    answer first: verify went on until the query ended (here: until another session's table lock goes)."""
    from shopflow.runlog import ensure_pipeline_runs

    with scratch_replica(mysql, "marts_verify", seed=False) as settings:
        ensure_pipeline_runs(settings)  # verify's first query reads it
        with db.mysql_connection(settings, autocommit=True) as holder:
            holder.cursor().execute("LOCK TABLES pipeline_runs WRITE")
            with open(tmp_path / "verify.log", "w") as out:
                run = subprocess.Popen([sys.executable, "-m", "shopflow.marts.verify"], env=base_env(settings),
                                       stdout=out, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while not execute(settings, "SELECT COUNT(*) FROM information_schema.processlist WHERE state LIKE "
                                            "'Waiting for table metadata lock' AND info LIKE '%pipeline_runs%'")[0][0]:
                    assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "verify.log").read_text()
                    time.sleep(0.1)
                run.send_signal(signal.SIGINT)
                try:
                    code = run.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pytest.fail("verify went on for 30 s after Ctrl-C")
            finally:
                run.kill()
                run.wait()
    assert (code, (tmp_path / "verify.log").read_text().splitlines()[-1]) == (130, "verify: interrupted")
