"""The source's change tracking switched off (a trigger disabled or dropped) or a column's type changed, against real
Postgres and MariaDB: the run refuses, naming it, instead of missing the changes made meanwhile until the whole-table
check, or failing every whole-table check blaming the data."""
from __future__ import annotations

import pytest
from replication_support import assert_replica_equals_source, pg, replica_rows, scratch, seed  # noqa: F401

from postgresdb.models import TABLES_BY_NAME
from shopflow import db
from shopflow.replication import ReplicationRefused, replicate

pytestmark = pytest.mark.integration


def test_a_disabled_tracking_trigger_refuses_the_run_and_the_table_reloads_once_it_is_back(spark, scratch):
    seed(scratch)
    replicate(spark, scratch)
    orders = replica_rows(scratch, TABLES_BY_NAME["orders"])
    pg(scratch, "ALTER TABLE {s}.orders DISABLE TRIGGER touch_orders",  # left off after a bulk fix
       "DROP TRIGGER tombstone_reviews ON {s}.reviews",
       "UPDATE {s}.orders SET status = 'Cancelled' WHERE order_id = 1")  # no new change_txid: untracked
    with pytest.raises(ReplicationRefused, match=rf"change tracking is off in the source.*\({scratch.POSTGRES_SCHEMA}"
                                                 rf"\.orders: touch_orders; {scratch.POSTGRES_SCHEMA}\.reviews: "
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
