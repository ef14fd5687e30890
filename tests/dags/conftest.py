"""Airflow reads its configuration at import: point it at a scratch home (sqlite) before any test imports it."""
import atexit
import os
import shutil
import sys
import tempfile

import pytest

from shopflow.config import get_settings
from shopflow.stack.airflow_api import DAGS_DIR
from shopflow.stack.services import STACK_MARKER, airflow_env

# Airflow's dag-processor puts the DAG folder on sys.path (DAGs import `_spark`); a bare DagBag does not.
sys.path.insert(0, str(DAGS_DIR))

_home = tempfile.mkdtemp(prefix="shopflow-airflow-test-")
atexit.register(shutil.rmtree, _home, True)  # one was left in /tmp per test run
for key, value in airflow_env(get_settings()).items():
    if key != STACK_MARKER:  # the test session is not the stack: `make down` must not take its processes for its own
        os.environ.setdefault(key, value)
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/airflow.db"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))
