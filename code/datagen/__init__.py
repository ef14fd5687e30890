"""Data generators: `python -m datagen.postgres` (bulk source data) and `python -m datagen.events` (Kafka events)."""
