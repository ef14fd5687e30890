"""The DDL from postgresdb applies on real Postgres and MariaDB, twice, and behaves as documented."""
import dataclasses
import socket
import uuid

from mysql.connector import errors as mysql_errors
from mysql.connector.constants import ClientFlag
import psycopg2
import pytest

import postgresdb
from shopflow import db

pytestmark = pytest.mark.integration


@pytest.fixture()
def pg_scratch(postgres):
    """A throwaway schema with the full DDL, so tests never touch the generated `source` data."""
    settings = dataclasses.replace(postgres, POSTGRES_SCHEMA=f"t_{uuid.uuid4().hex[:10]}")
    db.apply_postgres_schema(settings)
    db.apply_postgres_schema(settings)  # idempotent
    yield settings
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA {settings.POSTGRES_SCHEMA} CASCADE")


def _insert_user(cur, schema, email="ana@example.com", status="Gold"):
    cur.execute(f"INSERT INTO {schema}.users (first_name, last_name, email, phone, registration_date, loyalty_status)"
                " VALUES (%s, %s, %s, NULL, '2024-01-01T23:59:59Z', %s) RETURNING user_id, updated_at, change_txid",
                ("Zoë", "Ñúñez 🎉", email, status))
    return cur.fetchone()


def test_postgres_tables_and_columns(pg_scratch):
    with db.pg_connection(pg_scratch) as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
                    (pg_scratch.POSTGRES_SCHEMA,))
        columns = {}
        for table, column in cur.fetchall():
            columns.setdefault(table, set()).add(column)
    for table in postgresdb.TABLES:
        assert columns[table.name] == set(table.column_names) | {"updated_at", "change_txid"}
    assert columns["deleted_rows"] >= {"table_name", "row_id", "change_txid"}


def test_postgres_constraints_reject_bad_rows(pg_scratch):
    schema = pg_scratch.POSTGRES_SCHEMA
    with db.pg_connection(pg_scratch) as conn, conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.CheckViolation):
            _insert_user(cur, schema, status="Platinum")
    with db.pg_connection(pg_scratch) as conn, conn.cursor() as cur:
        _insert_user(cur, schema)
        with pytest.raises(psycopg2.errors.UniqueViolation):
            _insert_user(cur, schema)
    with db.pg_connection(pg_scratch) as conn, conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.ForeignKeyViolation):
            cur.execute(f"INSERT INTO {schema}.orders (user_id, order_date, total_amount, status)"
                        " VALUES (999999, now(), 1.00, 'Pending')")


def test_update_touches_tracking_columns_and_delete_leaves_tombstone(pg_scratch):
    schema = pg_scratch.POSTGRES_SCHEMA
    with db.pg_connection(pg_scratch) as conn, conn.cursor() as cur:
        user_id, updated_at, txid = _insert_user(cur, schema)
    with db.pg_connection(pg_scratch) as conn, conn.cursor() as cur:
        cur.execute(f"UPDATE {schema}.users SET loyalty_status = 'Gold' WHERE user_id = %s "
                    "RETURNING updated_at, change_txid", (user_id,))
        assert cur.fetchone() == (updated_at, txid), "a no-op update must not count as a change"
    with db.pg_connection(pg_scratch) as conn, conn.cursor() as cur:
        cur.execute(f"UPDATE {schema}.users SET loyalty_status = 'Silver' WHERE user_id = %s "
                    "RETURNING updated_at, change_txid", (user_id,))
        new_updated_at, new_txid = cur.fetchone()
    assert new_updated_at > updated_at and new_txid > txid
    with db.pg_connection(pg_scratch) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {schema}.users WHERE user_id = %s", (user_id,))
        cur.execute(f"TRUNCATE {schema}.reviews")
        cur.execute(f"SELECT table_name, row_id FROM {schema}.deleted_rows ORDER BY tombstone_id")
        assert cur.fetchall() == [("users", user_id), ("reviews", None)]


def test_unicode_round_trip_in_postgres(pg_scratch):
    with db.pg_connection(pg_scratch) as conn, conn.cursor() as cur:
        user_id = _insert_user(cur, pg_scratch.POSTGRES_SCHEMA)[0]
        cur.execute(f"SELECT first_name, last_name FROM {pg_scratch.POSTGRES_SCHEMA}.users WHERE user_id = %s",
                    (user_id,))
        assert cur.fetchone() == ("Zoë", "Ñúñez 🎉")


def test_mysql_ddl_applies_twice_and_keeps_utf8mb4_and_case(mysql):
    db.apply_mysql_schema(mysql)
    db.apply_mysql_schema(mysql)
    with db.mysql_connection(mysql) as conn:
        cur = conn.cursor()
        cur.execute("SELECT table_name, table_collation FROM information_schema.tables WHERE table_schema = %s",
                    (mysql.MYSQL_DATABASE,))
        collations = dict(cur.fetchall())
        for table in postgresdb.TABLES:
            assert collations[table.name] == "utf8mb4_bin"
        row = (10**12, "Zoë", "Ñúñez 🎉", "Case@Example.com", None, "2024-01-01 23:59:59.123456", "Gold",
               "2024-01-02 00:00:00")
        insert = ("INSERT INTO users (user_id, first_name, last_name, email, phone, registration_date,"
                  " loyalty_status, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")
        cur.execute(insert, row)
        # Binary collation: emails that differ only in case are distinct, as in Postgres.
        cur.execute(insert, (row[0] + 1, *row[1:3], "case@example.com", *row[4:]))
        cur.execute("SELECT first_name, last_name FROM users WHERE user_id = %s", (row[0],))
        assert cur.fetchone() == ("Zoë", "Ñúñez 🎉")
        with pytest.raises(mysql_errors.IntegrityError) as refused:  # the CHECK, not a lock wait or a deadlock
            cur.execute(insert, (row[0] + 2, *row[1:3], "x@example.com", None, row[5], "Platinum", row[7]))
        assert refused.value.errno == 4025, refused.value
        conn.rollback()


def test_mysql_connections_do_not_hold_back_small_writes(mysql, tmp_path):
    """TCP_NODELAY: a LOAD DATA LOCAL of a few rows otherwise waits ~40 ms for the server's delayed ACK. No connection
    attributes (the connector runs `lsb_release` for them in each new process), local files still allowed."""
    rows = tmp_path / "rows.csv"
    rows.write_text("1,a\n2,b\n", encoding="utf-8")
    with db.mysql_connection(mysql, autocommit=True, allow_local_infile=True) as conn:
        assert conn._socket.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert not conn.client_flags & ClientFlag.CONNECT_ARGS and conn.client_flags & ClientFlag.LOCAL_FILES
        cur = conn.cursor()
        cur.execute("CREATE TEMPORARY TABLE small_load (k INT PRIMARY KEY, v VARCHAR(5))")
        cur.execute(f"LOAD DATA LOCAL INFILE '{rows}' INTO TABLE small_load FIELDS TERMINATED BY ','")
        cur.execute("SELECT k, v FROM small_load ORDER BY k")
        assert cur.fetchall() == [(1, "a"), (2, "b")]


def test_the_reserved_schema_names_refused_are_the_servers(postgres):
    """config_values.PG_RESERVED is Postgres' own list of the words that cannot name a schema unquoted."""
    from shopflow.config_values import PG_RESERVED
    with db.pg_connection(postgres) as conn, conn.cursor() as cur:
        cur.execute("SELECT word FROM pg_get_keywords() WHERE catcode IN ('R', 'T')")
        assert {word for (word,) in cur.fetchall()} == PG_RESERVED
        cur.execute("SAVEPOINT before")
        with pytest.raises(psycopg2.errors.SyntaxError):
            cur.execute("CREATE SCHEMA user")  # what a POSTGRES_SCHEMA=user met at the first DDL
        cur.execute("ROLLBACK TO SAVEPOINT before")
