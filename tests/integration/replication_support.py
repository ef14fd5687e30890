"""Helpers and the scratch fixture shared by the replication integration tests (no tests here)."""

import dataclasses
import uuid
from datetime import datetime, timezone

import pytest

from postgresdb.models import TABLES
from shopflow import db
from shopflow.replication.checksum import checksum_from_row, mysql_checksum_sql, postgres_checksum_sql
from shopflow.replication.target import CHECKSUM_SESSION
from shopflow.replication.transform import replicated_columns

LONG_REVIEW = ("Très bien, señor! 👍🏽 " * 5_000)[:100_000]


@pytest.fixture()
def scratch(postgres, mysql):
    """Settings pointing at a fresh Postgres schema (full DDL) and a fresh MySQL database."""
    tag = uuid.uuid4().hex[:10]
    settings = dataclasses.replace(postgres, POSTGRES_SCHEMA=f"t_repl_{tag}", MYSQL_DATABASE=f"test_repl_{tag}")
    db.apply_postgres_schema(settings)
    with db.mysql_connection(mysql, autocommit=True) as conn:
        conn.cursor().execute(f"CREATE DATABASE {settings.MYSQL_DATABASE}")
    yield settings
    with db.mysql_connection(mysql, autocommit=True) as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {settings.MYSQL_DATABASE}")
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA {settings.POSTGRES_SCHEMA} CASCADE")


def pg(settings, *statements):
    """Run statements in one Postgres transaction; `{s}` is the scratch schema."""
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement.replace("{s}", settings.POSTGRES_SCHEMA))


def seed(settings):
    pg(settings,
       "INSERT INTO {s}.users VALUES "
       "(1, 'Zoë', 'Ñúñez 🎉', 'zoe@example.com', NULL, '2024-01-01 23:59:59.999999+00', 'Gold'),"
       "(2, 'José', 'O''Brien', 'jose@example.com', '+33 1 23 45', '2024-03-01 00:00:00.000001+00', 'Silver'),"
       f"(3, '{'É' * 99}🎉', 'Lee', 'lee@example.com', NULL, '2023-12-31 23:59:59+00', 'Bronze')",
       "INSERT INTO {s}.product_categories VALUES (1, 'Électronique', NULL), (2, 'Téléphones 📱', 1)",
       "INSERT INTO {s}.products VALUES "
       "(1, 'Big ticket', NULL, 1, 9999999999.99, 0, '2024-06-30 23:59:59.5+00'),"
       "(2, 'Câble', 'Un câble très long — ✨', 2, 0.01, 12, '2024-07-01 00:00:00+00')",
       "INSERT INTO {s}.orders VALUES "
       "(1, 1, '2024-12-31 23:59:59.999999+00', 9999999999.99, 'Pending', NULL),"
       "(2, 2, '2025-01-01 00:00:00+00', 0.03, 'Completed', '2025-01-03 12:00:00+00')",
       "INSERT INTO {s}.order_details VALUES (1, 1, 1, 1, 9999999999.99, 9999999999.99), (2, 2, 2, 3, 0.01, 0.03)",
       "INSERT INTO {s}.reviews VALUES "
       f"(1, 1, 1, 5, '{LONG_REVIEW}', '2024-02-29 23:59:59.999999+00'),"
       "(2, 2, 2, 1, NULL, '2024-03-01 00:00:00+00'), (3, 2, 1, 4, 'Très bien 👍', '2024-03-02 10:00:00+00')",
       "INSERT INTO {s}.loyalty_points VALUES (1, 1, 100, 'Order', '2024-01-01 00:00:00+00'),"
       "(2, 2, -50, 'Promotion', '2024-01-01 23:59:59.999999+00')")


def _normal(value):
    if isinstance(value, datetime):  # Postgres gives aware UTC datetimes, MySQL naive UTC ones
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    return value


def source_rows(settings, table):
    columns = ", ".join(c.name for c in replicated_columns(table))
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM {settings.POSTGRES_SCHEMA}.{table.name} ORDER BY 1")
        return [tuple(map(_normal, row)) for row in cur.fetchall()]


def replica_query(settings, statement, params=()):
    with db.mysql_connection(settings) as conn:
        cur = conn.cursor(dictionary=True)
        cur.execute(statement, params)
        return cur.fetchall()


def replica_rows(settings, table):
    columns = ", ".join(f"`{c.name}`" for c in replicated_columns(table))
    rows = replica_query(settings, f"SELECT {columns} FROM `{table.name}` ORDER BY 1")
    return [tuple(map(_normal, row.values())) for row in rows]


def assert_replica_equals_source(settings):
    for table in TABLES:
        assert replica_rows(settings, table) == source_rows(settings, table), table.name


def written(results):
    return {name: (r.inserted, r.updated, r.deleted) for name, r in results.items() if r.rows_written or r.deleted}


def whole_checksums(settings) -> dict[str, tuple[str, str]]:
    """Per table: the grouped whole-table checksum on the source and the replica's, as text."""
    with db.pg_connection(settings) as conn, conn.cursor() as cur, db.mysql_connection(settings) as mconn:
        mcur, sums = mconn.cursor(), {}
        mcur.execute(CHECKSUM_SESSION)
        for table in TABLES:
            cur.execute(postgres_checksum_sql(table, settings.POSTGRES_SCHEMA))
            mcur.execute(mysql_checksum_sql(table))
            sums[table.name] = (str(checksum_from_row(cur.fetchone())), str(checksum_from_row(mcur.fetchone())))
        return sums
