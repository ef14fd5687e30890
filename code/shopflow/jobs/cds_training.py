"""spark-submit script the stack runs once (local mode) to record the Spark JVMs' class-data sharing archive.

It only has to load the classes our batch jobs load: a session, cached DataFrames, aggregates, a join, a window,
date functions and Python workers (shopflow/stack/cds.py). No database, no cluster.
"""
from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F


def main() -> None:
    spark = SparkSession.builder.appName("shopflow-cds-training").config("spark.sql.shuffle.partitions", "3") \
        .config("spark.sql.session.timeZone", "UTC").getOrCreate()
    orders = spark.range(0, 50_000).select(
        F.col("id").alias("order_id"), (F.col("id") % 1000).alias("user_id"),
        (F.col("id") % 7).cast("string").alias("status"),
        (F.col("id") % 997 / 10).cast("decimal(12,2)").alias("amount"),
        F.current_timestamp().alias("ordered_at")).persist(StorageLevel.MEMORY_AND_DISK)
    users = spark.range(0, 1000).select(F.col("id").alias("user_id"), F.concat(F.lit("u"), F.col("id")).alias("name"))
    per_user = orders.groupBy("user_id", "status").agg(
        F.count(F.lit(1)).alias("orders"), F.sum("amount").alias("total"), F.avg("amount").alias("mean"),
        F.max("ordered_at").alias("last"))
    ranked = per_user.join(users, "user_id").withColumn(
        "rank", F.row_number().over(Window.partitionBy("status").orderBy(F.desc("total"))))
    ranked.filter("rank <= 10").collect()
    orders.selectExpr("count(*)", "sum(amount)", "count(distinct user_id)", "min(ordered_at)").first()
    orders.groupBy(F.date_trunc("week", "ordered_at")).count().collect()
    spark.sparkContext.parallelize(range(1000), 3).map(lambda x: x * 2).sum()
    orders.unpersist()
    spark.stop()


if __name__ == "__main__":
    main()
