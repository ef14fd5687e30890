"""The session warm-up waits for the cores the application will get, not more (spark.cores.max caps them)."""
import dataclasses

import pytest

from shopflow.config import Settings
from shopflow.jobs.session import expected_cores


@pytest.mark.parametrize("master, cores_max, expected", [
    ("spark://127.0.0.1:7077", None, 3), ("spark://127.0.0.1:7077", "2", 2), ("spark://127.0.0.1:7077", "8", 3),
    ("spark://127.0.0.1:7077", "0", 3), ("spark://127.0.0.1:7077", "x", 3), ("local[2]", "2", 1)])
def test_expected_cores(master, cores_max, expected):
    settings = dataclasses.replace(Settings(), SPARK_WORKERS=3, SPARK_WORKER_CORES=1, SPARK_MARTS_CORES=1,
                                   SPARK_STREAMING_CORES=1)
    assert expected_cores(settings, master, cores_max) == expected
