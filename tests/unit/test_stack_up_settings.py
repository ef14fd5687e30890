"""What `make up` takes from the settings besides starting the services: the client commands it prints, and the
environment it serializes the DAGs with."""
from __future__ import annotations


def test_the_printed_mysql_command_reaches_the_stacks_server_for_localhost_too():
    """For the host `localhost` the mysql client takes the system's socket and ignores -P: the command `make up`
    printed reached Debian's own MariaDB, or nothing."""
    from shopflow.config import load_settings
    from shopflow.stack.up import summary

    text = summary(load_settings(env={"MYSQL_HOST": "localhost", "MYSQL_PORT": "3307"}, env_file=None))
    [line] = [line for line in text.splitlines() if " mysql " in f" {line.strip()} " or "mysql --" in line]
    assert "mysql --protocol=TCP -h localhost -P 3307 -u db_user" in line, text


def test_make_up_serializes_the_dags_with_the_settings_the_dag_processor_runs_with(monkeypatch, tmp_path):
    """A schedule changed in .env while Airflow ran: `make up` serialized the new one, which the running
    dag-processor, still on the old settings, put back within ~30 s (two DAG versions, the new timetable between)."""
    import dataclasses
    import json
    import subprocess

    from shopflow.config import get_settings
    from shopflow.stack import airflow_api
    from shopflow.stack.supervisor import launch_file

    settings = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path), REPLICATION_SCHEDULE="*/5 * * * *")
    seen = []
    monkeypatch.setattr(airflow_api.subprocess, "run",
                        lambda argv, env, **_kw: seen.append(env) or subprocess.CompletedProcess(argv, 0, "", ""))
    airflow_api.reserialize(settings)  # no dag-processor started by the stack yet: the current settings
    launch_file(settings, "airflow-dag-processor").parent.mkdir(parents=True)
    launch_file(settings, "airflow-dag-processor").write_text(json.dumps(
        {"command": ["airflow", "dag-processor"], "env": {"REPLICATION_SCHEDULE": "*/15 * * * *"}}))
    airflow_api.reserialize(settings)
    assert [env["REPLICATION_SCHEDULE"] for env in seen] == ["*/5 * * * *", "*/15 * * * *"]
