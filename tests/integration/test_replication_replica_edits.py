"""The replica changed by hand behind the replication's back: the runs mend it instead of failing for good."""
from __future__ import annotations

import pytest
from replication_support import assert_replica_equals_source, pg, replica_query, scratch, seed  # noqa: F401

from shopflow.replication import ReplicationError, ReplicationRefused, replicate

pytestmark = pytest.mark.integration


def test_a_parent_row_deleted_in_the_replica_is_reloaded_by_the_retry(spark, scratch):
    """A user without orders deleted in the replica, then an order of that user in the source: the orders' merge
    was refused (1452) before phase B could see the users short, at every run (a traceback, retried the same)."""
    seed(scratch)
    replicate(spark, scratch)
    replica_query(scratch, "DELETE FROM users WHERE user_id = 3")
    pg(scratch, "INSERT INTO {s}.orders VALUES (5, 3, now(), 99.99, 'Pending', NULL)")
    with pytest.raises(ReplicationError, match=r"^orders: its changed rows refer to rows the replica's users lack\(s\) "
                                               r"\(user_id \[3\]\), which the source has: deleted in the replica by "
                                               r"hand\? users marked for a full reload on the next run$"):
        replicate(spark, scratch)
    watermarks = {r["table_name"]: r["watermark"] for r in replica_query(scratch, "SELECT * FROM replication_state")}
    assert watermarks["users"] is None and watermarks["orders"] is not None
    results = replicate(spark, scratch)
    assert results["users"].plan.mode == "full" and results["orders"].plan.mode == "incremental"
    assert_replica_equals_source(scratch)


def test_replica_columns_altered_by_hand_stop_the_run_naming_them_and_are_reloaded_once_back(spark, scratch):
    """The staging tables keep the model's types, so loads went on; the checksum's text changed with the type
    (`99.9900`), and every whole-table check and every full reload after it failed for good, blaming the data."""
    seed(scratch)
    replicate(spark, scratch)
    altered = ("ALTER TABLE orders MODIFY total_amount DECIMAL(14,4) NOT NULL",
               "ALTER TABLE users MODIFY phone VARCHAR(50) CHARACTER SET latin1 NULL",
               "ALTER TABLE loyalty_points MODIFY reason VARCHAR(50) NULL")
    for statement in altered:
        replica_query(scratch, statement)
    database = scratch.MYSQL_DATABASE
    with pytest.raises(ReplicationRefused, match=rf"nothing replicated: {database}\.users\.phone is in latin1, the "
                       rf"model's utf8mb4; {database}\.orders\.total_amount is decimal\(14,4\), the model's "
                       rf"decimal\(12,2\); {database}\.loyalty_points\.reason is NULL, the model's NOT NULL\. "):
        replicate(spark, scratch)
    for statement in ("ALTER TABLE orders MODIFY total_amount DECIMAL(12,2) NOT NULL",
                      "ALTER TABLE users MODIFY phone VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
                      "ALTER TABLE loyalty_points MODIFY reason VARCHAR(50) COLLATE utf8mb4_bin NOT NULL"):
        replica_query(scratch, statement)
    results = replicate(spark, scratch)
    assert {name for name, r in results.items() if r.plan.mode == "full"} == {"users", "orders", "loyalty_points"}
    assert_replica_equals_source(scratch)


def test_a_source_column_dropped_then_added_again_is_reloaded_in_full(spark, scratch):
    """DDL fires no row triggers: the column came back empty with every row's change_txid as before, and the
    replica kept the old values (a phone number dropped on purpose among them) until the whole-table check."""
    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "ALTER TABLE {s}.users DROP COLUMN phone")
    with pytest.raises(ReplicationRefused, match=r"\.users has no column phone"):
        replicate(spark, scratch)
    pg(scratch, "ALTER TABLE {s}.users ADD COLUMN phone varchar(50)")
    results = replicate(spark, scratch)
    assert results["users"].plan.mode == "full"
    assert replica_query(scratch, "SELECT COUNT(phone) AS phones FROM users") == [{"phones": 0}]
    assert_replica_equals_source(scratch)


def test_a_source_column_outside_the_model_is_named_in_a_warning(spark, scratch, caplog):
    """A column added to the source by hand was left out of the replica without a word."""
    seed(scratch)
    pg(scratch, "ALTER TABLE {s}.users ADD COLUMN nickname varchar(20), ADD COLUMN age int")
    with caplog.at_level("WARNING", logger="shopflow.replication"):
        replicate(spark, scratch)
    assert "source table users has column(s) outside the model, not replicated: age, nickname" in caplog.text
    assert "source table orders" not in caplog.text
    assert_replica_equals_source(scratch)


def test_source_rows_from_another_cluster_are_named_with_the_way_to_stamp_them_anew(spark, scratch, caplog):
    """A source moved with pg_dump/pg_restore keeps the old cluster's change_txid values (the data is restored before
    its triggers): every incremental run read those rows again, without a word, until this cluster's ids passed."""
    seed(scratch)
    replicate(spark, scratch)
    pg(scratch, "ALTER TABLE {s}.orders DISABLE TRIGGER zzzz_touch_orders",
       "UPDATE {s}.orders SET change_txid = 9000000000 WHERE order_id = 1",
       "ALTER TABLE {s}.orders ENABLE ALWAYS TRIGGER zzzz_touch_orders")
    with caplog.at_level("WARNING", logger="shopflow.replication"):
        replicate(spark, scratch)
    warned = [r.getMessage() for r in caplog.records if "another cluster" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("source table orders holds rows from another cluster "
                                                     "(change_txid up to 9000000000, this one's next transaction id")
    statement = warned[0].split("Stamp them anew: ")[1].split(" (the row trigger")[0]
    pg(scratch, statement.replace(f"{scratch.POSTGRES_SCHEMA}.", "{s}."))
    caplog.clear()
    with caplog.at_level("WARNING", logger="shopflow.replication"):
        replicate(spark, scratch)
    assert "another cluster" not in caplog.text
    assert_replica_equals_source(scratch)
