"""shopflow.db's connections against real Postgres: an error on a connection the server dropped is raised as it was,
not hidden behind the failed rollback of the dead connection."""
from __future__ import annotations

import psycopg2
import pytest

from shopflow import db

pytestmark = pytest.mark.integration


def test_an_error_on_a_dropped_connection_is_raised_as_it_was(postgres):
    with pytest.raises(psycopg2.OperationalError, match="server closed the connection") as raised:
        with db.pg_connection(postgres) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            with db.pg_connection(postgres, autocommit=True) as admin, admin.cursor() as other:
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            cur.execute("SELECT 1")
    assert db.postgres_gone(str(raised.value)) is not None


ODD_PASSWORD = "my secret 'pass' \\ with @:/%"


def test_a_password_with_spaces_quotes_and_backslashes_logs_in(postgres):
    """The connection string put the password in raw: a space made every connection fail ('missing "="'), a
    backslash vanished (authentication failed). Airflow's metadata URL and the printed psql URL are quoted too."""
    import dataclasses

    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    from shopflow.stack.bootstrap import pg_superuser
    from shopflow.stack.services import airflow_env

    admin = pg_superuser(postgres)
    try:
        with admin.cursor() as cur:
            cur.execute("DROP ROLE IF EXISTS test_odd_password")
            cur.execute(sql.SQL("CREATE ROLE test_odd_password LOGIN PASSWORD {}").format(sql.Literal(ODD_PASSWORD)))
        odd = dataclasses.replace(postgres, POSTGRES_USER="test_odd_password", POSTGRES_PASSWORD=ODD_PASSWORD)
        with db.pg_connection(odd) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == ("test_odd_password",)
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP ROLE IF EXISTS test_odd_password")
        admin.close()
    url = make_url(airflow_env(dataclasses.replace(postgres, AIRFLOW_DB_PASSWORD=ODD_PASSWORD))[
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (url.password, url.host, url.database) == (ODD_PASSWORD, postgres.POSTGRES_HOST, postgres.AIRFLOW_DB)


def test_a_named_lock_held_elsewhere_is_waited_for_out_loud_then_named(mysql, caplog):
    """A replication or marts job run by hand beside the DAG's waited up to 15 minutes for the replica's lock without
    a word, then ended in a traceback; now it says it waits, and the error names who holds such a lock."""
    import logging

    from shopflow.replication.results import ReplicaBusy, ReplicationError

    with db.mysql_connection(mysql, autocommit=True) as holder, db.mysql_connection(mysql, autocommit=True) as other:
        db.named_lock(holder.cursor(), "test_named_lock", 1, "the holder")
        with caplog.at_level(logging.WARNING, logger="shopflow"), pytest.raises(ReplicationError) as busy:
            db.named_lock(other.cursor(), "test_named_lock", 1, "a replication run", ReplicaBusy)
        assert str(busy.value) == "the lock 'test_named_lock' was held for over 1 s (by a replication run)"
        assert isinstance(busy.value, db.LockBusy)  # the marts job's one-line case too
        assert [r.getMessage() for r in caplog.records] == [
            "waiting for the lock 'test_named_lock', held by a replication run (at most 1 s)"]
        holder.cursor().execute("SELECT RELEASE_LOCK('test_named_lock')")
        caplog.clear()
        db.named_lock(other.cursor(), "test_named_lock", 1, "a replication run")  # free: taken without a word
        assert caplog.records == []
