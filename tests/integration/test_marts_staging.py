"""Staging: a table a failed gate left for inspection, held open by a session (the next build's DROP of it gives up
after STAGING_LOCK_WAIT_S and names the session: MariaDB's own lock wait is a day); a mart that fails to stage."""
from __future__ import annotations

import mysql.connector
import pytest
from attempt_support import Attempt
from test_marts_build import MART_NAMES, mart_rows, published, replica  # noqa: F401  (module fixtures)
from test_marts_replica import execute, scratch_replica

from shopflow import db
from shopflow.marts import all_marts
from shopflow.marts import store as mart_store
from shopflow.marts.build import JOB, build_marts
from shopflow.marts.store import MartStore, PublishBlocked, staging_name

pytestmark = pytest.mark.integration
__all__ = ["published", "replica"]


def test_a_session_holding_a_leftover_staging_table_fails_the_next_build_by_name(mysql, monkeypatch):
    """A failed gate's staging table read with autocommit off, the session left idle: the next build's DROP of it
    waits STAGING_LOCK_WAIT_S (3 s here), not the server's day, then names that session."""
    monkeypatch.setattr(mart_store, "STAGING_LOCK_WAIT_S", 3)
    mart = all_marts()[0]
    with scratch_replica(mysql, "marts_staging", seed=False) as replica:
        def next_build():
            with db.mysql_connection(replica, autocommit=True) as own:
                MartStore(replica, own.cursor()).create_staging(mart)

        with db.mysql_connection(replica) as holder, db.mysql_connection(replica, autocommit=True) as conn:
            MartStore(replica, conn.cursor()).create_staging(mart)  # the leftover
            held = holder.cursor()
            held.execute(f"SELECT CONNECTION_ID(), COUNT(*) FROM `{staging_name(mart)}`")  # a transaction holds it
            [(holder_id, _)] = held.fetchall()
            build = Attempt(next_build)
            still_waiting = build.running_after(20)
            holder.rollback()  # lets a DROP still waiting (the old behaviour) through
            build.running_after(20)
    assert not still_waiting, "the DROP of the leftover staging table was still waiting after 20 s"
    assert isinstance(build.error, PublishBlocked), build.error
    assert f"{mart.name}: dropping the staging table a failed build left" in str(build.error)
    assert f"session {holder_id} ({replica.MYSQL_USER}@127.0.0.1:" in str(build.error)


def test_a_mart_that_fails_to_stage_fails_the_run_and_the_others_gates_are_recorded(spark, replica, published,
                                                                                     monkeypatch):
    """One mart's staging failed (a lost connection) while the others staged and passed their gates: the first
    error ended the run before any result was written (no quality_results, no per-mart rows)."""
    original, broken = MartStore.write_staging, "mart_product_rating"

    def write_staging(self, frame, mart):
        if mart.name == broken:
            raise mysql.connector.errors.OperationalError(msg="Lost connection to MySQL server", errno=2013)
        return original(self, frame, mart)

    monkeypatch.setattr(MartStore, "write_staging", write_staging)
    before = mart_rows(replica)
    with pytest.raises(mysql.connector.errors.OperationalError, match="Lost connection"):
        build_marts(spark, replica, run_id="it-unstaged")
    assert mart_rows(replica) == before
    checked = execute(replica, "SELECT DISTINCT mart FROM quality_results WHERE run_id = 'it-unstaged'")
    assert sorted(m for (m,) in checked) == [n for n in MART_NAMES if n != broken]
    rows = dict(execute(replica, "SELECT table_name, detail FROM pipeline_runs WHERE job = %s AND status = 'failed' "
                                 "AND detail LIKE 'run it-unstaged:%'", params=(JOB,)))
    assert sorted(rows) == MART_NAMES
    assert rows[broken].startswith("run it-unstaged: not staged: OperationalError")
    assert all(f"not published ({broken} not staged: OperationalError)" in d for n, d in rows.items() if n != broken)


def test_replica_values_equal_only_under_the_marts_collation_fail_the_staging_in_one_line(spark, mysql):
    """'Completed ' passes the replica's CHECK (PAD SPACE), a hand edit: Spark groups it apart from 'Completed', the
    staging table's key holds them equal. The build ended in a ~1,000-line traceback, exit 1, retried twice."""
    from test_marts_replica import insert

    from shopflow.marts.store import StagingRefused

    with scratch_replica(mysql, "marts_pad_space") as replica:
        insert(replica, "orders", [(7, 1, "2024-01-08 10:00:00", "2.00", "Completed ", None)])
        with pytest.raises(StagingRefused, match=r"^mart_\w+: MySQL took two of its rows for one key \(Duplicate "
                                                 r"entry '[^\n]*Completed ?[^\n]*' for key '?PRIMARY'?\): replica"):
            build_marts(spark, replica, run_id="it-pad-space")
        assert [t for (t,) in execute(replica, "SHOW TABLES LIKE 'mart%'") if not t.endswith("__staging")] == []
