"""Measure the replica's write paths (the numbers behind target.WRITE_URL_OPTIONS; see README.md).

    python -m shopflow.replication.bench [--rows 500000] [--master local[2]]

In a scratch database `test_bench_replication`: Spark -> staging table through JDBC with three driver settings and
through LOAD DATA LOCAL INFILE, then the staging -> target merge (INSERT ... SELECT ... ON DUPLICATE KEY UPDATE)
for new rows, unchanged rows and changed rows. Prints one line per measurement.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

from postgresdb.ddl import mysql_table_ddl
from postgresdb.models import ORDER_DETAILS
from shopflow import config_values as v
from shopflow.config import Settings, get_settings
from shopflow.db import mysql_connection
from shopflow.jobs.session import build_session

from . import mysql_sql
from .target import mysql_driver_class

DATABASE = "test_bench_replication"
JDBC_VARIANTS = {
    "jdbc, driver defaults": "",
    "jdbc, rewriteBatchedStatements": "rewriteBatchedStatements=true",
    "jdbc, server prepared bulk": "useServerPrepStmts=true&useBulkStmts=true",
    "jdbc, rewrite + bulk (both drivers)": "rewriteBatchedStatements=true&useServerPrepStmts=true&useBulkStmts=true",
}
TARGET = "bench_order_details"  # the replica's shape without foreign keys (no parent rows in a scratch database)


def _rows(spark, count: int, partitions: int, price_shift: str = "0"):
    return spark.range(1, count + 1, numPartitions=partitions).selectExpr(
        "id AS order_detail_id", "id DIV 5 + 1 AS order_id", "id % 800 + 1 AS product_id",
        "CAST(id % 9 + 1 AS INT) AS quantity",
        f"CAST(id % 100000 / 100 + {price_shift} AS DECIMAL(12,2)) AS price_per_unit",
        f"CAST((id % 9 + 1) * (id % 100000 / 100 + {price_shift}) AS DECIMAL(12,2)) AS total_price",
        "date_format(timestamp_micros(1700000000000000 + id), 'yyyy-MM-dd HH:mm:ss.SSSSSS') AS updated_at")


def _execute(settings: Settings, *statements: str) -> float:
    start = time.monotonic()
    with mysql_connection(settings) as conn:
        cur = conn.cursor()
        for statement in statements:
            cur.execute(statement)
    return time.monotonic() - start


def _jdbc_write(df, settings: Settings, options: str) -> None:
    url = settings.mysql_jdbc_url + (f"?{options}" if options else "")
    (df.write.format("jdbc").mode("append").option("url", url).option("driver", mysql_driver_class(settings))
     .option("user", settings.MYSQL_USER).option("password", settings.MYSQL_PASSWORD)
     .option("dbtable", mysql_sql.stage_name(ORDER_DETAILS)).option("batchsize", 5000).save())


def _load_data_partition(connect_args: dict, table: str):
    def load(rows) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".tsv", encoding="utf-8", delete=False) as f:
            for row in rows:
                f.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
        try:
            import mysql.connector

            from shopflow.db import tcp_no_delay
            conn = mysql.connector.connect(**connect_args, allow_local_infile=True)
            tcp_no_delay(conn)
            conn.cursor().execute(f"LOAD DATA LOCAL INFILE '{f.name}' INTO TABLE `{table}` CHARACTER SET utf8mb4")
            conn.commit()
            conn.close()
        finally:
            os.unlink(f.name)
    return load


def _measure(label: str, rows: int, seconds: float) -> None:
    print(f"{label:<48}{rows:>10,} rows {seconds:8.2f} s {rows / seconds:>12,.0f} rows/s", flush=True)


def _stage_variants(spark, settings: Settings, rows: int, partitions: int) -> None:
    stage = mysql_sql.stage_name(ORDER_DETAILS)
    df = _rows(spark, rows, partitions).cache()
    df.count()
    for label, options in JDBC_VARIANTS.items():
        _execute(settings, f"TRUNCATE TABLE `{stage}`")
        start = time.monotonic()
        _jdbc_write(df, settings, options)
        _measure(f"stage: {label}", rows, time.monotonic() - start)
    _execute(settings, f"TRUNCATE TABLE `{stage}`")
    start = time.monotonic()
    df.foreachPartition(_load_data_partition(settings.mysql_connect_args(), stage))
    _measure("stage: LOAD DATA LOCAL INFILE (per partition)", rows, time.monotonic() - start)
    df.unpersist()


def _merge_variants(spark, settings: Settings, rows: int, partitions: int) -> None:
    upsert = mysql_sql.upsert_sql(ORDER_DETAILS).replace("INSERT INTO `order_details`", f"INSERT INTO `{TARGET}`")
    _execute(settings, f"TRUNCATE TABLE `{TARGET}`")
    _measure("merge: INSERT..SELECT..ODKU, all rows new", rows, _execute(settings, upsert))
    _measure("merge: same, all rows unchanged", rows, _execute(settings, upsert))
    _execute(settings, f"TRUNCATE TABLE `{mysql_sql.stage_name(ORDER_DETAILS)}`")
    changed = _rows(spark, rows, partitions, price_shift="1")
    _jdbc_write(changed, settings, JDBC_VARIANTS["jdbc, server prepared bulk"])
    _measure("merge: same, all rows changed", rows, _execute(settings, upsert))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shopflow.replication.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=v.option(v.at_least_one), default=500_000)
    parser.add_argument("--partitions", type=v.option(v.at_least_one), default=4)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args(argv)
    base = get_settings()
    settings = dataclasses.replace(base, MYSQL_DATABASE=DATABASE)
    with mysql_connection(base, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cur.execute(f"CREATE DATABASE {DATABASE}")
    _execute(settings, mysql_table_ddl(ORDER_DETAILS, name=mysql_sql.stage_name(ORDER_DETAILS)),
             mysql_table_ddl(ORDER_DETAILS, name=TARGET))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # its LOAD DATA measure imports shopflow in the workers
    spark = build_session("shopflow-replication-bench", settings, master=args.master)
    try:
        _stage_variants(spark, settings, args.rows, args.partitions)
        _merge_variants(spark, settings, args.rows, args.partitions)
    finally:
        spark.stop()
        _execute(base, f"DROP DATABASE IF EXISTS {DATABASE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
