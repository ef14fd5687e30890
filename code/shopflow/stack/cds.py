"""The Spark JVMs' class-data sharing archive (AppCDS): recorded once per state dir and pyspark version, mapped by
the driver and executors of the jobs in SPARK_CDS_JOBS (`Settings.java_options_for`, the DAGs' `_spark.py`).

A fresh JVM spends much of a short job loading and verifying Spark's classes; mapping them from the archive made
the marts job's replica read ~20 % faster and each job's start seconds shorter (the replication job's ≈ 3.5 s;
bench/NOTES.md). The archive is recorded by a small local-mode job (`jobs/cds_training.py`) with
`-XX:ArchiveClassesAtExit`; its name carries the pyspark and JDK builds (a JVM of another build maps none of it and
says nothing), so an update records a new one and the old ones are deleted. Other jars: a warning line, run without
it. Recording failures only cost the speed-up.
"""
from __future__ import annotations

import subprocess

from shopflow.config import PROJECT_ROOT, Settings
from shopflow.stack.services import VENV_BIN, base_env

TRAINING_JOB = PROJECT_ROOT / "code" / "shopflow" / "jobs" / "cds_training.py"
TIMEOUT_S = 300


def record_command(settings: Settings, into: str) -> list[str]:
    java = f"{settings.java_options_for(streaming=False)} -XX:ArchiveClassesAtExit={into}"
    return [str(VENV_BIN / "spark-submit"), "--master", "local[2]", "--conf", f"spark.driver.extraJavaOptions={java}",
            str(TRAINING_JOB)]


def ensure_archive(settings: Settings) -> bool:
    """Records the archive unless it exists; True when it is there afterwards."""
    archive = settings.spark_cds_archive
    if archive.is_file():
        return True
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        run = subprocess.run(record_command(settings, str(partial)), env=base_env(settings), capture_output=True,
                             text=True, timeout=TIMEOUT_S, cwd=PROJECT_ROOT)
        failure = f"exit code {run.returncode}: {(run.stdout + run.stderr)[-800:]}" if run.returncode else ""
    except subprocess.TimeoutExpired:
        failure = f"no end after {TIMEOUT_S} s"
    if failure or not partial.is_file():
        partial.unlink(missing_ok=True)
        print(f"  warning: the Spark class-data sharing archive was not recorded ({failure or 'no archive written'});"
              " Spark jobs run without it", flush=True)
        return False
    partial.rename(archive)  # atomic: a JVM never maps a half-written archive
    for older in archive.parent.glob("classes-pyspark-*.jsa"):  # of a pyspark or JDK build no longer installed
        if older != archive:
            older.unlink(missing_ok=True)
    return True
