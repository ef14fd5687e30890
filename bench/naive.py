"""Naive: the brief's design run on the same cluster (see naive_job.py); seconds exclude session start."""
from __future__ import annotations

import json
from pathlib import Path

from shopflow.config import Settings

from . import ours
from .common import Measure, mysql_counts, spark_submit

DATABASE = "naive"  # suffix of the scratch database test_bench_<suffix>
JOB_FILE = Path(__file__).resolve().parent / "naive_job.py"
# the JVM flags the replication job gets (SPARK_JAVA_OPTIONS, the class-data sharing archive if it maps it): the
# baseline runs in the same JVMs as ours, so no flag of ours makes the ratio
FLAGS_OF = ours.JOB_FILE.stem


def measure_naive(settings: Settings, log: Path) -> Measure:
    code, wall = spark_submit(JOB_FILE, [], settings, log, flags_of=FLAGS_OF)
    lines = [line for line in log.read_text().splitlines() if line.startswith("BENCH_NAIVE ")]
    if code != 0 or not lines:
        raise RuntimeError(f"naive job exited {code}, see {log}")
    result = json.loads(lines[-1].removeprefix("BENCH_NAIVE "))
    counts = mysql_counts(settings)
    return Measure("naive: JDBC 1 partition, defaults", sum(counts.values()), result["seconds"],
                   {"wall_s": round(wall, 3), "session_and_submit_s": round(wall - result["seconds"], 3),
                    "per_table_s": result["tables"]}, window=tuple(result["window"]))
