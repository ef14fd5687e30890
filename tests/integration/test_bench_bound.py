"""The bound's pipe (Postgres COPY into a FIFO that MySQL's LOAD DATA reads) ends when its Postgres side fails."""
from __future__ import annotations

import dataclasses
import threading

import psycopg2
import pytest
from replication_support import scratch  # noqa: F401
from test_streaming_support import free_port

from bench.bound import load_table
from postgresdb import mysql_table_ddl
from postgresdb.models import TABLES_BY_NAME
from shopflow import db

pytestmark = pytest.mark.integration


def test_a_source_refusing_the_connection_ends_the_load_with_its_error_not_a_wait_for_ever(scratch, tmp_path):
    """The writer connected before it opened the FIFO: a refused connection left LOAD DATA waiting for a writer
    that never came, and the bench hung until someone pressed Ctrl-C."""
    users = TABLES_BY_NAME["users"]
    unreachable = dataclasses.replace(scratch, POSTGRES_PORT=free_port())
    outcome = {}
    with db.mysql_connection(scratch, allow_local_infile=True) as conn:
        cursor = conn.cursor()
        cursor.execute(mysql_table_ddl(users))

        def load():
            try:
                load_table(unreachable, users, cursor, str(tmp_path))
            except Exception as error:
                outcome["error"] = error

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        loader.join(timeout=30)
        assert not loader.is_alive(), "the load still waits for its FIFO"
    assert isinstance(outcome.get("error"), psycopg2.OperationalError)
