"""The local stack: a taken port fails clearly, running services are reused, status shows them."""
import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from shopflow.stack import drift, health, manager, supervisor
from shopflow.stack.services import VENV_BIN, Service, all_services, base_env

pytestmark = pytest.mark.integration


def test_taken_port_fails_with_the_service_and_port_named(settings, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        other = dataclasses.replace(settings, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
                                    LOCAL_STATE_DIR=str(tmp_path / "state"))
        with pytest.raises(manager.StackError) as error:
            manager.ensure(other, ["kafka"])
        with pytest.raises(manager.StackError, match=f"kafka: port {port} is already in use"):
            manager.check_ports(other, ["kafka"])  # what `make up` runs first, for every group
    message = str(error.value)
    assert f"kafka: port {port} is already in use" in message
    assert f"in use by python (pid {os.getpid()}), which is not this stack" in message  # this process
    assert message.endswith("or set another port in .env (KAFKA_BOOTSTRAP_SERVERS).")  # the key that moves it


def test_a_port_taken_by_a_stack_of_another_state_directory_names_it_and_how_to_stop_it(postgres, tmp_path):
    """This checkout's stack under another LOCAL_STATE_DIR: the message said "of the shopflow stack in <this
    checkout>, which is not this checkout's stack" (another checkout's stack is named by its checkout: the same
    message without the state directory)."""
    other = dataclasses.replace(postgres, LOCAL_STATE_DIR=str(tmp_path / "state"))
    with pytest.raises(manager.StackError) as error:
        manager.check_ports(other, ["postgres"])
    pid = health.port_owner(postgres.POSTGRES_PORT).split("pid ")[1].split(",")[0]
    state = postgres.state_dir
    assert (f"postgres: port {postgres.POSTGRES_PORT} is already in use by postgres (pid {pid}, of this checkout's "
            f"stack with the state directory {state}: `LOCAL_STATE_DIR={state} make down` stops it), which is not "
            "this stack") in str(error.value)


def test_running_services_are_reused(postgres, mysql):
    assert manager.ensure(postgres, ["postgres", "mariadb"]) == []


def test_a_running_server_on_another_port_than_the_settings_give_fails_before_anything_starts(postgres):
    """`POSTGRES_PORT=15432 make up` with the stack up: a clear error, not a client's traceback on the new port."""
    assert "postgres" in drift.load(postgres), "ensure records what it starts"
    moved = dataclasses.replace(postgres, POSTGRES_PORT=postgres.POSTGRES_PORT + 10_000)
    expected = f"postgres runs on port {postgres.POSTGRES_PORT}, but the settings now give port {moved.POSTGRES_PORT}"
    with pytest.raises(manager.StackError, match=expected):
        manager.check_ports(moved, ["postgres"])
    with pytest.raises(manager.StackError, match=expected):
        manager.ensure(moved, ["postgres"])
    assert not health.port_open(moved.POSTGRES_PORT)


def test_status_lists_every_service_with_state_port_and_pid(postgres):
    rows = {name: (state, ports, pid) for name, state, ports, pid in manager.status_rows(postgres)}
    assert rows["postgres"][0] == "RUNNING"
    assert rows["postgres"][1] == str(postgres.POSTGRES_PORT) and rows["postgres"][2].isdigit()
    last_worker = f"spark-worker-{postgres.SPARK_WORKERS}"  # .env's count, 3 as shipped
    assert {"mariadb", "kafka", "spark-master", last_worker, "airflow-api-server", "eventgen"} <= set(rows)
    assert health.port_open(postgres.POSTGRES_PORT)


def test_unknown_group_is_refused(settings):
    with pytest.raises(manager.StackError, match="unknown service group"):
        manager.ensure(settings, ["zookeeper"])


def test_spark_start_records_a_class_data_sharing_archive_both_jvm_sides_map(spark_cluster, tmp_path):
    """With -Xshare:on a JVM refuses to start unless it maps the archive: driver and executors must both map it."""
    archive = spark_cluster.spark_cds_archive
    assert archive.is_file() and archive.stat().st_size > 10_000_000
    assert f"-XX:SharedArchiveFile={archive}" in spark_cluster.java_options_for(False, job="build_marts")
    script = tmp_path / "count.py"
    script.write_text("from pyspark.sql import SparkSession\n"
                      "spark = SparkSession.builder.getOrCreate()\n"
                      "print('rows', spark.sparkContext.parallelize(range(30), 3).count())\n"
                      "spark.stop()\n")
    java = f"-Xshare:on {spark_cluster.java_options_for(False, job='build_marts')}"
    run = subprocess.run([str(VENV_BIN / "spark-submit"), "--master", spark_cluster.SPARK_MASTER_URL,
                          "--conf", f"spark.driver.extraJavaOptions={java}",
                          "--conf", f"spark.executor.extraJavaOptions={java}", "--conf", "spark.cores.max=3",
                          str(script)], env=os.environ | base_env(spark_cluster), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "rows 30" in run.stdout, (run.stdout + run.stderr)[-3000:]


def test_spark_workers_delete_old_application_directories(spark_cluster):
    """Every executor leaves 1.7-3.2 MB on its worker (logs, the copied JDBC jars), ~28 an hour from the DAGs; the
    workers delete them after SPARK_WORKER_APP_DATA_TTL_SECONDS, not Spark's 7 days."""
    pid = {name: pid for name, _, _, pid in manager.status_rows(spark_cluster)}["spark-worker-1"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().decode().split("\0")
    assert "-Dspark.worker.cleanup.enabled=true" in argv
    assert f"-Dspark.worker.cleanup.appDataTtl={spark_cluster.SPARK_WORKER_APP_DATA_TTL_SECONDS}" in argv
    # a running application's (a `make stream` of weeks) is never deleted: its executor logs roll instead
    assert {"-Dspark.executor.logs.rolling.strategy=size",
            "-Dspark.executor.logs.rolling.maxRetainedFiles=5"} <= set(argv)


def test_every_listening_socket_of_the_stack_binds_loopback(settings, postgres, mysql, kafka, spark_cluster, airflow):
    """Services bind 127.0.0.1: also the listeners a server starts on its own (Airflow's scheduler and triggerer
    started log servers and a health server on all interfaces, 8793/8794/8974)."""
    from shopflow.stack import processes, supervisor

    stack = processes._descendants(supervisor.daemon_pid(settings))
    assert stack, "supervisord runs no services"
    listeners = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    ours = [line.split() for line in listeners if any(f"pid={pid}," in line for pid in stack)]
    assert {fields[3].rsplit(":", 1)[1] for fields in ours} >= {str(settings.POSTGRES_PORT), str(settings.MYSQL_PORT),
                                                                 str(settings.AIRFLOW_PORT)}
    loopback = ("127.0.0.1:", "[::ffff:127.0.0.1]:")  # the JVMs' IPv4 on an IPv6 socket
    assert [f"{fields[3]} {fields[5]}" for fields in ours if not fields[3].startswith(loopback)] == []


def test_a_running_airflow_takes_a_new_admin_password_from_make_up(settings, airflow):
    """Airflow's simple auth manager reads its password file at each login: `make up` writes it again (for the same
    user) instead of saying to restart the whole stack."""
    from shopflow.stack import airflow_api, bootstrap

    changed = dataclasses.replace(settings, AIRFLOW_ADMIN_PASSWORD=f"changed-{os.getpid()}")
    with pytest.raises(airflow_api.LoginRefused):
        airflow_api.AirflowClient(changed)
    try:
        manager._after_start(changed, "airflow", fresh=False)  # what `make up` does for a running Airflow
        assert airflow_api.AirflowClient(changed).token
        with pytest.raises(airflow_api.LoginRefused):
            airflow_api.AirflowClient(settings)
    finally:
        bootstrap.write_airflow_password(settings)
    assert airflow_api.AirflowClient(settings).token


def test_an_interrupted_first_mariadb_init_is_done_again(settings, request):
    """mariadb-install-db creates mysql/ first and writes mysql_upgrade_info last: a Ctrl-C in between left a data
    directory every later `make up` took as initialised, and mariadbd never started on its partial tables."""
    from shopflow.stack import bootstrap

    # the mysql system user runs the init: pytest's tmp_path lies under a root-only directory
    root = Path(tempfile.mkdtemp(prefix="shopflow-mariadb-init-"))
    root.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    state = dataclasses.replace(settings, LOCAL_STATE_DIR=str(root / "state"))
    partial = state.state_dir / "mariadb" / "mysql"
    partial.mkdir(parents=True)
    (partial / "half_written.frm").write_bytes(b"half written")
    assert bootstrap.init_mariadb(state) is True
    done = [state.state_dir / "mariadb" / name for name in bootstrap.MARIADB_INIT_DONE]
    assert any(marker.exists() for marker in done)
    assert not (partial / "half_written.frm").exists() and (partial / "user.frm").exists()
    assert bootstrap.init_mariadb(state) is False  # done: left alone

    for marker in done:
        marker.unlink(missing_ok=True)
    (state.state_dir / "mariadb" / "shop").mkdir()  # a database: a server ran on it, whatever the marker says
    assert bootstrap.init_mariadb(state) is False
    assert (state.state_dir / "mariadb" / "shop").is_dir() and (partial / "user.frm").exists()


def test_an_interrupted_first_initdb_is_done_again(settings, request):
    """initdb writes PG_VERSION first: a hard kill of the first init left a directory every later `make up` took as
    initialised, and Postgres never started on it."""
    from shopflow.stack import bootstrap
    from shopflow.stack.binaries import data_major, pg_bin_dir

    root = Path(tempfile.mkdtemp(prefix="shopflow-initdb-"))  # the postgres system user runs initdb
    root.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    state = dataclasses.replace(settings, LOCAL_STATE_DIR=str(root / "state"))
    data = state.state_dir / "postgres"
    (data / "base" / "1").mkdir(parents=True)  # template1 made, template0 and postgres not yet
    (data / "PG_VERSION").write_text(pg_bin_dir().parent.name + "\n")
    assert bootstrap.init_postgres(state) is True
    assert data_major(data) and len([p for p in (data / "base").iterdir() if p.is_dir()]) >= 3
    assert bootstrap.init_postgres(state) is False  # done: left alone

    shutil.rmtree(data / "base" / "1")  # a server ran on it (postmaster.opts): not ours to redo, whatever is missing
    (data / "postmaster.opts").write_text("postgres\n")
    (data / "base" / "kept").mkdir()
    assert bootstrap.init_postgres(state) is False and (data / "base" / "kept").is_dir()


def test_a_service_that_exits_at_once_is_reported_with_its_log(settings, tmp_path):
    """A server that exits within supervisord's startsecs (a FATAL at start) was reported as `… failed to start
    (SPAWN_ERROR: …)` alone: the tail of its log was printed only for slower deaths."""
    scratch = dataclasses.replace(settings, LOCAL_STATE_DIR=str(tmp_path / "state"))
    service = Service("quick-exit", ["/bin/sh", "-c", "echo 'FATAL:  the reason it gave' >&2; exit 1"], (), "test")
    supervisor.start_daemon(scratch, [service])
    try:
        with pytest.raises(RuntimeError) as error:
            supervisor.start(scratch, "quick-exit")
    finally:
        supervisor.shutdown(scratch)
    assert "quick-exit failed to start (SPAWN_ERROR" in str(error.value)  # supervisord's word for it
    assert str(error.value).endswith("quick-exit.log ---\nFATAL:  the reason it gave")


def test_a_spark_master_whose_port_was_taken_fails_instead_of_moving(settings, tmp_path):
    """A port taken between the stack's port check and the master's start (another checkout starting at the same
    time): the master moved to the next port, and the workers, given the configured one, joined the other master."""
    master = next(s for s in all_services(settings) if s.name == "spark-master")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [*master.command[:master.command.index("--port") + 1], str(port), "--webui-port", "0"]
        result = subprocess.run(command, env=os.environ | master.env | {"SPARK_LOG_DIR": str(tmp_path)},
                                capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "failed after 0 retries" in result.stdout + result.stderr
