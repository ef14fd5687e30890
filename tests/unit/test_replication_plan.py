"""Pure parts of replication: full/incremental decisions, partitioning, SQL text and the checksum form."""
from datetime import datetime, timedelta

import pytest

from postgresdb.models import ORDERS, PRODUCT_CATEGORIES, REVIEWS, USERS, Column, Table
from shopflow.replication import mysql_sql
from shopflow.replication.checksum import Checksum, block_cuts, block_keys, mysql_checksum_sql, postgres_checksum_sql
from shopflow.replication.plan import (FULL, INCREMENTAL, TableState, chunks, needs_full_verification,
                                       partition_count, plan_table, read_query)


@pytest.mark.parametrize("state, oid, truncated, force, mode, reason", [
    (None, 10, False, False, FULL, "no watermark"),
    (TableState("users", 10, None), 10, False, False, FULL, "no watermark"),
    (TableState("users", 9, 500), 10, False, False, FULL, "recreated"),
    (TableState("users", 10, 5_000), 10, False, False, FULL, "ahead of the source"),
    (TableState("users", 10, 500), 10, True, False, FULL, "truncated"),
    (TableState("users", 10, 500), 10, False, True, FULL, "requested"),
    (TableState("users", 10, 500), 10, False, False, INCREMENTAL, "change_txid >= 500"),
])
def test_plan_table(state, oid, truncated, force, mode, reason):
    plan = plan_table(USERS, state, oid, snapshot_xmax=1_000, truncated_since=truncated, force_full=force)
    assert plan.mode == mode and reason in plan.reason
    assert plan.since == (500 if mode == INCREMENTAL else None)


@pytest.mark.parametrize("stored, now, mode", [(7, 7, INCREMENTAL), (7, 8, FULL), (None, 8, INCREMENTAL),
                                                (7, None, INCREMENTAL)])
def test_another_source_cluster_reloads_in_full(stored, now, mode):
    """A cluster made again (initdb) gives the tables the same OIDs, and its transaction ids may have passed the
    stored watermark: only its system identifier tells it apart. Unknown on either side (a state an older version
    stored, a role that may not read it): the other checks decide."""
    plan = plan_table(USERS, TableState("users", 10, 500, source_system_id=stored), 10, 1_000, False,
                      source_system_id=now)
    assert plan.mode == mode
    assert ("another Postgres cluster (system identifier 7 -> 8)" in plan.reason) == (mode == FULL)


@pytest.mark.parametrize("stored, now, mode", [(1, 1, INCREMENTAL), (1, 2, FULL), (None, 2, INCREMENTAL),
                                                (1, None, INCREMENTAL)])
def test_another_source_timeline_reloads_in_full(stored, now, mode):
    """A restore to a point in time or a promoted standby: same system identifier and OIDs, a new timeline."""
    plan = plan_table(USERS, TableState("users", 10, 500, source_system_id=7, source_timeline=stored), 10, 1_000,
                      False, source_system_id=7, source_timeline=now)
    assert plan.mode == mode
    assert ("the source's timeline changed (1 -> 2)" in plan.reason) == (mode == FULL)


@pytest.mark.parametrize("pruned_below, mode", [(0, INCREMENTAL), (500, INCREMENTAL), (501, FULL), (900, FULL)])
def test_a_watermark_below_the_pruned_tombstones_reloads_in_full(pruned_below, mode):
    """Tombstones below `pruned_below` may be gone: a watermark at it still finds every one it needs, one below may
    miss a delete."""
    plan = plan_table(USERS, TableState("users", 10, 500), 10, 1_000, False, pruned_below=pruned_below)
    assert plan.mode == mode
    assert ("pruned" in plan.reason) == (mode == FULL)


def test_read_query_selects_replicated_columns_and_filters_on_the_watermark():
    incremental = plan_table(ORDERS, TableState("orders", 1, 42), 1, 100, False)
    assert read_query(incremental, "source").startswith(
        "(SELECT order_id, user_id, CASE WHEN order_date >= timestamptz '100000-01-01 00:00:00+00' THEN "
        "253402300799999000 WHEN order_date = '-infinity' THEN -30610224000000001 ELSE (extract(epoch FROM order_date) "
        "* 1000000)::bigint END AS order_date, total_amount, status, CASE WHEN delivery_date >= ")
    assert read_query(incremental, "source").endswith(
        "END AS updated_at FROM source.orders WHERE change_txid >= 42) AS changed_rows")
    assert "WHERE" not in read_query(plan_table(ORDERS, None, 1, 100, False), "source")


@pytest.mark.parametrize("rows, expected", [(0, 1), (1, 1), (50_000, 1), (50_001, 2), (1_650_000, 32),
                                            (10**9, 32)])
def test_partition_count(rows, expected):
    assert partition_count(rows) == expected


def test_chunks():
    assert [list(c) for c in chunks([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]


def test_upsert_sql_is_portable_insert_select_on_duplicate_key():
    sql = mysql_sql.upsert_sql(USERS)
    assert sql.startswith("INSERT INTO `users` (`user_id`, `first_name`")
    assert "FROM `stage_users` s ON DUPLICATE KEY UPDATE `first_name` = s.`first_name`" in sql
    assert "`user_id` = s.`user_id`" not in sql and "VALUES(" not in sql and " AS new" not in sql


def test_unique_conflicts_only_for_tables_with_unique_columns():
    assert mysql_sql.unique_conflicts_sql(ORDERS) == []
    [(gone, holders)] = mysql_sql.unique_conflicts_sql(USERS)
    conflict = "`users` t JOIN `stage_users` s ON t.`email` = s.`email` AND t.`user_id` <> s.`user_id`"
    assert holders == f"DELETE t FROM {conflict}"
    # rows deleted in the source keep their key (and their children a parent) until phase B deletes them
    assert gone == (f"UPDATE {conflict} LEFT JOIN `stage_users` kept ON kept.`user_id` = t.`user_id` "
                    "SET t.`email` = CONCAT(CHAR(0 USING utf8mb4), t.`user_id`) WHERE kept.`user_id` IS NULL")


def test_a_unique_column_too_short_to_be_set_aside_is_refused():
    short = Table("t", (Column("id", "id"), Column("code", "text", length=8, unique=True)))
    with pytest.raises(ValueError, match="t.code: a unique column must be text of at least 21 characters"):
        mysql_sql.unique_conflicts_sql(short)


def test_changed_rows_compares_text_as_bytes_and_everything_null_safe():
    sql = mysql_sql.changed_rows_sql(USERS)
    assert "CAST(t.`phone` AS BINARY) <=> CAST(s.`phone` AS BINARY)" in sql
    assert "t.`registration_date` <=> s.`registration_date`" in sql


def test_checksums_hash_blocks_of_keys_in_key_order_on_both_sides():
    pg, my = postgres_checksum_sql(ORDERS, "source", " WHERE x"), mysql_checksum_sql(ORDERS, where=" WHERE x")
    assert "md5(string_agg(" in pg and "E'\\n' ORDER BY order_id)" in pg and pg.endswith(
        "FROM source.orders WHERE x OFFSET 0) r GROUP BY order_id / 1000) blocks")
    assert "MD5(GROUP_CONCAT(" in my and "ORDER BY `order_id` SEPARATOR X'0A')" in my and my.endswith(
        "FROM `orders` WHERE x GROUP BY `order_id` DIV 1000) blocks")
    assert [block_keys(t) for t in (ORDERS, REVIEWS)] == [1000, 100]  # review_text: longtext
    assert "GROUP BY review_id / 100" in postgres_checksum_sql(REVIEWS, "source", " WHERE x")


def test_a_whole_source_table_is_hashed_block_by_block_along_its_key():
    """Along the key (a whole table in key order) the source walks the non-empty blocks (the next key past the last
    block) and hashes each block's key range, so the planner reads each block from the primary key index instead of
    sorting the table; a filter always takes the grouped form."""
    assert "GROUP BY" in postgres_checksum_sql(REVIEWS, "source", " WHERE x", along_key=True)
    assert "GROUP BY review_id / 100" in postgres_checksum_sql(REVIEWS, "source", along_key=False)
    pg = postgres_checksum_sql(REVIEWS, "source", along_key=True)
    assert "GROUP BY" not in pg and pg.startswith(
        "WITH RECURSIVE blocks(checksum_block) AS (SELECT min(review_id)::bigint / 100 FROM source.reviews UNION ALL "
        "SELECT (SELECT min(review_id) FROM source.reviews WHERE review_id > LEAST(CASE WHEN checksum_block < 0 THEN "
        "checksum_block::numeric * 100 ELSE checksum_block::numeric * 100 + 99 END, 9223372036854775807)::bigint)"
        "::bigint / 100 FROM blocks")
    # bounds in numeric, cut to bigint's range and cast back: the first and last blocks' would overflow bigint
    assert ("FROM source.reviews WHERE review_id BETWEEN GREATEST(CASE WHEN checksum_block > 0 THEN "
            "checksum_block::numeric * 100 ELSE checksum_block::numeric * 100 - 99 END, -9223372036854775808)::bigint "
            "AND LEAST(CASE WHEN checksum_block < 0 THEN checksum_block::numeric * 100 ELSE checksum_block::numeric "
            "* 100 + 99 END, 9223372036854775807)::bigint OFFSET 0) r) block WHERE checksum_block IS NOT NULL") in pg


@pytest.mark.parametrize("low, cuts, expected", [
    (1, [334, 667], []),  # all keys in the first block (1..999 of block 0, 1000 starts block 1)
    (1, [2500, 4100, 4900], [2000, 4000]),  # moved down to block starts, duplicates merged
    (3000, [3400, 5100], [5000]),  # a cut at or below `low` is no cut
    (-5000, [-2000, 1500], [1000]),  # block 0 is -999..999 on both sides (integer division truncates)
])
def test_split_checksum_ranges_are_cut_at_block_starts(low, cuts, expected):
    assert block_cuts(ORDERS, low, cuts) == expected


def test_checksum_sql_uses_the_same_canonical_form_on_both_sides():
    pg, my = postgres_checksum_sql(ORDERS, "source"), mysql_checksum_sql(ORDERS)
    # the UTC wall clock's text made once by the inner query, then padded to six fraction digits (as DATETIME(6)
    # prints); OFFSET 0 keeps the planner from pulling the inner query up, which would compute the text twice
    assert "(order_date AT TIME ZONE 'UTC')::text AS order_date" in pg and " OFFSET 0) r GROUP BY" in pg
    assert "order_date || substr('.000000', length(order_date) - 18)" in pg
    assert "COALESCE(delivery_date || substr(" in pg
    assert "CONCAT_WS(',', `order_id`, `user_id`, `order_date`, `total_amount`, " in my  # native text form
    assert "length(status) || ':' || status" in pg
    assert "CONCAT(CHAR_LENGTH(`status`), ':', CAST(`status` AS BINARY))" in my
    assert "COALESCE(`delivery_date`, 'N')" in my and "concat_ws(',', order_id, user_id, " in pg
    for column in ("order_id", "user_id", "status", "delivery_date", "updated_at"):
        assert column in pg and f"`{column}`" in my


def test_checksum_difference_names_rows_and_sums():
    assert Checksum(3, 10).difference(Checksum(3, 10)) == "equal"
    assert Checksum(3, 10).difference(Checksum(2, 7)) == (
        "rows source=3 replica=2 (diff -1); checksum source=3:10 replica=2:7")


def test_only_product_categories_references_itself():
    assert mysql_sql.references_itself(PRODUCT_CATEGORIES)
    assert not mysql_sql.references_itself(ORDERS) and not mysql_sql.references_itself(USERS)


def test_checksums_add_and_parse_their_stored_form():
    assert Checksum(3, 10) + Checksum(2, 5) == Checksum(5, 15)
    assert Checksum.parse("2:123") == Checksum(2, 123)
    assert [Checksum.parse(text) for text in (None, "", "2:", "x:1", "2:-1")] == [None] * 5


@pytest.mark.parametrize("mode, checksum, verified_hours_ago, every_hours, whole", [
    (FULL, Checksum(1, 1), 1, 24, True),
    (INCREMENTAL, None, 1, 24, True),
    (INCREMENTAL, Checksum(1, 1), None, 24, True),
    (INCREMENTAL, Checksum(1, 1), 1, 24, False),
    (INCREMENTAL, Checksum(1, 1), 25, 24, True),
    (INCREMENTAL, Checksum(1, 1), 0.01, 0, True),
])
def test_whole_tables_are_hashed_on_full_loads_without_a_stored_checksum_and_when_due(
        mode, checksum, verified_hours_ago, every_hours, whole):
    now = datetime(2026, 12, 1, 12, 0)
    verified = None if verified_hours_ago is None else now - timedelta(hours=verified_hours_ago)
    state = TableState("users", 10, 500, checksum, verified)
    plan = plan_table(USERS, state, 10, 1_000, False, force_full=mode == FULL)
    assert needs_full_verification(plan, state, now, every_hours) is whole
