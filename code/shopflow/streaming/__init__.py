"""Kafka topic `users-data` -> Postgres `source.users` with dead letters, exactly once (issue 5).

    kafka_source   Python Data Source streaming reader over kafka-python (local stack; compose uses format("kafka"))
    kafka_offsets  partitions, high watermarks from fetch responses, offset JSON helpers
    events         pure transforms: parse, validate, latest-per-email, replay filter
    ledger         the Postgres writes of one batch (users upsert, rejects, positions, batch ledger)
    sink           foreachBatch: one batch = one Postgres transaction; metrics to pipeline_runs
    query          source + trigger (availableNow | continuous) + checkpoint wiring

Entry point: shopflow.jobs.stream_users; DAG: code/airflow/dags/kafka_to_postgres_streaming.py.
"""
