"""The users stream's source frame: Spark's Kafka connector or our Python source (`STREAMING_SOURCE`), the same
columns either way; and the file that tells our source to admit no new data while the query stops."""
from __future__ import annotations

import json
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from shopflow.config import Settings
from shopflow.streaming import events as ev
from shopflow.streaming import kafka_offsets as ko
from shopflow.streaming.kafka_source import KafkaPythonSource


class SourceUnavailable(RuntimeError):
    """The source STREAMING_SOURCE names cannot run in this Spark."""


def stop_file(settings: Settings) -> Path:
    """Beside the checkpoint (one query at a time uses it: `checkpoint_lock`). While it exists our source admits no
    new data, so the trigger goes idle after the micro-batch in flight and a stop interrupts nothing; the query
    removes it before it starts."""
    checkpoint = settings.streaming_checkpoint_dir
    return checkpoint.with_name(f"{checkpoint.name}.stopping")


def source_frame(spark: SparkSession, settings: Settings, starting: ko.Offsets) -> DataFrame:
    """The topic as Spark's Kafka source shapes it; either source, the same columns."""
    max_events = settings.STREAMING_MAX_EVENTS_PER_BATCH
    if settings.STREAMING_SOURCE == "kafka":
        reader = (spark.readStream.format("kafka")
                  .option("kafka.bootstrap.servers", settings.KAFKA_BOOTSTRAP_SERVERS)
                  .option("subscribe", settings.KAFKA_TOPIC)
                  .option("failOnDataLoss", "true")
                  .option("kafka.isolation.level", "read_committed"))  # as librdkafka: no aborted events
        if max_events:
            reader = reader.option("maxOffsetsPerTrigger", str(max_events))
    else:
        spark.dataSource.register(KafkaPythonSource)
        reader = (spark.readStream.format(KafkaPythonSource.name())
                  .option("bootstrapServers", settings.KAFKA_BOOTSTRAP_SERVERS)
                  .option("topic", settings.KAFKA_TOPIC)
                  .option("maxEventsPerBatch", str(max_events))
                  .option("stopFile", str(stop_file(settings)))
                  # one read task per task slot, not per Kafka partition: 3 partitions on 2 slots read in two waves
                  .option("readTasks", str(spark.sparkContext.defaultParallelism)))
    try:
        return reader.option("startingOffsets", json.dumps(starting)).load().select(*ev.SOURCE_COLUMNS)
    except AnalysisException as missing:
        if settings.STREAMING_SOURCE != "kafka" or "Failed to find data source: kafka" not in str(missing):
            raise
        raise SourceUnavailable(
            "STREAMING_SOURCE=kafka needs Spark's Kafka connector (spark-sql-kafka-0-10 and its dependencies) on the "
            "classpath, as the compose deployment's Spark image has it; this Spark has none. Use "
            "STREAMING_SOURCE=python (the default: the same columns, read with librdkafka in Python)") from None
