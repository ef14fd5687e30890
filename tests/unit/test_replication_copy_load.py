"""Pure parts of the copy path: key ranges and the COPY / LOAD DATA statements."""
import pytest

from postgresdb.models import ORDERS
from shopflow.replication.copy_load import RangeResult, copy_sql, load_sql, plan_ranges, tasks_of
from shopflow.replication.plan import TableState, key_ranges, plan_table


@pytest.mark.parametrize("rows, low, high, expected", [
    (1, 7, 7, [(7, 8)]),
    (5, 1, 5, [(1, 6)]),
    (450_000, 1, 450_000, [(1, 150_001), (150_001, 300_001), (300_001, 450_001)]),
    (600_000, 1, 2, [(1, 2), (2, 3)]),  # never more ranges than keys
    (10**9, 0, 10**9, None),
])
def test_key_ranges_cover_the_keys_once_without_gaps(rows, low, high, expected):
    ranges = key_ranges(rows, low, high, rows_per_range=200_000)
    if expected is not None:
        assert ranges == expected
    assert ranges[0][0] == low and ranges[-1][1] == high + 1
    assert all(a < b for a, b in ranges) and all(prev[1] == nxt[0] for prev, nxt in zip(ranges, ranges[1:]))
    assert len(ranges) <= 32


def test_copy_sql_reads_one_range_of_the_changed_rows_as_csv_with_utc_timestamps():
    incremental = plan_table(ORDERS, TableState("orders", 1, 42), 1, 100, False)
    sql = copy_sql(incremental, "source", 10, 20)
    assert sql == ("COPY (SELECT order_id, user_id, (order_date AT TIME ZONE 'UTC'), total_amount, status, "
                   "(delivery_date AT TIME ZONE 'UTC'), (updated_at AT TIME ZONE 'UTC') FROM source.orders "
                   "WHERE change_txid >= 42 AND order_id >= 10 AND order_id < 20) TO STDOUT "
                   "WITH (FORMAT csv, NULL 'NULL')")
    assert "change_txid" not in copy_sql(plan_table(ORDERS, None, 1, 100, False), "source", 10, 20)


def test_load_sql_reads_csv_without_escapes_into_the_named_table():
    sql = load_sql(ORDERS, "stage_orders", "/tmp/x/rows.csv")
    assert sql.startswith("LOAD DATA LOCAL INFILE '/tmp/x/rows.csv' INTO TABLE `stage_orders` CHARACTER SET utf8mb4")
    assert "OPTIONALLY ENCLOSED BY '\"' ESCAPED BY ''" in sql
    assert sql.endswith("(`order_id`, `user_id`, `order_date`, `total_amount`, `status`, `delivery_date`, "
                        "`updated_at`)")


@pytest.mark.parametrize("copied, loaded, warnings, clean", [(3, 3, 0, True), (3, 2, 0, False), (3, 3, 1, False)])
def test_a_range_is_clean_only_with_equal_counts_and_no_warnings(copied, loaded, warnings, clean):
    assert RangeResult("orders", copied, loaded, warnings, ()).clean is clean


def test_a_direct_load_is_one_range_and_a_staged_one_is_split():
    """Direct: InnoDB's bulk insert into the empty table holds it, so a second range into it would only wait."""
    plan = plan_table(ORDERS, None, 1, 100, False)
    (direct,) = plan_ranges(plan, 600_000, 5, 600_004, "orders", True)
    assert (direct.low, direct.high, direct.rows, direct.direct) == (5, 600_005, 600_000, True)
    staged = plan_ranges(plan, 600_000, 5, 600_004, "stage_orders", False)
    assert len(staged) == 3 and staged[0].low == 5 and staged[-1].high == 600_005
    assert not any(r.direct for r in staged)


def test_small_ranges_share_as_few_tasks_as_their_rows_need_and_big_ones_stay_alone():
    plan = plan_table(ORDERS, None, 1, 100, False)
    big = plan_ranges(plan, 600_000, 1, 600_000, "stage_orders", False)  # 3 ranges of 200k rows
    small = [r for rows in (9_908, 1_800, 1_800, 1_200, 480, 300, 12)
             for r in plan_ranges(plan, rows, 1, rows, "orders", True)]  # an incremental run's 1 %: 15,500 rows
    tasks = tasks_of(big + small, slots=3, shared_below=20_000)
    assert [len(t) for t in tasks[:3]] == [1, 1, 1] and all(t[0].rows == 200_000 for t in tasks[:3])
    assert [sorted(r.rows for r in t) for t in tasks[3:]] == [sorted(r.rows for r in small)]  # one task, each once
    tasks = tasks_of(small, slots=3, shared_below=10_000)  # 15,500 rows: 2 tasks of about 10,000
    assert sorted(r.rows for t in tasks for r in t) == sorted(r.rows for r in small)
    assert sorted(sum(r.rows for r in t) for t in tasks) == [5_592, 9_908]  # biggest first, to the lightest
    assert tasks_of(small, slots=1, shared_below=10_000) == [small]  # never more shared tasks than slots
    assert tasks_of(small, slots=0) == [small]
    assert tasks_of([], slots=3) == []
