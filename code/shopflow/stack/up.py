"""`make up`: servers, data, the event generator, one run of each DAG, then where to look."""
from __future__ import annotations

import subprocess
import sys

from shopflow.config import Settings
from shopflow.stack import airflow_api, manager
from shopflow.stack.manager import step
from shopflow.stack.services import base_env

DAG_TIMEOUT_S = 1800


def _generate_data(settings: Settings) -> None:
    with step("generate the Postgres source data (python -m datagen.postgres)"):
        result = subprocess.run([sys.executable, "-m", "datagen.postgres"], env=base_env(settings))
        if result.returncode != 0:
            raise manager.StackError(f"the Postgres data generator failed (exit {result.returncode})")


def _run_dags(settings: Settings) -> None:
    dag_ids = airflow_api.project_dag_ids()
    if not dag_ids:
        print("  no DAGs in code/airflow/dags yet: nothing to run", flush=True)
        return
    with step(f"load DAGs into Airflow ({', '.join(dag_ids)})"):
        airflow_api.reserialize(settings)
        client = airflow_api.AirflowClient(settings)
        airflow_api.wait_for_dags(client, dag_ids)
    failed = []
    for dag_id in dag_ids:
        client.unpause(dag_id)
        if client.dags()[dag_id].get("timetable_summary", "").lower().startswith("asset"):
            continue  # runs by itself when the Asset it waits for is updated
        with step(f"run DAG {dag_id}"):
            run_id = client.trigger(dag_id)
            state = airflow_api.wait_for_run(client, dag_id, run_id, DAG_TIMEOUT_S)
            print(f"  {dag_id} {run_id}: {state}", flush=True)
            if state != "success":
                failed.append(dag_id)
    if failed:
        raise manager.StackError(f"DAG run(s) did not succeed: {', '.join(failed)}; see the Airflow UI for task logs")


def summary(settings: Settings) -> str:
    s = settings
    return f"""
shopflow is up.
  Airflow UI        http://127.0.0.1:{s.AIRFLOW_PORT}   login {s.AIRFLOW_ADMIN_USER} / {s.AIRFLOW_ADMIN_PASSWORD}
  Spark master UI   http://127.0.0.1:{s.SPARK_MASTER_UI_PORT}
  Kafka             {s.KAFKA_BOOTSTRAP_SERVERS}   topic {s.KAFKA_TOPIC} (an event every {s.KAFKA_EVENT_INTERVAL_SECONDS:g} s)
  Postgres          psql "postgresql://{s.POSTGRES_USER}:{s.POSTGRES_PASSWORD}@{s.POSTGRES_HOST}:{s.POSTGRES_PORT}/{s.POSTGRES_DB}?options=-csearch_path%3D{s.POSTGRES_SCHEMA}"
                    JDBC {s.postgres_jdbc_url}
  MySQL (MariaDB)   mysql -h {s.MYSQL_HOST} -P {s.MYSQL_PORT} -u {s.MYSQL_USER} -p{s.MYSQL_PASSWORD} {s.MYSQL_DATABASE}
                    JDBC {s.mysql_jdbc_url}
  Status            make status        Logs  {s.state_dir / 'logs'}/
  Stop              make down
"""


def up(settings: Settings) -> int:
    groups = [g for g in manager.GROUPS if g != "eventgen"]
    manager.ensure(settings, groups)
    _generate_data(settings)
    with step("start the Kafka event generator"):
        manager.ensure(settings, ["eventgen"])
    _run_dags(settings)
    print(summary(settings), flush=True)
    return 0
