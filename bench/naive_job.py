"""spark-submit job: the naive design — JDBC read in one partition, JDBC write with default options.

    spark-submit bench/naive_job.py   (POSTGRES_SCHEMA / MYSQL_DATABASE from the environment)

Prints one line `BENCH_NAIVE {json}` with rows and seconds per table, timed after the session started and its
executors registered (the JVM-only warm-up the marts job gets). Until 2026-12-06 the clock started as soon as the
session object existed, before the executors had registered, so the first table (users) also paid for starting the
cluster side of the session, which the replication job's own clock leaves out.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `bench.common`

from bench.common import columns  # noqa: E402
from postgresdb.models import TABLES  # noqa: E402
from shopflow.config import get_settings  # noqa: E402
from shopflow.jobs.session import build_session  # noqa: E402
from shopflow.replication.target import mysql_driver_class  # noqa: E402


def main() -> int:
    settings = get_settings()
    spark = build_session("shopflow-bench-naive", settings, warm_modules=())
    result = {"tables": {}}
    start, began = time.monotonic(), time.time()
    # The replica's own tables (foreign keys, their indexes, the unique email), loaded with the checks ours and the
    # bound turn off for their loads turned off here too: the same work on the target, only the write path differs.
    # With the checks on, a parent category read after its child (an updated row moves to the table's end) failed.
    target_url = settings.mysql_jdbc_url + "?sessionVariables=foreign_key_checks=0,unique_checks=0"
    for table in TABLES:
        t0 = time.monotonic()
        df = (spark.read.format("jdbc").option("url", settings.postgres_jdbc_url)
              .option("driver", "org.postgresql.Driver").option("user", settings.POSTGRES_USER)
              .option("password", settings.POSTGRES_PASSWORD)
              .option("dbtable", f"{settings.POSTGRES_SCHEMA}.{table.name}").load().select(*columns(table)))
        (df.write.format("jdbc").mode("append").option("url", target_url)
         .option("driver", mysql_driver_class(settings)).option("user", settings.MYSQL_USER)
         .option("password", settings.MYSQL_PASSWORD).option("dbtable", table.name).save())
        result["tables"][table.name] = round(time.monotonic() - t0, 3)
    result["seconds"] = round(time.monotonic() - start, 3)
    result["window"] = [began, time.time()]
    spark.stop()
    print("BENCH_NAIVE " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
