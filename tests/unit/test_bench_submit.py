"""The bench's spark-submits: the naive baseline runs in JVMs flagged like the replication job's (ours), so no JVM flag
of ours (C1 only, the serial collector, the class-data sharing archive) decides the full-vs-naive ratio."""
from __future__ import annotations

import pytest

from bench import naive, ours
from bench.common import spark_submit_command
from shopflow.config import load_settings


def _java(command: list[str]) -> set[str]:
    return {c for c in command if c.startswith(("spark.driver.extraJavaOptions=", "spark.executor.extraJavaOptions="))}


def test_the_naive_job_gets_the_replication_jobs_jvm_flags_archive_included(tmp_path):
    settings = load_settings(env={"LOCAL_STATE_DIR": str(tmp_path), "SPARK_JAVA_OPTIONS": "-Xss4m",
                                  "SPARK_CDS_JOBS": ours.JOB_FILE.stem}, env_file=None)
    settings.spark_cds_archive.parent.mkdir(parents=True)
    settings.spark_cds_archive.write_bytes(b"recorded")
    theirs = _java(spark_submit_command(naive.JOB_FILE, [], settings, flags_of=naive.FLAGS_OF))
    assert theirs == _java(spark_submit_command(ours.JOB_FILE, [], settings))
    assert all(f"-XX:SharedArchiveFile={settings.spark_cds_archive}" in c for c in theirs) and len(theirs) == 2
    # without flags_of the naive script would be an unlisted job: no archive
    assert not any("SharedArchiveFile" in c for c in _java(spark_submit_command(naive.JOB_FILE, [], settings)))


def test_the_naive_measure_submits_with_those_flags(tmp_path, monkeypatch):
    class Submitted(Exception):
        pass

    seen = {}

    def submit(script, args, settings, log, **options):
        seen.update(options, script=script)
        raise Submitted

    monkeypatch.setattr(naive, "spark_submit", submit)
    with pytest.raises(Submitted):
        naive.measure_naive(load_settings(env={"LOCAL_STATE_DIR": str(tmp_path)}, env_file=None), tmp_path / "log")
    assert seen == {"script": naive.JOB_FILE, "flags_of": ours.JOB_FILE.stem}
