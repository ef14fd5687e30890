"""Postgres `source` -> MySQL replica, every REPLICATION_SCHEDULE (default 15 min), incremental and reconciled.

The task's outlet is the replica Asset: the marts DAG is scheduled on it.
"""
from __future__ import annotations

from _spark import DEFAULT_ARGS, REPLICA_ASSET, START_DATE, setting, spark_job
from airflow.sdk import DAG

with DAG(
    dag_id="replicate_postgres_to_mysql",
    description="Spark: Postgres source -> MySQL replica (upserts + deletes, counts + checksums reconciled)",
    doc_md=__doc__,
    schedule=setting("REPLICATION_SCHEDULE", "*/15 * * * *"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["shopflow", "replication", "spark", "mysql"],
):
    spark_job("replicate", "replicate_postgres_to_mysql", outlets=[REPLICA_ASSET])
