"""The source schema checked at every `make up` (`bootstrap.apply_source_schema`) against a live source: a client's
open transaction on a table."""
from __future__ import annotations

import dataclasses

import psycopg2
import pytest

from shopflow import db
from shopflow.stack import bootstrap, manager

pytestmark = pytest.mark.integration


def test_a_client_holding_a_table_of_a_complete_schema_does_not_stall_the_schema_check(postgres, monkeypatch):
    """`make up` checks the source schema at every start: `CREATE INDEX IF NOT EXISTS` and `CREATE OR REPLACE
    TRIGGER` lock each table before they look, so a client's open transaction on a table held it up to the lock
    wait while every writer of that table queued behind it. A complete schema now takes no table lock."""
    scratch = dataclasses.replace(postgres, POSTGRES_SCHEMA="test_stack_schema_live")
    bootstrap.apply_source_schema(scratch)
    monkeypatch.setattr(bootstrap, "SCHEMA_LOCK_WAIT_S", 1)
    holder = psycopg2.connect(postgres.postgres_dsn, application_name="a forgotten psql")
    try:
        holder.cursor().execute("LOCK TABLE test_stack_schema_live.orders IN ROW EXCLUSIVE MODE")  # as an UPDATE
        bootstrap.apply_source_schema(scratch)  # a StackError before: it waited for the holder
    finally:
        holder.close()
        _drop_schema(postgres, "test_stack_schema_live")


def test_a_client_holding_a_table_to_mend_stops_the_schema_check_with_its_session_named(postgres, monkeypatch):
    """A tracking trigger left disabled (a bulk fix) must be enabled again, which locks its table: a client's open
    transaction on it ends the wait after SCHEMA_LOCK_WAIT_S, naming the session, instead of waiting for ever."""
    scratch = dataclasses.replace(postgres, POSTGRES_SCHEMA="test_stack_schema_lock")
    bootstrap.apply_source_schema(scratch)
    with db.pg_connection(postgres) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE test_stack_schema_lock.orders DISABLE TRIGGER zzzz_touch_orders")
    monkeypatch.setattr(bootstrap, "SCHEMA_LOCK_WAIT_S", 1)
    holder = psycopg2.connect(postgres.postgres_dsn, application_name="a forgotten psql")
    try:
        holder.cursor().execute("LOCK TABLE test_stack_schema_lock.orders IN ROW EXCLUSIVE MODE")  # as an UPDATE
        with pytest.raises(manager.StackError) as refused:
            bootstrap.apply_source_schema(scratch)
        holder.rollback()
        bootstrap.apply_source_schema(scratch)  # the holder gone: the trigger enabled ALWAYS again
        with db.pg_connection(postgres) as conn, conn.cursor() as cur:
            cur.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'zzzz_touch_orders' "
                        "AND tgrelid = 'test_stack_schema_lock.orders'::regclass")
            assert cur.fetchall() == [("A",)]
    finally:
        holder.close()
        _drop_schema(postgres, "test_stack_schema_lock")
    message = str(refused.value)
    assert message.startswith("the test_stack_schema_lock tables stayed in use for 1 s, so their triggers and indexes")
    assert "a forgotten psql" in message and "orders" in message


def test_a_tracking_trigger_replaced_by_hand_is_made_again(postgres):
    """`CREATE OR REPLACE TRIGGER` keeps a trigger's comment: one replaced and enabled ALWAYS again (by hand, or by
    an older checkout's `make up`) kept the digest of the definition it replaced, and was never made again."""
    scratch = dataclasses.replace(postgres, POSTGRES_SCHEMA="test_stack_schema_replaced")

    def definition() -> str:
        with db.pg_connection(postgres) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'zzzz_touch_users' "
                        "AND tgrelid = 'test_stack_schema_replaced.users'::regclass")
            return cur.fetchone()[0]
    try:
        bootstrap.apply_source_schema(scratch)
        made = definition()
        with db.pg_connection(postgres) as conn, conn.cursor() as cur:  # fires on every UPDATE, changed or not
            cur.execute("CREATE OR REPLACE TRIGGER zzzz_touch_users BEFORE UPDATE ON test_stack_schema_replaced.users "
                        "FOR EACH ROW EXECUTE FUNCTION test_stack_schema_replaced.touch_row()")
            cur.execute("ALTER TABLE test_stack_schema_replaced.users ENABLE ALWAYS TRIGGER zzzz_touch_users")
        assert definition() != made
        bootstrap.apply_source_schema(scratch)
        assert definition() == made
    finally:
        _drop_schema(postgres, "test_stack_schema_replaced")


def _drop_schema(settings, schema: str) -> None:
    with db.pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA {schema} CASCADE")
