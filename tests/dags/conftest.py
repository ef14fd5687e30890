"""Airflow reads its configuration at import: point it at a scratch home (sqlite) before any test imports it."""
import os
import tempfile

from shopflow.config import get_settings
from shopflow.stack.services import airflow_env

_home = tempfile.mkdtemp(prefix="shopflow-airflow-test-")
for key, value in airflow_env(get_settings()).items():
    os.environ.setdefault(key, value)
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/airflow.db"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
