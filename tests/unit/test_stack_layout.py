"""Settings no local stack can run with fail in one line before anything starts (no server needed)."""
import dataclasses

import pytest

from shopflow.config import get_settings
from shopflow.stack.layout import check_layout
from shopflow.stack.services import StackError, all_services


def _layout(**changes):
    settings = dataclasses.replace(get_settings(), **changes)
    check_layout(settings, all_services(settings))


def test_the_default_settings_pass():
    _layout()
    _layout(KAFKA_BOOTSTRAP_SERVERS="localhost:9092", SPARK_MASTER_URL="spark://127.0.0.2:7077")  # loopback too


@pytest.mark.parametrize("changes, message", [
    # the port after 8080: Spark's master UI had taken it by the time Airflow started, 35 s into `make up`
    ({"AIRFLOW_PORT": 8081}, r"port 8081 is given to both spark-master \(SPARK_MASTER_UI_PORT\) and "
                             r"airflow-api-server \(AIRFLOW_PORT\)"),
    ({"DASHBOARD_PORT": 5432}, r"port 5432 is given to both postgres \(POSTGRES_PORT\) and dashboard"),
    ({"SPARK_WORKER_UI_PORT_BASE": 8079}, r"port 8081 is given to both spark-master \(SPARK_MASTER_UI_PORT\) and "
                                          r"spark-worker-3 \(SPARK_WORKER_UI_PORT_BASE\)"),
    ({"SPARK_WORKER_UI_PORT_BASE": 65535}, r"spark-worker-2 \(SPARK_WORKER_UI_PORT_BASE\): port 65536 is not a TCP "
                                           r"port"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "0.0.0.0:9092"}, r"KAFKA_BOOTSTRAP_SERVERS: the local stack listens on 127\.0\.0\.1 "
                                                  r"only, not on 0\.0\.0\.0"),
    ({"SPARK_MASTER_URL": "spark://0.0.0.0:7077"}, r"SPARK_MASTER_URL: the local stack listens on 127\.0\.0\.1"),
], ids=["airflow on the master UI", "dashboard on postgres", "worker UIs on the master UI", "past 65535", "kafka off "
        "loopback", "spark off loopback"])
def test_settings_the_stack_cannot_run_with_name_their_keys(changes, message):
    with pytest.raises(StackError, match=message):
        _layout(**changes)
