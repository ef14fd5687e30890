"""The replica changed by hand behind the replication's back: the runs mend it instead of failing for good."""
from __future__ import annotations

import pytest
from replication_support import assert_replica_equals_source, pg, replica_query, scratch, seed  # noqa: F401

from shopflow.replication import ReplicationError, replicate

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
