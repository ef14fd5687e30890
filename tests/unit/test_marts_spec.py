"""The mart declarations: registry, types, DDL, the exact rounding, read partitions and the publish statement."""
import random
from decimal import ROUND_HALF_UP, Decimal

import pytest
from pyspark.sql import types as T

from shopflow.marts import Mart, MartColumn, all_marts
from shopflow.marts.registry import replica_columns
from shopflow.marts.replica import read_partitions
from shopflow.marts.spec import rounded_mean, spark_type
from shopflow.marts.store import publish_sql

BRIEF_COLUMNS = {
    "mart_user_activity": ["user_id", "first_name", "last_name", "status", "order_count", "total_spent"],
    "mart_product_rating": ["product_id", "name", "rating", "review_count"],
    "mart_user_loyalty_points": ["user_id", "first_name", "last_name", "loyalty_status", "total_loyalty_points"],
    "mart_average_check": ["status", "loyalty_status", "average_check", "order_count"],
    "mart_weekly_activity": ["week_start", "new_users", "orders", "revenue", "active_users"],
}


def test_the_registry_finds_the_five_marts_with_the_briefs_columns():
    assert {m.name: [c.name for c in m.columns] for m in all_marts()} == BRIEF_COLUMNS


def test_every_mart_checks_its_key_and_compares_with_the_replica():
    for mart in all_marts():
        names = [c.name for c in mart.checks]
        assert names[:2] == [f"not_null({', '.join(mart.key)})", f"unique({', '.join(mart.key)})"]
        assert any("not_empty_when" in n for n in names), mart.name


def test_the_job_reads_only_the_columns_marts_use_in_declared_order():
    columns = replica_columns(all_marts())
    assert set(columns) == {"users", "orders", "products", "reviews", "loyalty_points"}
    assert columns["orders"] == ("user_id", "order_date", "total_amount", "status")
    assert "description" not in columns["products"]


def test_ddl_has_types_key_and_utf8mb4():
    [mart] = [m for m in all_marts() if m.name == "mart_product_rating"]
    ddl = mart.ddl("mart_product_rating__staging")
    assert ddl.startswith("CREATE TABLE `mart_product_rating__staging` (")
    for fragment in ("`product_id` BIGINT NOT NULL", "`name` VARCHAR(255) NOT NULL", "`rating` DECIMAL(3,2) NULL",
                     "PRIMARY KEY (`product_id`)", "CHARSET=utf8mb4"):
        assert fragment in ddl


@pytest.mark.parametrize("mysql_type, expected", [
    ("BIGINT", T.LongType()), ("DATE", T.DateType()), ("VARCHAR(20)", T.StringType()),
    ("DECIMAL(22,2)", T.DecimalType(22, 2))])
def test_spark_type_of_a_mysql_type(mysql_type, expected):
    assert spark_type(mysql_type) == expected


def test_unknown_mysql_type_and_a_transform_not_matching_its_reads_are_refused():
    with pytest.raises(ValueError, match="FLOAT"):
        spark_type("FLOAT")
    with pytest.raises(ValueError, match="must take the tables it reads"):
        Mart("mart_x", lambda orders: orders, reads={"users": ("user_id",)}, columns=(MartColumn("a", "INT"),),
             key=("a",))
    with pytest.raises(ValueError, match="key column"):
        Mart("mart_x", lambda users: users, reads={"users": ("user_id",)}, columns=(MartColumn("a", "INT"),),
             key=("b",))


def test_a_read_of_a_table_or_column_the_replica_lacks_is_refused_naming_it():
    """A typo in `reads` gave a bare StopIteration in the unit test and, in the job, Spark's UNRESOLVED_COLUMN naming
    the right column (exit 1, retried twice)."""
    columns, key = (MartColumn("a", "INT"),), ("a",)
    with pytest.raises(ValueError, match=r"^mart_x: reads orders.totalprice, which is no column of orders \(.*"
                                         r"total_amount"):
        Mart("mart_x", lambda orders: orders, reads={"orders": ("order_id", "totalprice")}, columns=columns, key=key)
    with pytest.raises(ValueError, match=r"^mart_x: reads 'order', which is no replica table \(.*orders"):
        Mart("mart_x", lambda order: order, reads={"order": ("order_id",)}, columns=columns, key=key)


def test_rounded_mean_is_exact_half_up(spark):
    """Against Python's Decimal: 28 significant digits decide every case, as a mean of integers is either exactly
    on a .xx5 boundary or at least 1/(200 n) away from it."""
    rng = random.Random(7)
    pairs = [(rng.randint(0, 10**6), rng.randint(1, 5000)) for _ in range(3000)] + [(801, 200), (805, 201), (0, 0)]
    df = spark.createDataFrame(pairs, "total long, n long").withColumn("mean", rounded_mean("total", "n"))
    got = {(r.total, r.n): r.mean for r in df.collect()}
    for total, n in pairs[:-1]:
        assert got[(total, n)] == (Decimal(total) / Decimal(n)).quantize(Decimal("0.01"), ROUND_HALF_UP), (total, n)
    assert got[(801, 200)] == Decimal("4.01") and got[(805, 201)] == Decimal("4.00") and got[(0, 0)] is None


@pytest.mark.parametrize("rows, parallelism, expected", [
    (0, 3, 1), (500, 3, 1), (3_000, 3, 3), (16_500, 3, 3), (10_000_000, 3, 50), (10**9, 3, 64)])
def test_read_partitions(rows, parallelism, expected):
    assert read_partitions(rows, parallelism) == expected


def test_publish_is_one_rename_moving_existing_marts_aside():
    marts = [m for m in all_marts() if m.name in ("mart_average_check", "mart_product_rating")]
    assert publish_sql(marts, {"mart_average_check"}) == (
        "RENAME TABLE `mart_average_check` TO `mart_average_check__old`, "
        "`mart_average_check__staging` TO `mart_average_check`, "
        "`mart_product_rating__staging` TO `mart_product_rating`")
