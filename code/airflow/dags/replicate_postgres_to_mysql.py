"""Postgres `source` -> MySQL replica, every REPLICATION_SCHEDULE (default 15 min), incremental and reconciled.

The task's outlet is the replica Asset: the marts DAG is scheduled on it.
To reload every table in full (the result is the same replica, only slower): Trigger, then set `full_reload`.
Each run also deletes the source's tombstones (`deleted_rows`) that every table of the replica has read, once older
than REPLICATION_TOMBSTONE_RETENTION_HOURS (default 168).
"""
from __future__ import annotations

from _spark import CRON_RUN_TYPES, DEFAULT_ARGS, REPLICA_ASSET, START_DATE, setting, spark_job
from airflow.sdk import DAG, Param

with DAG(
    dag_id="replicate_postgres_to_mysql",
    description="Spark: Postgres source -> MySQL replica (upserts + deletes, counts + checksums reconciled)",
    doc_md=__doc__,
    schedule=setting("REPLICATION_SCHEDULE", "2,17,32,47 * * * *"),  # Settings' default: off the stream's minutes
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    allowed_run_types=CRON_RUN_TYPES,
    default_args=DEFAULT_ARGS,
    tags=["shopflow", "replication", "spark", "mysql"],
    params={"full_reload": Param(False, type="boolean", title="Full reload",
                                 description="Reload every table in full, ignoring the watermarks (the job's --full)")},
):
    spark_job("replicate", "replicate_postgres_to_mysql", application_args=["--full", "{{ params.full_reload }}"],
              outlets=[REPLICA_ASSET])
