"""Peer: dlt (`sql_database` source, pyarrow backend -> `sqlalchemy` destination over PyMySQL), replace mode.

Timed: `pipeline.run` end to end (extract to local files, normalize, load). dlt creates its own tables (plus its
_dlt_* bookkeeping tables) in the scratch database named by the dataset, with the source's primary keys
(`create_primary_keys`: without it, until 2026-12-06, it made tables without any key, less work than a replica's).
It makes no foreign keys, so none of the secondary indexes MySQL builds for them; nor a unique key on `users.email`
(a TEXT column).
"""
from __future__ import annotations

import tempfile
import time

from postgresdb.models import TABLES
from shopflow.config import Settings

from .common import Measure, mysql_counts

DATABASE = "peer"  # suffix of the scratch database test_bench_<suffix>


def measure_peer(settings: Settings) -> Measure:
    """`settings` points at the scratch database (recreated empty, without tables)."""
    import dlt
    from dlt.sources.sql_database import sql_database

    s = settings
    source_url, target_url = s.postgres_url("postgresql+psycopg2"), s.mysql_url("mysql+pymysql")
    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as workdir:
        source = sql_database(credentials=source_url, schema=s.POSTGRES_SCHEMA,
                              table_names=[t.name for t in TABLES], backend="pyarrow")
        pipeline = dlt.pipeline(pipeline_name="shopflow_bench_peer", pipelines_dir=workdir,
                                destination=dlt.destinations.sqlalchemy(target_url, create_primary_keys=True),
                                dataset_name=s.MYSQL_DATABASE)
        start, began = time.monotonic(), time.time()
        pipeline.run(source, write_disposition="replace")
        seconds, window = time.monotonic() - start, (began, time.time())
    counts = mysql_counts(settings)
    import importlib.metadata as md
    return Measure("peer: dlt full load", sum(counts.values()), seconds,
                   {"tool": f"dlt {md.version('dlt')}", "per_table_rows": counts}, window=window)
