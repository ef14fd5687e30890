"""A staging table a failed gate left for inspection, held open by a session: the next build's DROP of it gives up
after STAGING_LOCK_WAIT_S and names the session (MariaDB's own lock wait is a day)."""
from __future__ import annotations

import pytest
from attempt_support import Attempt
from test_marts_replica import scratch_replica

from shopflow import db
from shopflow.marts import all_marts
from shopflow.marts import store as mart_store
from shopflow.marts.store import MartStore, PublishBlocked, staging_name

pytestmark = pytest.mark.integration


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
