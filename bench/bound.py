"""The machine's bound: Postgres `COPY ... TO STDOUT` piped (a FIFO, no file on disk) into `LOAD DATA LOCAL INFILE`.

PG text COPY output (tab separated, `\\N` for NULL, backslash escapes) is LOAD DATA's default format. Foreign key
and unique checks are off in the loading session; tables load one after another (one stream each way). A table
counts only if every row sent was loaded, without a warning (as the replication's copy path checks its ranges).

The bound loads into the replica's own table definitions (with the secondary indexes MySQL keeps for each foreign
key), the work any correct replica has to do; `bound_plain` loads into the same tables without foreign keys and so
without those indexes (informative, in no ratio: 10-40 % faster here); `bound_parallel` loads into the replica's
tables three at once (informative, in no ratio: the one stream leaves part of the second core idle, which ours uses).
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from postgresdb.models import TABLES, Table
from shopflow.config import Settings
from shopflow.db import mysql_connection, pg_connection

from .common import Measure, columns, pg_select_list

DATABASE = "bound"  # suffix of the scratch database test_bench_<suffix>


def _copy_into_fifo(settings: Settings, table: Table, fifo: str, result: dict) -> None:
    try:  # the FIFO first: a failed connection then closes it (LOAD DATA reads an end, not a wait for ever)
        with open(fifo, "w", encoding="utf-8") as out, pg_connection(settings) as conn, conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            sql = f"COPY (SELECT {pg_select_list(table)} FROM {settings.POSTGRES_SCHEMA}.{table.name}) TO STDOUT"
            cur.copy_expert(sql, out, size=1 << 20)
            result["rows"] = cur.rowcount
    except BaseException as error:  # reported by the loading side
        result["error"] = error


def load_table(settings: Settings, table: Table, mysql_cursor, workdir: str) -> int:
    fifo = os.path.join(workdir, f"{table.name}.fifo")
    os.mkfifo(fifo)
    result: dict = {}
    writer = threading.Thread(target=_copy_into_fifo, args=(settings, table, fifo, result), daemon=True)
    writer.start()
    column_list = ", ".join(f"`{c}`" for c in columns(table))
    mysql_cursor.execute(f"LOAD DATA LOCAL INFILE '{fifo}' INTO TABLE `{table.name}` CHARACTER SET utf8mb4 "
                         f"({column_list})")
    loaded = mysql_cursor.rowcount
    writer.join()
    os.unlink(fifo)
    if "error" in result:
        raise result["error"]
    # LOAD DATA turns a bad value into a warning and loads on: the rows count only as they landed, as ours checks
    mysql_cursor.execute("SHOW COUNT(*) WARNINGS")
    warnings = int(mysql_cursor.fetchone()[0])
    if warnings or loaded != result["rows"]:
        raise RuntimeError(f"bound: {table.name}: COPY sent {result['rows']} rows, LOAD DATA loaded {loaded} "
                           f"with {warnings} warning(s)")
    return loaded


def measure_bound(settings: Settings, name: str = "bound: COPY -> LOAD DATA", streams: int = 1) -> Measure:
    """`settings` points at a scratch database made by common.recreate_database (tables empty). `streams` > 1: that
    many tables load at once, each on connections of its own, the biggest first (informative: the copy alone with
    the machine's second core used, as ours uses it)."""
    per_table: dict[str, float] = {}
    start, began = time.monotonic(), time.time()
    with tempfile.TemporaryDirectory(prefix="bench-bound-") as workdir:
        def load(tables: list[Table]) -> int:
            loaded = 0
            with mysql_connection(settings, allow_local_infile=True) as conn:
                cur = conn.cursor()
                cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
                for table in tables:
                    t0 = time.monotonic()
                    loaded += load_table(settings, table, cur, workdir)
                    per_table[table.name] = round(time.monotonic() - t0, 3)
                conn.commit()
            return loaded

        if streams == 1:
            rows = load(list(TABLES))
        else:
            with ThreadPoolExecutor(max_workers=streams) as pool:
                rows = sum(pool.map(lambda t: load([t]), sorted(TABLES, key=_size_rank)))
    return Measure(name, rows, time.monotonic() - start, {"per_table_s": per_table, "streams": streams},
                   window=(began, time.time()))


def _size_rank(table: Table) -> int:
    """The generated tables' order by size, biggest first (order_details ≈ 64 % of the rows at scale 60)."""
    order = ("order_details", "orders", "loyalty_points", "reviews", "users", "products", "product_categories")
    return order.index(table.name) if table.name in order else len(order)
