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


def test_a_source_column_of_another_type_refuses_the_run_naming_it(spark, scratch):
    """A timestamp without time zone, or another scale: the checksum's text of the column changed with its type, so
    every whole-table check failed and reloaded the table, blaming the data ("checksum source=… replica=…")."""
    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "ALTER TABLE {s}.orders ALTER COLUMN delivery_date TYPE timestamp",
       "ALTER TABLE {s}.users ALTER COLUMN phone TYPE text")  # a character type of another length: fine
    with pytest.raises(ReplicationRefused, match=rf"{scratch.POSTGRES_SCHEMA}\.orders\.delivery_date is timestamp "
                                                 r"without time zone, the model's timestamp with time zone"):
        replicate(spark, scratch, force_full=True)
    pg(scratch, "ALTER TABLE {s}.orders ALTER COLUMN delivery_date TYPE timestamptz")
    replicate(spark, scratch, force_full=True)
    assert_replica_equals_source(scratch)
