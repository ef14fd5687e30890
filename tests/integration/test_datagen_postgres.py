"""`python -m datagen.postgres` against a real Postgres, in a schema of its own (dropped at the end).

Order matters inside this module: first load, skipped rerun, --reset, bigger scale.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid

import pytest

from datagen.tables import generate
from postgresdb.models import CHANGE_TXID, TABLES, UPDATED_AT
from shopflow.config import Settings
from shopflow.db import apply_postgres_schema, pg_connection

pytestmark = pytest.mark.integration
SEED = 11

VIOLATIONS = {
    "order total is not the sum of its lines":
        "SELECT count(*) FROM {s}.orders o LEFT JOIN (SELECT order_id, sum(total_price) AS lines FROM "
        "{s}.order_details GROUP BY order_id) d USING (order_id) WHERE o.total_amount IS DISTINCT FROM d.lines",
    "line total is not quantity x price": "SELECT count(*) FROM {s}.order_details "
                                          "WHERE total_price <> quantity * price_per_unit",
    "line price is not the product price": "SELECT count(*) FROM {s}.order_details d JOIN {s}.products p "
                                           "USING (product_id) WHERE d.price_per_unit <> p.price",
    "rating outside 1..5": "SELECT count(*) FROM {s}.reviews WHERE rating NOT BETWEEN 1 AND 5",
    "order before one of its products was created":
        "SELECT count(*) FROM {s}.order_details d JOIN {s}.orders o USING (order_id) JOIN {s}.products p "
        "USING (product_id) WHERE o.order_date < p.creation_date",
    "order before registration": "SELECT count(*) FROM {s}.orders o JOIN {s}.users u USING (user_id) "
                                 "WHERE o.order_date < u.registration_date OR o.order_date > now()",
    "delivery out of order or against status":
        "SELECT count(*) FROM {s}.orders WHERE delivery_date < order_date OR delivery_date > now() OR "
        "(status IN ('Pending', 'Processing', 'Cancelled')) <> (delivery_date IS NULL)",
    "review before registration": "SELECT count(*) FROM {s}.reviews r JOIN {s}.users u USING (user_id) "
                                  "WHERE r.created_at < u.registration_date OR r.created_at > now()",
    "points before registration": "SELECT count(*) FROM {s}.loyalty_points p JOIN {s}.users u USING (user_id) "
                                  "WHERE p.created_at < u.registration_date OR p.created_at > now()",
}


def _foreign_keys() -> list[tuple[str, str, str, str]]:
    """(table, column, referenced table, referenced column) for every foreign key of the model."""
    return [(table.name, column.name, *column.references.split("."))
            for table in TABLES for column in table.foreign_keys]


def _orphan_queries(schema: str) -> dict[str, str]:
    return {f"orphan {table}.{column}": f"SELECT count(*) FROM {schema}.{table} c WHERE c.{column} IS NOT NULL "
                                        f"AND NOT EXISTS (SELECT 1 FROM {schema}.{target} p WHERE p.{key} = c.{column})"
            for table, column, target, key in _foreign_keys()}


@pytest.fixture(scope="module")
def pg(postgres):
    """Settings for a private schema, so loads and resets never touch the data other tests use."""
    settings = dataclasses.replace(postgres, POSTGRES_SCHEMA=f"datagen_it_{uuid.uuid4().hex[:8]}")
    yield settings
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {settings.POSTGRES_SCHEMA} CASCADE")


def run_generator(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {f.name: str(getattr(settings, f.name)) for f in dataclasses.fields(Settings)}
    return subprocess.run([sys.executable, "-m", "datagen.postgres", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def query(settings: Settings, sql: str, params: tuple = ()) -> list[tuple]:
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def counts(settings: Settings) -> dict[str, int]:
    return {t.name: query(settings, f"SELECT count(*) FROM {settings.POSTGRES_SCHEMA}.{t.name}")[0][0] for t in TABLES}


def expected_counts(settings: Settings, seed: int, scale: float) -> dict[str, int]:
    return {table.name: sum(1 for _ in rows) for table, rows in generate(settings, seed, scale)}


def fingerprint(settings: Settings, tracking: bool = False) -> dict[str, tuple]:
    """Per table: row count and md5 of all rows in key order (with updated_at/change_txid if `tracking`)."""
    result = {}
    for table in TABLES:
        columns = ", ".join(table.column_names + ([UPDATED_AT, CHANGE_TXID] if tracking else []))
        result[table.name] = query(settings, (
            f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.{table.primary_key}), '')) "
            f"FROM (SELECT {columns} FROM {settings.POSTGRES_SCHEMA}.{table.name}) t"))[0]
    return result


def assert_consistent(settings: Settings) -> None:
    checks = {name: sql.format(s=settings.POSTGRES_SCHEMA) for name, sql in VIOLATIONS.items()}
    checks |= _orphan_queries(settings.POSTGRES_SCHEMA)
    assert {name: query(settings, sql)[0][0] for name, sql in checks.items()} == {name: 0 for name in checks}


def test_first_run_loads_the_configured_sizes_consistently(pg):
    result = run_generator(pg, "--seed", str(SEED))
    assert result.returncode == 0, result.stderr
    loaded = counts(pg)
    assert loaded == expected_counts(pg, SEED, 1)
    assert {k: v for k, v in loaded.items() if k != "order_details"} == {
        "users": pg.DATAGEN_USERS, "product_categories": pg.DATAGEN_CATEGORIES, "products": pg.DATAGEN_PRODUCTS,
        "orders": pg.DATAGEN_ORDERS, "reviews": pg.DATAGEN_REVIEWS, "loyalty_points": pg.DATAGEN_LOYALTY_POINTS}
    lines = loaded["order_details"]
    assert pg.DATAGEN_ORDERS * pg.DATAGEN_DETAILS_MIN <= lines <= pg.DATAGEN_ORDERS * pg.DATAGEN_DETAILS_MAX
    assert_consistent(pg)
    assert "users" in result.stdout and f"{pg.DATAGEN_USERS:,} rows" in result.stdout


def test_sequences_continue_after_the_loaded_ids(pg):
    with pg_connection(pg) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {pg.POSTGRES_SCHEMA}.users (first_name, last_name, email, registration_date, "
                    "loyalty_status) VALUES ('Ada', 'Ł', 'ada@example.com', now(), 'Gold') RETURNING user_id")
        assert cur.fetchone()[0] == pg.DATAGEN_USERS + 1
        conn.rollback()


def test_the_foreign_keys_dropped_for_the_load_are_back_and_validated(pg):
    schema = pg.POSTGRES_SCHEMA
    found = query(pg, "SELECT conrelid::regclass::text, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                      "JOIN pg_namespace n ON n.oid = c.connamespace "
                      "WHERE n.nspname = %s AND contype = 'f' AND convalidated", (schema,))
    assert set(found) == {(f"{schema}.{table}", f"FOREIGN KEY ({column}) REFERENCES {schema}.{target}({key})")
                          for table, column, target, key in _foreign_keys()}


def test_the_loaded_tables_are_analyzed_with_the_load(pg):
    """The generator ANALYZEs what it loaded (`last_analyze` is set by ANALYZE only, not by autovacuum), so the
    planner and the replication's checksum (`SourceSnapshot.in_key_order`) see the rows' order at once."""
    analyzed = query(pg, "SELECT relname FROM pg_stat_user_tables WHERE schemaname = %s AND last_analyze IS NOT NULL",
                     (pg.POSTGRES_SCHEMA,))
    assert {name for (name,) in analyzed} >= {table.name for table in TABLES}


def test_second_run_skips_and_changes_nothing(pg):
    before = fingerprint(pg, tracking=True)
    result = run_generator(pg)
    assert result.returncode == 0, result.stderr
    assert "already hold data" in result.stdout and "--reset" in result.stdout
    assert len(result.stdout.splitlines()) == 1
    assert fingerprint(pg, tracking=True) == before


def test_a_source_holding_only_streamed_users_is_kept_and_named(postgres):
    """Users streamed in before the generator ever ran: nothing is generated (ids and emails could collide), and the
    line says that the other six tables are empty and what --reset would delete."""
    settings = dataclasses.replace(postgres, POSTGRES_SCHEMA=f"datagen_users_{uuid.uuid4().hex[:8]}")
    try:
        apply_postgres_schema(settings)
        with pg_connection(settings) as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO {settings.POSTGRES_SCHEMA}.users (first_name, last_name, email, "
                        "registration_date, loyalty_status) VALUES ('Ada', 'Ł', 'ada@example.com', now(), 'Gold')")
        result = run_generator(settings)
        assert result.returncode == 0, result.stderr
        assert "six other tables are empty" in result.stdout and "--reset deletes those users" in result.stdout
        assert counts(settings) == {table.name: int(table.name == "users") for table in TABLES}
    finally:
        with pg_connection(settings) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {settings.POSTGRES_SCHEMA} CASCADE")


def test_reset_regenerates_the_same_content_for_the_same_seed(pg):
    before, before_tracking = fingerprint(pg), fingerprint(pg, tracking=True)
    result = run_generator(pg, "--reset", "--seed", str(SEED))
    assert result.returncode == 0, result.stderr
    assert fingerprint(pg) == before
    assert fingerprint(pg, tracking=True) != before_tracking  # the rows really were rewritten
    assert_consistent(pg)


def test_a_bigger_scale_scales_every_table(pg):
    result = run_generator(pg, "--reset", "--scale", "2.5", "--seed", str(SEED + 1))
    assert result.returncode == 0, result.stderr
    loaded = counts(pg)
    assert loaded == expected_counts(pg, SEED + 1, 2.5)
    assert {k: v for k, v in loaded.items() if k != "order_details"} == {  # not only what generate() says
        "users": round(pg.DATAGEN_USERS * 2.5), "products": round(pg.DATAGEN_PRODUCTS * 2.5),
        "orders": round(pg.DATAGEN_ORDERS * 2.5), "product_categories": round(pg.DATAGEN_CATEGORIES * 2.5),
        "reviews": round(pg.DATAGEN_REVIEWS * 2.5), "loyalty_points": round(pg.DATAGEN_LOYALTY_POINTS * 2.5)}
    assert loaded["orders"] * pg.DATAGEN_DETAILS_MIN <= loaded["order_details"] <= (
        loaded["orders"] * pg.DATAGEN_DETAILS_MAX)
    assert_consistent(pg)


def test_a_reset_beside_an_idle_transaction_fails_naming_it_and_changes_nothing(pg, monkeypatch, capsys):
    """A SQL client idle in a transaction after reading a source table: the reset's TRUNCATE waited for it without a
    word and without end (and Ctrl-C does not stop a psycopg2 lock wait). It now gives up after LOCK_WAIT_S and
    names the session."""
    import datagen.postgres as generator

    before = fingerprint(pg)
    monkeypatch.setattr(generator, "LOCK_WAIT_S", 1)
    monkeypatch.setattr(generator, "settings_or_exit", lambda prog: pg)
    for statement in ("SELECT count(*) FROM {s}.reviews",  # a reader: the TRUNCATE waits for it
                      "UPDATE {s}.reviews SET rating = rating WHERE review_id = 1"):  # a writer: the schema's DDL
        with pg_connection(pg) as idle, idle.cursor() as cur:
            cur.execute(statement.format(s=pg.POSTGRES_SCHEMA))
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            with pytest.raises(SystemExit) as exited:
                generator.main(["--reset", "--seed", str(SEED)])
            idle.rollback()
        assert exited.value.code == 1
        err = capsys.readouterr().err
        assert f"the {pg.POSTGRES_SCHEMA} tables stayed in use for 1 s, so nothing was changed: session {pid} (" in err
        assert "idle in transaction" in err and ") on reviews. End those sessions" in err, err
        assert fingerprint(pg) == before


def test_a_reset_refused_for_a_table_of_yours_names_that_table(pg, monkeypatch, capsys):
    """The module's docstring promises Postgres' message naming the table that references ours: Postgres names it in
    the error's DETAIL line, which the one-line error used to drop."""
    import datagen.postgres as generator

    before = fingerprint(pg)
    monkeypatch.setattr(generator, "settings_or_exit", lambda prog: pg)
    with pg_connection(pg) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {pg.POSTGRES_SCHEMA}.my_notes (user_id bigint REFERENCES "
                    f"{pg.POSTGRES_SCHEMA}.users (user_id))")
    try:
        with pytest.raises(SystemExit) as exited:
            generator.main(["--reset", "--seed", str(SEED)])
    finally:
        with pg_connection(pg) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE {pg.POSTGRES_SCHEMA}.my_notes")
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert "cannot truncate a table referenced in a foreign key constraint" in err
    assert 'Table "my_notes" references "users".' in err and "TRUNCATE ... CASCADE" in err, err
    assert fingerprint(pg) == before
