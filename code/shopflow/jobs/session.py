"""The one way our entry points build their SparkSession."""
from __future__ import annotations

import os

from shopflow.config import Settings


def build_session(app_name: str, settings: Settings, master: str | None = None):
    """Under spark-submit (the DAGs) master and jars come from its arguments; run directly, from Settings."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit
        builder = (builder.master(master or settings.SPARK_MASTER_URL)
                   .config("spark.jars", f"{settings.POSTGRES_JDBC_JAR},{settings.MYSQL_JDBC_JAR}")
                   .config("spark.driver.memory", settings.SPARK_DRIVER_MEMORY))
    session = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "6")
               .getOrCreate())
    session.sparkContext.setLogLevel("WARN")
    return session
