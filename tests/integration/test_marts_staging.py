"""A staging table a failed gate left for inspection, held open by a session: the next build's DROP of it gives up
after STAGING_LOCK_WAIT_S and names the session (MariaDB's own lock wait is a day)."""
from __future__ import annotations

import threading

import pytest
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
    mart, outcome = all_marts()[0], {}
    with scratch_replica(mysql, "marts_staging", seed=False) as replica:
        def next_build():
            with db.mysql_connection(replica, autocommit=True) as own:
                try:
                    MartStore(replica, own.cursor()).create_staging(mart)
                except Exception as error:  # noqa: BLE001 - asserted below
                    outcome["error"] = error

        with db.mysql_connection(replica) as holder, db.mysql_connection(replica, autocommit=True) as conn:
            MartStore(replica, conn.cursor()).create_staging(mart)  # the leftover
            held = holder.cursor()
            held.execute(f"SELECT CONNECTION_ID(), COUNT(*) FROM `{staging_name(mart)}`")  # a transaction holds it
            [(holder_id, _)] = held.fetchall()
            builder = threading.Thread(target=next_build, daemon=True)
            builder.start()
            builder.join(timeout=20)
            still_waiting = builder.is_alive()
            holder.rollback()  # lets a DROP still waiting (the old behaviour) through
            builder.join(timeout=20)
    assert not still_waiting, "the DROP of the leftover staging table was still waiting after 20 s"
    assert isinstance(outcome.get("error"), PublishBlocked), outcome
    assert f"{mart.name}: dropping the staging table a failed build left" in str(outcome["error"])
    assert f"session {holder_id} ({replica.MYSQL_USER}@127.0.0.1:" in str(outcome["error"])
