"""The session warm-up readies the Python workers the job's own tasks get: a Python data source's reads run in
Spark's Arrow-fed worker pool, apart from the RDD one (`build_session(arrow_workers=True)`, the streaming job).

Each check runs in a fresh local Spark (its own process): the shared test session's worker pools already hold
workers of earlier tests. A marker module imported by the warm-up shows whether a read got a warmed worker."""
import os
import subprocess
import sys
import textwrap

from shopflow.config import PROJECT_ROOT

SCRIPT = textwrap.dedent("""
    import sys
    from pyspark.sql import SparkSession
    from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
    from shopflow.config import Settings
    from shopflow.jobs.session import warm_up

    class Probe(DataSource):
        @classmethod
        def name(cls):
            return "warm_probe"

        def schema(self):
            return "warmed boolean"

        def reader(self, schema):
            return ProbeReader()

    class ProbeReader(DataSourceReader):
        def partitions(self):
            return [InputPartition(i) for i in range(4)]

        def read(self, partition):
            import sys
            yield ("colorsys" in sys.modules,)

    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "512m").getOrCreate())
    spark.dataSource.register(Probe)
    warm_up(spark, Settings(), ("colorsys",), arrow_workers=sys.argv[1] == "arrow")
    print("warmed:", sorted({row.warmed for row in spark.read.format("warm_probe").load().collect()}))
    spark.stop()
""")


def _reads_warmed(pool: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT, pool], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env=os.environ | {"PYSPARK_PYTHON": sys.executable}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return next(line for line in done.stdout.splitlines() if line.startswith("warmed:"))


def test_arrow_warm_up_readies_the_workers_a_python_data_source_reads_with():
    assert _reads_warmed("arrow") == "warmed: [True]"


def test_rdd_warm_up_does_not():
    """Why the streaming job needs `arrow_workers`: the RDD pool's workers never serve its reads."""
    assert _reads_warmed("rdd") == "warmed: [False]"
