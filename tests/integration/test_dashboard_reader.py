"""The read-only account the dashboard (and SQL clients) use: it reads `mysql_db`, and every write is refused."""
from __future__ import annotations

import pytest
from mysql.connector import Error as MySQLError
from mysql.connector import errorcode

from shopflow.db import mysql_connection

pytestmark = pytest.mark.integration

WRITES = [
    "INSERT INTO users (user_id, first_name, last_name, email, registration_date, loyalty_status) "
    "VALUES (-1, 'x', 'y', 'reader-test@example.com', '2024-01-01', 'Gold')",
    "UPDATE users SET first_name = 'x' WHERE user_id = -1",
    "DELETE FROM users WHERE user_id = -1",
    "CREATE TABLE reader_may_not_create (id INT)",
    "DROP TABLE users",
    "TRUNCATE TABLE users",
    "ALTER TABLE users ADD COLUMN reader_may_not_alter INT",
    "CREATE DATABASE test_dash_reader_may_not_create",
]
REFUSED = {errorcode.ER_TABLEACCESS_DENIED_ERROR, errorcode.ER_DBACCESS_DENIED_ERROR}  # 1142, 1044


def reader(settings):
    return mysql_connection(settings, autocommit=True, user=settings.MARTS_READER_USER,
                            password=settings.MARTS_READER_PASSWORD)


def test_the_reader_can_read_the_database(mysql):
    with reader(mysql) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM users")
        seen = cursor.fetchone()[0]
        cursor.execute("SHOW GRANTS")
        grants = " ".join(row[0] for row in cursor.fetchall())
    assert f"GRANT SELECT ON `{mysql.MYSQL_DATABASE}`.*" in grants
    with mysql_connection(mysql, autocommit=True) as conn:  # the owner's count: the reader sees every row
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM users")
        assert cursor.fetchone()[0] == seen


@pytest.mark.parametrize("statement", WRITES, ids=lambda s: " ".join(s.split()[:2]))
def test_the_reader_cannot_write(mysql, statement):
    with reader(mysql) as conn:
        cursor = conn.cursor()
        with pytest.raises(MySQLError) as refused:
            cursor.execute(statement)
    assert refused.value.errno in REFUSED, refused.value
