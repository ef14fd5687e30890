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
