"""
### build_marts: the five analytical marts, from the MySQL replica, behind quality gates

**When:** every time `replicate_postgres_to_mysql` updates the replica (Airflow 3 data-aware scheduling on the Asset
`mysql://mysql_db/replica`), or when triggered by hand.

**What:** one spark-submit of `code/shopflow/jobs/build_marts.py` on the standalone cluster, in one executor of
`SPARK_MARTS_CORES` cores (default 2: one JVM to warm, two task slots, was fastest here). It reads the replica
once (partitioned JDBC reads, cached), builds `mart_user_activity`, `mart_product_rating`,
`mart_user_loyalty_points`, `mart_average_check` and `mart_weekly_activity` into `<mart>__staging` tables, runs each
mart's quality rules there (results in `quality_results`, the run in `pipeline_runs`) and publishes all marts with
one atomic `RENAME TABLE`. A failed rule fails the task and publishes nothing: readers keep the previous marts.

**Why one task, not one per mart:** a spark-submit spends seconds starting its session and warming up its executors
(5–6 s for this job in `make bench` runs) on this 2-core machine, about as long as a mart takes to build;
all five read the same replica tables (read once, shared in cache); and one rename publishes a consistent set of
marts built from the same replica state. Per-mart timings and check results are in `pipeline_runs` (one row per
mart) and `quality_results`.
"""
from __future__ import annotations

from _spark import DEFAULT_ARGS, MARTS_CORES, REPLICA_ASSET, START_DATE, setting, spark_job
from airflow.sdk import DAG, Asset

MARTS = Asset("mysql://mysql_db/marts")

with DAG(
    dag_id="build_marts",
    description="Spark: MySQL replica -> mart_* tables, quality-gated, published atomically",
    doc_md=__doc__,
    schedule=[REPLICA_ASSET],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["shopflow", "marts", "spark", "mysql", "quality"],
):
    marts_cores = int(setting("SPARK_MARTS_CORES", MARTS_CORES))  # one executor of that many cores
    # a retry is a run of its own in quality_results and pipeline_runs (its checks would add up to the first try's);
    # one argument, so that a Run ID typed with a leading "-" is not taken for an option, cut to fit the job's 250
    run_id = "{{ run_id[:235] }}{% if ti.try_number > 1 %} (try {{ ti.try_number }}){% endif %}"
    spark_job("build_marts", "build_marts", application_args=[f"--run-id={run_id}"], outlets=[MARTS],
              cores=marts_cores, executor_cores=marts_cores)
