"""The marts measure's DuckDB side (bench/marts.py): the replica read through connectorx, and every mart's reference
SQL in DuckDB giving the rows MySQL gives for the same SQL."""
from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from test_marts_replica import execute, insert, scratch_replica

from bench.marts import build_duckdb_marts, load_duckdb
from shopflow import db
from shopflow.marts.registry import all_marts, replica_columns
from shopflow.marts.verify import reference_rows
from shopflow.stack.bootstrap import mariadb_root

pytestmark = pytest.mark.integration


def _normalized(rows) -> list[tuple]:
    """One representation per value: DuckDB gives DECIMAL(38,10) and ints where MySQL gives Decimal."""
    return sorted((tuple(Decimal(str(v)) if isinstance(v, (int, float, Decimal)) else v for v in row) for row in rows),
                  key=repr)


# Averages ending in exactly half a cent (or a hundredth of a star) round up in MySQL and Spark; DuckDB's AVG is a
# DOUBLE, and its ROUND gave 1.0 for the mean of 1.00 and 1.01 (bench/marts.duckdb_sql)
HALF_CENT_TIES = {
    "orders": [(7, 3, "2024-02-08 00:00:00", "1.00", "Completed", None),  # Bronze/Completed: 1.005 -> 1.01
               (8, 3, "2024-02-08 01:00:00", "1.01", "Completed", None)],
    "reviews": [(100 + i, 1 + i % 4, 3, 2 if i == 0 else 1, None, "2024-02-09 00:00:00") for i in range(40)],  # 1.025
}


def test_duckdb_builds_every_mart_as_mysql_answers_the_same_sql(mysql):
    marts = all_marts()
    with scratch_replica(mysql, "bench_duckdb") as settings:
        for table, rows in HALF_CENT_TIES.items():
            insert(settings, table, rows)
        duck, rows = load_duckdb(settings, marts)
        counts = build_duckdb_marts(duck, marts)
        replica_rows = sum(execute(settings, f"SELECT COUNT(*) FROM `{t}`")[0][0] for t in replica_columns(marts))
        with db.mysql_connection(settings) as conn:
            expected = {mart.name: _normalized(reference_rows(conn.cursor(), mart)) for mart in marts}
    assert rows == replica_rows > 0
    assert ("Completed", "Bronze", Decimal("1.01"), 2) in expected["mart_average_check"]
    assert any(row[:1] == (3,) and Decimal("1.03") in row for row in expected["mart_product_rating"])
    for mart in marts:
        got = _normalized(duck.execute(f"SELECT * FROM {mart.name}").fetchall())
        assert got == expected[mart.name] and counts[mart.name] == len(got) > 0, mart.name


def test_the_mysql_url_quotes_what_a_url_would_misread(mysql):
    """A password with `@`, `:` and `/` still logs in (the URL is the only way connectorx takes credentials)."""
    import connectorx

    user = "test_bench_url"
    mariadb_root(mysql, f"DROP USER IF EXISTS '{user}'@'%'; CREATE USER '{user}'@'%' IDENTIFIED BY 'p@ss:w/rd#1'; "
                        f"GRANT SELECT ON `{mysql.MYSQL_DATABASE}`.* TO '{user}'@'%';")
    try:
        settings = dataclasses.replace(mysql, MYSQL_USER=user, MYSQL_PASSWORD="p@ss:w/rd#1")
        assert connectorx.read_sql(settings.mysql_url(), "SELECT 1 AS one", return_type="arrow").num_rows == 1
    finally:
        mariadb_root(mysql, f"DROP USER IF EXISTS '{user}'@'%';")
