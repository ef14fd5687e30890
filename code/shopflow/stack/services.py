"""What runs in the local stack: one `Service` per process, built from `Settings`.

Each service is a plain foreground process that supervisord starts, watches and stops. Nothing here starts
anything; `supervisor.py` does.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from shopflow.config import PROJECT_ROOT, Settings, database_url
from shopflow.stack.binaries import java_home, pg_bin_dir, spark_home, tansu_binary

VENV_BIN = Path(sys.executable).parent


class StackError(RuntimeError):
    """A service could not start (the message names it and carries the tail of its log), or the settings cannot run
    a local stack."""


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    ports: tuple[int, ...]
    group: str  # postgres | mariadb | kafka | spark | airflow | eventgen
    port_settings: tuple[str, ...] = ()  # the .env key that gives each of `ports`, in the same order
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "TERM"
    stop_wait: int = 20


def spark_master_host_port(settings: Settings) -> tuple[str, int]:
    """The (first) master's address; another kind of master (local[N], ...): the stack's default."""
    url = urlparse(settings.SPARK_MASTER_URL.split(",")[0])
    return url.hostname or "127.0.0.1", url.port or 7077


def kafka_host_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.KAFKA_BOOTSTRAP_SERVERS.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as an environment variable, so DAG files and spark-submitted jobs see the same values."""
    return {f.name: str(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


# Every process the stack starts carries STACK_MARKER=<this checkout> in its environment (supervisord and all it
# starts, Airflow's tasks and their spark-submits, Spark's executors): `make down` stops a leftover by that mark, not
# by a path in its command line, which an editor or `tail -f .local/logs/…` of the user's would have as well.
STACK_MARKER = "SHOPFLOW_STACK"


def base_env(settings: Settings) -> dict[str, str]:
    """What every process of ours needs: the settings, the venv first on PATH, Java, Spark, the project's Python."""
    return settings_env(settings) | {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
        "JAVA_HOME": java_home(),
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(settings.spark_scratch_dir),  # not /tmp, where a killed driver's dirs outlive it
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONUNBUFFERED": "1",
        STACK_MARKER: str(PROJECT_ROOT),
    } | ({"SHOPFLOW_ENV_FILE": named} if (named := os.environ.get("SHOPFLOW_ENV_FILE")) else {})


def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.state_dir / "airflow"
    master_host, master_port = spark_master_host_port(settings)
    db = database_url("postgresql+psycopg2", settings.AIRFLOW_DB_USER, settings.AIRFLOW_DB_PASSWORD,
                      settings.POSTGRES_HOST, settings.POSTGRES_PORT, settings.AIRFLOW_DB)
    api = f"http://127.0.0.1:{settings.AIRFLOW_PORT}"
    return base_env(settings) | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "code" / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # never inherited: pytest's DAG tests set it in their process, and a `make test` that starts the stack passed
        # it on, so the real scheduler ran in unit-test mode (new DAGs unpaused, cron runs by data interval)
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(settings.AIRFLOW_PARALLELISM),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.AIRFLOW_ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.AIRFLOW_PORT),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": settings.AIRFLOW_JWT_SECRET,
        "AIRFLOW__API__SECRET_KEY": settings.AIRFLOW_API_SECRET_KEY,
        "AIRFLOW__CORE__FERNET_KEY": settings.AIRFLOW_FERNET_KEY,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # no listener on all interfaces: the scheduler's health server binds 0.0.0.0:8974 by default (the stack's health
        # check is the API server's /api/v2/monitor/health), and see _airflow for the log servers
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # _spark.py maps the class-data sharing archive once the stack recorded it
        "SPARK_CDS_ARCHIVE": str(settings.spark_cds_archive) if settings.SPARK_CDS_JOBS else "",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
            {"conn_type": "spark", "host": f"spark://{master_host}", "port": master_port,
             "extra": {"deploy-mode": "client"}}),
    }


def mariadb_socket(settings: Settings) -> Path:
    return settings.state_dir / "mariadb" / "mariadb.sock"


def postgres_socket(settings: Settings) -> Path:
    """The socket Postgres makes in its data directory (`-k`)."""
    return settings.state_dir / "postgres" / f".s.PGSQL.{settings.POSTGRES_PORT}"


def _pg(settings: Settings) -> Service:
    data = settings.state_dir / "postgres"
    command = [str(pg_bin_dir(data) / "postgres"), "-D", str(data), "-p", str(settings.POSTGRES_PORT),
               "-k", str(postgres_socket(settings).parent), "-c", "listen_addresses=127.0.0.1",
               "-c", "max_connections=200", "-c", "shared_buffers=512MB", "-c", "timezone=UTC"]
    # SIGINT = fast shutdown (SIGTERM waits for every client to leave).
    return Service("postgres", command, (settings.POSTGRES_PORT,), "postgres", ("POSTGRES_PORT",), user="postgres",
                   stop_signal="INT")


def _mariadb(settings: Settings) -> Service:
    data = settings.state_dir / "mariadb"
    command = [shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults", "--user=mysql",
               f"--datadir={data}", f"--port={settings.MYSQL_PORT}", "--bind-address=127.0.0.1",
               f"--socket={mariadb_socket(settings)}", f"--pid-file={data / 'mariadb.pid'}",
               "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
               "--default-time-zone=+00:00", "--local-infile=1", "--skip-name-resolve",
               "--innodb-buffer-pool-size=1G", "--innodb-log-file-size=512M", "--max-connections=300",
               "--max-allowed-packet=1G"]  # the replication checksum's text of a block of long reviews (checksum.py)
    return Service("mariadb", command, (settings.MYSQL_PORT,), "mariadb", ("MYSQL_PORT",))


def _kafka(settings: Settings) -> Service:
    host, port = kafka_host_port(settings)
    url = f"tcp://{host}:{port}"
    command = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
    return Service("kafka", command, (port,), "kafka", ("KAFKA_BOOTSTRAP_SERVERS",))


# A running application's directory is never cleaned: the executor log of a `make stream` running for weeks grew
# ~7 KB a batch (~128 MB a day at eventgen's rate). It rolls at 10 MB, the last 5 rolled files kept.
EXECUTOR_LOG_ROLLING = ("-Dspark.executor.logs.rolling.strategy=size -Dspark.executor.logs.rolling.maxSize=10485760 "
                        "-Dspark.executor.logs.rolling.maxRetainedFiles=5")


def worker_options(settings: Settings) -> dict[str, str]:
    """Finished applications' directories are deleted after SPARK_WORKER_APP_DATA_TTL_SECONDS (Spark 4 enables the
    cleanup by default, with a TTL of 7 days); executor logs roll."""
    return {"SPARK_WORKER_OPTS": "-Dspark.worker.cleanup.enabled=true "
                                 f"-Dspark.worker.cleanup.appDataTtl={settings.SPARK_WORKER_APP_DATA_TTL_SECONDS} "
                                 + EXECUTOR_LOG_ROLLING}


def _spark(settings: Settings) -> list[Service]:
    host, port = spark_master_host_port(settings)
    spark_class = str(VENV_BIN / "spark-class")
    # spark.port.maxRetries=0: a master or worker whose port was taken after the stack's port check (another
    # checkout starting at the same time) fails, instead of moving to the next port, where the workers would then
    # register with the other checkout's master on the configured one. The master's REST submission server (port
    # 6066, unused: jobs are submitted in client mode) is off, so a second stack on other ports does not fail on it.
    env = base_env(settings) | {"SPARK_LOG_DIR": str(settings.state_dir / "spark" / "logs"),
                                "SPARK_DAEMON_JAVA_OPTS": "-Dspark.port.maxRetries=0"}
    services = [Service("spark-master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", host,
                                         "--port", str(port), "--webui-port", str(settings.SPARK_MASTER_UI_PORT)],
                        (port, settings.SPARK_MASTER_UI_PORT), "spark", ("SPARK_MASTER_URL", "SPARK_MASTER_UI_PORT"),
                        env=env | {"SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"})]
    for i in range(1, settings.SPARK_WORKERS + 1):
        ui_port = settings.SPARK_WORKER_UI_PORT_BASE + i - 1
        work_dir = settings.state_dir / "spark" / f"work-{i}"
        command = [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                   "--webui-port", str(ui_port), "--cores", str(settings.SPARK_WORKER_CORES),
                   "--memory", settings.SPARK_WORKER_MEMORY, "--work-dir", str(work_dir),
                   settings.SPARK_MASTER_URL]
        services.append(Service(f"spark-worker-{i}", command, (ui_port,), "spark", ("SPARK_WORKER_UI_PORT_BASE",),
                                env=env | worker_options(settings)))
    return services


# The scheduler and the triggerer would each start a log server on [::]/0.0.0.0 (ports 8793 and 8794; the host is not
# configurable). Its only reader is an API server on another machine: here the API server reads the task logs from
# .local/airflow/logs itself.
SKIP_LOG_SERVER = ("--skip-serve-logs",)


def _airflow(settings: Settings) -> list[Service]:
    airflow, env = str(VENV_BIN / "airflow"), airflow_env(settings)
    return [Service("airflow-api-server", [airflow, "api-server", "--host", "127.0.0.1",
                                           "--port", str(settings.AIRFLOW_PORT)],
                    (settings.AIRFLOW_PORT,), "airflow", ("AIRFLOW_PORT",), env=env, stop_wait=30)] + [
        Service(f"airflow-{part}", [airflow, part, *flags], (), "airflow", env=env, stop_wait=30)
        for part, flags in (("scheduler", SKIP_LOG_SERVER), ("dag-processor", ()), ("triggerer", SKIP_LOG_SERVER))] + [
        Service("airflow-log-groomer", [sys.executable, "-m", "shopflow.stack.log_groomer"], (), "airflow", env=env)]


def _eventgen(settings: Settings) -> Service:
    return Service("eventgen", [sys.executable, "-m", "datagen.events"], (), "eventgen", env=base_env(settings))


def _dashboard(settings: Settings) -> Service:
    app = PROJECT_ROOT / "code" / "shopflow" / "dashboard" / "app.py"
    command = [str(VENV_BIN / "streamlit"), "run", str(app), "--server.address", "127.0.0.1",
               "--server.port", str(settings.DASHBOARD_PORT), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    return Service("dashboard", command, (settings.DASHBOARD_PORT,), "dashboard", ("DASHBOARD_PORT",),
                   env=base_env(settings))


def all_services(settings: Settings) -> list[Service]:
    """In start order."""
    return [_pg(settings), _mariadb(settings), _kafka(settings), *_spark(settings), *_airflow(settings),
            _eventgen(settings), _dashboard(settings)]


GROUPS = ("postgres", "mariadb", "kafka", "spark", "airflow", "eventgen", "dashboard")
