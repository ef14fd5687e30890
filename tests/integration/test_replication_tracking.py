"""The source's change tracking switched off (a trigger disabled or dropped) or a column's type changed, against real
Postgres and MariaDB: the run refuses, naming it, instead of missing the changes made meanwhile until the whole-table
check, or failing every whole-table check blaming the data."""
from __future__ import annotations

import pytest
from replication_support import assert_replica_equals_source, pg, replica_rows, scratch, seed, written  # noqa: F401

from postgresdb.models import TABLES_BY_NAME
from shopflow import db
from shopflow.replication import ReplicationRefused, replicate

pytestmark = pytest.mark.integration


def test_a_disabled_tracking_trigger_refuses_the_run_and_the_table_reloads_once_it_is_back(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    orders = replica_rows(scratch, TABLES_BY_NAME["orders"])
    pg(scratch, "ALTER TABLE {s}.orders DISABLE TRIGGER zzzz_touch_orders",  # left off after a bulk fix
       "DROP TRIGGER tombstone_reviews ON {s}.reviews",
       "UPDATE {s}.orders SET status = 'Cancelled' WHERE order_id = 1")  # no new change_txid: untracked
    with pytest.raises(ReplicationRefused, match=rf"change tracking is off in the source.*\({scratch.POSTGRES_SCHEMA}"
                                                 rf"\.orders: zzzz_touch_orders; {scratch.POSTGRES_SCHEMA}\.reviews: "
                                                 r"tombstone_reviews\)"):
        replicate(spark, scratch)
    assert replica_rows(scratch, TABLES_BY_NAME["orders"]) == orders  # nothing replicated
    db.apply_postgres_schema(scratch)  # what `make up` does: the triggers back, enabled ALWAYS
    results = replicate(spark, scratch)
    assert {name for name, r in results.items() if r.plan.mode == "full"} == {"orders", "reviews"}
    assert_replica_equals_source(scratch)  # the untracked update too


def test_a_source_column_of_another_type_refuses_the_run_and_the_table_reloads_once_it_is_back(spark, scratch):
    """A timestamp without time zone, or another scale: the checksum's text of the column changed with its type, so
    every whole-table check failed and reloaded the table, blaming the data ("checksum source=… replica=…"). And an
    ALTER … TYPE rewrites the rows without their triggers: amounts rounded by numeric(12,0) kept their change_txid,
    so after the type was put back, incremental runs kept the old amounts in the replica."""
    seed(scratch)
    pg(scratch, "UPDATE {s}.orders SET total_amount = 19.99 WHERE order_id = 1")
    replicate(spark, scratch)
    pg(scratch, "ALTER TABLE {s}.orders ALTER COLUMN total_amount TYPE numeric(12,0)",  # 19.99 -> 20, 0.03 -> 0
       "ALTER TABLE {s}.orders ALTER COLUMN delivery_date TYPE timestamp",
       "ALTER TABLE {s}.users ALTER COLUMN phone TYPE text")  # a character type of another length: fine
    refusal = (rf"{scratch.POSTGRES_SCHEMA}\.orders\.total_amount is numeric\(12,0\), the model's numeric\(12,2\); "
               r"\w+\.orders\.delivery_date is timestamp without time zone, the model's timestamp with time zone")
    with pytest.raises(ReplicationRefused, match=refusal):
        replicate(spark, scratch)
    pg(scratch, "ALTER TABLE {s}.orders ALTER COLUMN total_amount TYPE numeric(12,2)",
       "ALTER TABLE {s}.orders ALTER COLUMN delivery_date TYPE timestamptz")
    results = replicate(spark, scratch)
    assert {name for name, r in results.items() if r.plan.mode == "full"} == {"orders"}
    assert_replica_equals_source(scratch)  # the rounded amount too


def test_an_update_only_an_application_trigger_or_a_case_insensitive_collation_sees_is_replicated(spark, scratch):
    """Two updates the touch let pass untracked: one that changed nothing until the application's own BEFORE UPDATE
    trigger, fired after the touch by name, changed a column; one changing only the case under a non-deterministic
    collation, which `IS DISTINCT FROM` took for equal. Each run said ok and the replica kept the old value until
    the daily whole-table check."""
    seed(scratch)
    pg(scratch, "UPDATE {s}.orders SET delivery_date = now() WHERE order_id = 1",  # from before the app's trigger
       "CREATE FUNCTION {s}.ship_when_delivered() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
       "IF NEW.delivery_date IS NOT NULL THEN NEW.status := 'Completed'; END IF; RETURN NEW; END $$",
       "CREATE TRIGGER zz_orders_status BEFORE UPDATE ON {s}.orders FOR EACH ROW "
       "EXECUTE FUNCTION {s}.ship_when_delivered()",
       "CREATE COLLATION {s}.nd (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
       "ALTER TABLE {s}.users ALTER COLUMN last_name TYPE varchar(100) COLLATE {s}.nd")
    replicate(spark, scratch)
    assert_replica_equals_source(scratch)
    pg(scratch, "UPDATE {s}.orders SET total_amount = total_amount WHERE order_id = 1",
       "UPDATE {s}.users SET last_name = upper(last_name) WHERE user_id = 1")

    results = replicate(spark, scratch)

    assert {name: r.plan.mode for name, r in results.items() if r.rows_written} == {
        "orders": "incremental", "users": "incremental"}
    assert_replica_equals_source(scratch)


def test_a_source_whose_touch_has_its_old_name_is_tracked_until_the_schema_renames_it(spark, scratch):
    seed(scratch)
    pg(scratch, "ALTER TRIGGER zzzz_touch_orders ON {s}.orders RENAME TO touch_orders")  # made before 2026-12-07
    replicate(spark, scratch)  # not refused: the old name tracks
    pg(scratch, "UPDATE {s}.orders SET status = 'Cancelled' WHERE order_id = 1")
    assert written(replicate(spark, scratch)) == {"orders": (0, 1, 0)}  # (inserted, updated, deleted)
    db.apply_postgres_schema(scratch)  # `make up`: the new one made, the old one dropped
    with db.pg_connection(scratch) as conn, conn.cursor() as cur:
        cur.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE %s",
                    (f"{scratch.POSTGRES_SCHEMA}.orders", "%touch%"))
        assert cur.fetchall() == [("zzzz_touch_orders",)]
