"""The local stack: a taken port fails clearly, running services are reused, status shows them."""
import dataclasses
import socket

import pytest

from shopflow.stack import health, manager


def test_taken_port_fails_with_the_service_and_port_named(settings, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        other = dataclasses.replace(settings, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
                                    LOCAL_STATE_DIR=str(tmp_path / "state"))
        with pytest.raises(manager.StackError) as error:
            manager.ensure(other, ["kafka"])
    message = str(error.value)
    assert f"kafka: port {port} is already in use" in message
    assert "python" in message or "unknown process" in message  # ss names the holder: this test process


def test_running_services_are_reused(postgres, mysql):
    assert manager.ensure(postgres, ["postgres", "mariadb"]) == []


def test_status_lists_every_service_with_state_port_and_pid(postgres):
    rows = {name: (state, ports, pid) for name, state, ports, pid in manager.status_rows(postgres)}
    assert rows["postgres"][0] == "RUNNING"
    assert rows["postgres"][1] == str(postgres.POSTGRES_PORT) and rows["postgres"][2].isdigit()
    assert {"mariadb", "kafka", "spark-master", "spark-worker-3", "airflow-api-server", "eventgen"} <= set(rows)
    assert health.port_open(postgres.POSTGRES_PORT)


def test_unknown_group_is_refused(settings):
    with pytest.raises(manager.StackError, match="unknown service group"):
        manager.ensure(settings, ["zookeeper"])
