"""A small scratch replica for the marts tests (imported by the other test_marts_* modules) and its own check.

The seed holds what the marts must get right: a user without orders or points, a product without reviews,
negative points, a .005 average (HALF_UP), 4.125 ratings, an amount near the DECIMAL(12,2) limit, a week boundary
to the microsecond, a week without any activity, non-ASCII names.
"""
from __future__ import annotations

import dataclasses
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest

from postgresdb.models import TABLES_BY_NAME
from shopflow import db

pytestmark = pytest.mark.integration

SEED = {
    "users": [
        (1, "Zoë", "Ñúñez 🎉", "zoe@example.com", None, "2024-01-01 00:00:00", "Gold"),
        (2, "José", "O'Brien", "jose@example.com", "+33 1 23", "2024-01-07 23:59:59.999999", "Silver"),
        (3, "Ana", "Lið", "ana@example.com", None, "2024-01-24 10:00:00", "Bronze"),  # no order, no points
        (4, "Lee", "Kim", "lee@example.com", None, "2024-02-05 09:00:00", "Gold"),
    ],
    "product_categories": [(1, "Maison", None)],
    "products": [(p, name, None, 1, "10.00", 5, "2024-01-01 00:00:00")
                 for p, name in ((1, "Bouilloire"), (2, "Lampe ✨"), (3, "Tasse"))],  # Tasse: no review
    "orders": [
        (1, 1, "2024-01-08 00:00:00", "10.00", "Completed", None),
        (2, 4, "2024-01-09 12:00:00", "10.01", "Completed", "2024-01-10 00:00:00"),  # Gold/Completed: 10.005
        (3, 1, "2024-01-14 23:59:59.999999", "5.50", "Pending", None),
        (4, 2, "2024-01-15 08:00:00", "9999999999.99", "Shipped", None),
        (5, 2, "2024-02-06 00:00:00", "0.01", "Cancelled", None),  # weeks of Jan 22 and 29 between: quiet / 1 user
        (6, 1, "2024-02-07 00:00:00", "3.00", "Pending", None),
    ],
    "reviews": [(1, 1, 1, 4, "bien", "2024-01-10 00:00:00"), (2, 2, 1, 5, None, "2024-01-11 00:00:00")]
    + [(10 + i, 1 + i % 4, 2, rating, None, "2024-01-12 00:00:00") for i, rating in enumerate([5] + [4] * 7)],
    "loyalty_points": [(1, 1, 100, "Order", "2024-01-08 00:00:00"), (2, 1, -30, "Promotion", "2024-01-09 00:00:00"),
                       (3, 2, 50, "Review", "2024-01-11 00:00:00"), (4, 4, 0, "Birthday", "2024-02-05 00:00:00")],
}


def insert(settings, table: str, rows) -> None:
    names = TABLES_BY_NAME[table].column_names + ["updated_at"]
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with db.mysql_connection(settings) as conn:
        conn.cursor().executemany(
            f"INSERT INTO `{table}` ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
            [(*row, now) for row in rows])


def execute(settings, *statements, params=()) -> list[tuple]:
    with db.mysql_connection(settings) as conn:
        cursor = conn.cursor()
        for statement in statements:
            cursor.execute(statement, params)
        return cursor.fetchall() if cursor.with_rows else []


@contextmanager
def scratch_replica(mysql, prefix: str, seed: bool = True):
    """A fresh database `test_<prefix>_<random>` holding the (seeded) replica tables; dropped afterwards."""
    settings = dataclasses.replace(mysql, MYSQL_DATABASE=f"test_{prefix}_{uuid.uuid4().hex[:8]}")
    execute(mysql, f"CREATE DATABASE `{settings.MYSQL_DATABASE}`")
    try:
        db.apply_mysql_schema(settings)
        for table, rows in SEED.items() if seed else ():
            insert(settings, table, rows)
        yield settings
    finally:
        execute(mysql, f"DROP DATABASE IF EXISTS `{settings.MYSQL_DATABASE}`")


def test_the_seed_loads_into_the_replica_schema(mysql):
    with scratch_replica(mysql, "marts_seed") as settings:
        counts = {t: execute(settings, f"SELECT COUNT(*) FROM `{t}`")[0][0] for t in SEED}
    assert counts == {table: len(rows) for table, rows in SEED.items()}


def test_no_build_after_a_failed_replication_run_which_may_have_committed_part_of_it(spark, mysql):
    """The replication lock keeps out a run still going, not what a failed one committed: a build that had waited
    for it read some tables of its snapshot and others of the one before, and passed its gate."""
    from shopflow.marts.build import build_marts
    from shopflow.marts.replica import ReplicaIncomplete, check_last_replication
    from shopflow.replication.results import JOB
    from shopflow.runlog import NOT_STARTED, PIPELINE_RUNS_DDL

    run = "INSERT INTO pipeline_runs (job, started_at, status, mode, detail) VALUES (%s, UTC_TIMESTAMP(6), %s, %s, %s)"
    with scratch_replica(mysql, "after_failed") as replica:
        execute(replica, PIPELINE_RUNS_DDL)
        execute(replica, run, params=(JOB, "failed", None, "phase A: reviews"))
        with pytest.raises(ReplicaIncomplete, match=r"the last replication run \(started .* UTC\) failed.*reviews"):
            build_marts(spark, replica, run_id="it-after-failed-replication")
        assert execute(replica, "SHOW TABLES LIKE 'mart%'") == []
        execute(replica, run, params=(JOB, "ok", None, None))
        execute(replica, run, params=(JOB, "failed", NOT_STARTED, "the Spark master is down"))
        with db.mysql_connection(replica) as conn:
            check_last_replication(conn.cursor())  # the last run that started succeeded: no error


def test_no_build_before_a_replication_run_has_made_the_replica(spark, mysql):
    """Compose makes the replica tables with the first replication run: a build triggered before it failed on its
    first read (1146) with a traceback, and was retried twice the same way."""
    from shopflow.marts.build import build_marts
    from shopflow.marts.replica import ReplicaIncomplete

    with scratch_replica(mysql, "before_replication", seed=False) as replica:
        execute(replica, "DROP TABLE reviews", "DROP TABLE loyalty_points")
        with pytest.raises(ReplicaIncomplete, match=r"^the replica has no table loyalty_points, reviews: no "
                                                    r"replication run has made it yet; run replicate_postgres_to_"):
            build_marts(spark, replica, run_id="it-before-replication")
        assert execute(replica, "SHOW TABLES LIKE 'mart%'") == []


def test_no_build_or_verify_of_replica_columns_changed_by_hand(spark, mysql, capsys):
    """A column dropped, widened or made nullable in the replica since the last replication run: the build failed at
    its read or its staging with a traceback (exit 1, retried); verify blamed the marts ("built by an older
    version")."""
    from shopflow.marts import verify
    from shopflow.marts.build import build_marts
    from shopflow.marts.replica import ReplicaIncomplete

    with scratch_replica(mysql, "changed_by_hand") as replica:
        execute(replica, "ALTER TABLE orders DROP CONSTRAINT ck_orders_status_0", "ALTER TABLE orders DROP status",
                "ALTER TABLE users MODIFY first_name VARCHAR(150) NOT NULL")
        with pytest.raises(ReplicaIncomplete, match=r"^the replica's tables differ from postgresdb/models.py \(users"
                                                    r"\.first_name is varchar\(150\), the model's varchar\(100\); "
                                                    r"orders\.status is missing\): changed by hand\?"):
            build_marts(spark, replica, run_id="it-changed-by-hand")
        assert execute(replica, "SHOW TABLES LIKE 'mart%'") == []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(verify, "get_settings", lambda: replica)
            assert verify.main([]) == 2
        assert capsys.readouterr().err.startswith("verify: the replica's tables differ from postgresdb/models.py (")
