"""Kafka topic `users-data` -> Postgres `source.users`, every STREAMING_SCHEDULE (default 5 min).

Each run is one Spark Structured Streaming query with Trigger.AvailableNow: it drains what the topic holds (in
micro-batches of at most STREAMING_MAX_EVENTS_PER_BATCH), upserts valid events by email, dead-letters malformed
ones in `source.rejected_user_events`, and ends. Exactly once across runs, retries and kills: the checkpoint
(STREAMING_CHECKPOINT_DIR) plus the batch ledger written in the same Postgres transaction as the data.
For a long-running stream outside Airflow: `make stream` (`python -m shopflow.jobs.stream_users --continuous`).
While it runs, this DAG's runs find the checkpoint in use, log it and succeed without doing anything.
"""
from __future__ import annotations

from _spark import CRON_RUN_TYPES, DEFAULT_ARGS, START_DATE, STREAMING_CORES, setting, spark_job
from airflow.sdk import DAG

with DAG(
    dag_id="kafka_to_postgres_streaming",
    description="Spark Structured Streaming (availableNow): Kafka users-data -> Postgres users + dead letters",
    doc_md=__doc__,
    schedule=setting("STREAMING_SCHEDULE", "*/5 * * * *"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    allowed_run_types=CRON_RUN_TYPES,
    default_args=DEFAULT_ARGS,
    tags=["shopflow", "streaming", "spark", "kafka", "postgres"],
):
    # One executor of SPARK_STREAMING_CORES cores (default 2) on one worker: the others stay free for a replication
    # or marts run started meanwhile.
    streaming_cores = int(setting("SPARK_STREAMING_CORES", STREAMING_CORES))
    spark_job("stream_users", "stream_users", cores=streaming_cores, executor_cores=streaming_cores, streaming=True)
