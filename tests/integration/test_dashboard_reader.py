"""The read-only account the dashboard (and SQL clients) use: it reads `mysql_db`, and every write is refused."""
from __future__ import annotations

import pytest
from mysql.connector import Error as MySQLError
from mysql.connector import errorcode

from shopflow.db import mysql_connection

pytestmark = pytest.mark.integration

# Against a probe table the test creates, not the replica's own tables: if the reader's grants ever regress, the
# test fails and a DROP or TRUNCATE that went through costs nothing (the fixture drops what a write left).
PROBE = "dashboard_reader_probe"
WRITES = [
    f"INSERT INTO {PROBE} (id, label) VALUES (2, 'x')",
    f"UPDATE {PROBE} SET label = 'x' WHERE id = 1",
    f"DELETE FROM {PROBE} WHERE id = 1",
    "CREATE TABLE reader_may_not_create (id INT)",
    f"DROP TABLE {PROBE}",
    f"TRUNCATE TABLE {PROBE}",
    f"ALTER TABLE {PROBE} ADD COLUMN reader_may_not_alter INT",
    "CREATE DATABASE test_dash_reader_may_not_create",
]
REFUSED = {errorcode.ER_TABLEACCESS_DENIED_ERROR, errorcode.ER_DBACCESS_DENIED_ERROR}  # 1142, 1044


def reader(settings):
    return mysql_connection(settings, autocommit=True, user=settings.MARTS_READER_USER,
                            password=settings.MARTS_READER_PASSWORD)


@pytest.fixture
def probe(mysql):
    """A one-row table of the owner in the replica's database; afterwards whatever a write let through is gone."""
    with mysql_connection(mysql, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.execute(f"DROP TABLE IF EXISTS {PROBE}")
        cursor.execute(f"CREATE TABLE {PROBE} (id INT PRIMARY KEY, label VARCHAR(10))")
        cursor.execute(f"INSERT INTO {PROBE} VALUES (1, 'kept')")
        yield mysql
        cursor.execute(f"DROP TABLE IF EXISTS {PROBE}, reader_may_not_create")
        cursor.execute("DROP DATABASE IF EXISTS test_dash_reader_may_not_create")


def test_the_reader_can_read_the_database(probe):
    """A row the owner wrote is there for the reader (counting the live `users` compared 0 with 0 on a fresh
    machine)."""
    with mysql_connection(probe, autocommit=True) as conn:
        conn.cursor().execute(f"INSERT INTO {PROBE} VALUES (7, 'owner''s')")
    with reader(probe) as conn:
        cursor = conn.cursor()
        cursor.execute(f"SELECT id, label FROM {PROBE} ORDER BY id")
        rows = cursor.fetchall()
        cursor.execute("SHOW GRANTS")
        grants = " ".join(row[0] for row in cursor.fetchall())
    assert f"GRANT SELECT ON `{probe.MYSQL_DATABASE}`.*" in grants
    assert rows == [(1, "kept"), (7, "owner's")]


@pytest.mark.parametrize("statement", WRITES, ids=lambda s: " ".join(s.split()[:2]))
def test_the_reader_cannot_write(probe, statement):
    with reader(probe) as conn:
        cursor = conn.cursor()
        with pytest.raises(MySQLError) as refused:
            cursor.execute(statement)
    assert refused.value.errno in REFUSED, refused.value
    with mysql_connection(probe, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.execute(f"SELECT id, label FROM {PROBE}")
        assert cursor.fetchall() == [(1, "kept")]
