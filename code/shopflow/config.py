"""One `Settings` object read from `.env` with the process environment on top.

A bad value fails at start with one line naming the key (`SettingsError`).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import urllib.parse
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from shopflow import config_spark as vs
from shopflow import config_values as v
from shopflow.config_checks import check_together
from shopflow.config_file import read_env_file
from shopflow.config_values import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Settings:
    POSTGRES_HOST: str = v.setting(v.host, "127.0.0.1")
    POSTGRES_PORT: int = v.setting(v.port, 5432)
    POSTGRES_DB: str = v.setting(v.identifier, "postgres_db")
    POSTGRES_USER: str = v.setting(v.pg_role, "db_user")
    POSTGRES_PASSWORD: str = v.setting(v.text, "qwerty")
    POSTGRES_SCHEMA: str = v.setting(v.pg_schema, "source")
    MYSQL_HOST: str = v.setting(v.host, "127.0.0.1")
    MYSQL_PORT: int = v.setting(v.port, 3306)
    MYSQL_DATABASE: str = v.setting(v.identifier, "mysql_db")
    MYSQL_USER: str = v.setting(v.identifier, "db_user")
    MYSQL_PASSWORD: str = v.setting(v.text, "qwerty")
    MYSQL_ROOT_PASSWORD: str = v.setting(v.text, "root_qwerty")
    MARTS_READER_USER: str = v.setting(v.identifier, "marts_reader")
    MARTS_READER_PASSWORD: str = v.setting(v.text, "reader_qwerty")
    DASHBOARD_PORT: int = v.setting(v.port, 8501)
    KAFKA_BOOTSTRAP_SERVERS: str = v.setting(v.bootstrap_servers, "127.0.0.1:9092")
    KAFKA_TOPIC: str = v.setting(v.topic, "users-data")
    KAFKA_TOPIC_PARTITIONS: int = v.setting(v.at_least_one, 3)
    KAFKA_PORT: int = v.setting(v.port, 9092)  # the port compose publishes; locally it is in KAFKA_BOOTSTRAP_SERVERS
    AIRFLOW_PORT: int = v.setting(v.port, 8080)
    AIRFLOW_ADMIN_USER: str = v.setting(v.identifier, "admin")  # `user:role` in Airflow's simple auth manager
    AIRFLOW_ADMIN_PASSWORD: str = v.setting(v.text, "admin")
    AIRFLOW_DB: str = v.setting(v.identifier, "airflow_db")
    AIRFLOW_DB_USER: str = v.setting(v.pg_role, "airflow")
    AIRFLOW_DB_PASSWORD: str = v.setting(v.text, "airflow")
    AIRFLOW_PARALLELISM: int = v.setting(v.at_least_one, 4)
    AIRFLOW_LOG_RETENTION_DAYS: int = v.setting(v.at_least_one, 15)  # the log groomer's (stack/log_groomer.py)
    AIRFLOW_JWT_SECRET: str = v.setting(v.text, "change-me-jwt-secret")
    AIRFLOW_API_SECRET_KEY: str = v.setting(v.text, "change-me-api-secret")
    AIRFLOW_FERNET_KEY: str = v.setting(v.fernet_key, "KNkyUJC8tT_ltRcMLWoqE893pwj4H6x-T7zXxRXex0U=")
    REPLICATION_SCHEDULE: str = v.setting(v.schedule, "2,17,32,47 * * * *")  # off STREAMING_SCHEDULE's minutes
    REPLICATION_WRITE_PATH: str = v.setting(v.write_path, "copy")
    REPLICATION_VERIFY_ALL_HOURS: float = v.setting(v.non_negative_float, 24.0)
    # the source's tombstones that every table of the replica has consumed are deleted once this old (tombstones.py)
    REPLICATION_TOMBSTONE_RETENTION_HOURS: float = v.setting(v.non_negative_float, 168.0)
    # Postgres parallel workers per query of the run's snapshot connection (counts, checksums); 0 = none
    REPLICATION_SOURCE_PARALLEL_WORKERS: int = v.setting(v.positive_int, 0)
    # how long the run's reads wait for a source table's lock before the run gives way (replication README)
    REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS: float = v.setting(v.lock_timeout_seconds, 30.0)
    STREAMING_SCHEDULE: str = v.setting(v.schedule, "*/5 * * * *")
    SPARK_MASTER_URL: str = v.setting(vs.spark_master, "spark://127.0.0.1:7077")
    SPARK_MASTER_UI_PORT: int = v.setting(v.port, 8081)
    SPARK_WORKERS: int = v.setting(v.at_least_one, 3)
    # task slots per worker (see SPARK_MARTS_CORES, SPARK_STREAMING_CORES)
    SPARK_WORKER_CORES: int = v.setting(v.at_least_one, 2)
    SPARK_WORKER_MEMORY: str = v.setting(vs.memory, "2g")
    SPARK_WORKER_UI_PORT_BASE: int = v.setting(v.port, 8082)
    # a finished application's directory on a worker (executor logs, copied jars: 1.7-3.2 MB) is deleted this long
    # after its last write (checked every 30 min). Spark 4's default, 7 days, holds ~12 GB at the DAGs' ~28 executor
    # directories an hour; 1 day ~1.7 GB
    SPARK_WORKER_APP_DATA_TTL_SECONDS: int = v.setting(v.positive_int, 86_400)
    SPARK_DRIVER_MEMORY: str = v.setting(vs.spark_memory, "1g")
    SPARK_EXECUTOR_MEMORY: str = v.setting(vs.spark_memory, "1g")
    # C1 only and the serial collector: on 2 cores, C2's compiler threads and parallel GC threads took the CPU
    # from short jobs (make bench; bench/NOTES.md); empty = the JVM's defaults
    SPARK_JAVA_OPTIONS: str = v.setting(vs.java_options, "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    SPARK_STREAMING_JAVA_OPTIONS: str = v.setting(vs.java_options, "-XX:+UseSerialGC")
    # jobs whose JVMs map the class-data sharing archive the stack records (shopflow/stack/cds.py); empty = none
    SPARK_CDS_JOBS: str = v.setting(vs.job_names, "build_marts,stream_users,replicate_postgres_to_mysql")
    # the marts job runs one executor with this many cores (spark.executor.cores = spark.cores.max; at most
    # SPARK_WORKER_CORES): one JVM to warm instead of three, and two task slots in it, was fastest on 2 cores
    # (bench/NOTES.md); the replication job runs single-core executors, one per worker
    SPARK_MARTS_CORES: int = v.setting(v.at_least_one, 2)
    # the same for the streaming job (stream_users): one JVM whose JIT warms once for both task slots drained 1M
    # events in 40-44 s instead of 52-66 s with three single-core executors (bench/NOTES.md)
    SPARK_STREAMING_CORES: int = v.setting(v.at_least_one, 2)
    POSTGRES_JDBC_JAR: str = v.setting(v.text, "/usr/share/java/postgresql.jar")
    MYSQL_JDBC_JAR: str = v.setting(v.text, "/usr/share/java/mariadb-java-client.jar")
    DATAGEN_SEED: int = v.setting(v.positive_int, 42)
    DATAGEN_USERS: int = v.setting(v.positive_int, 500)
    DATAGEN_PRODUCTS: int = v.setting(v.positive_int, 800)
    DATAGEN_ORDERS: int = v.setting(v.positive_int, 3000)
    DATAGEN_DETAILS_MIN: int = v.setting(v.positive_int, 1)
    DATAGEN_DETAILS_MAX: int = v.setting(v.positive_int, 10)
    DATAGEN_CATEGORIES: int = v.setting(v.positive_int, 20)
    DATAGEN_REVIEWS: int = v.setting(v.positive_int, 2000)
    DATAGEN_LOYALTY_POINTS: int = v.setting(v.positive_int, 3000)
    KAFKA_EVENT_INTERVAL_SECONDS: float = v.setting(v.event_interval_seconds, 5.0)
    LOCAL_STATE_DIR: str = v.setting(v.text, ".local")
    STREAMING_SOURCE: str = v.setting(v.streaming_source, "python")
    STREAMING_CHECKPOINT_DIR: str = v.setting(v.text, ".local/checkpoints/users-stream")
    STREAMING_TRIGGER_SECONDS: float = v.setting(v.positive_float, 2.0)
    STREAMING_MAX_EVENTS_PER_BATCH: int = v.setting(v.positive_int, 250000)

    def __post_init__(self) -> None:
        check_together(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> "Settings":
        parsed = {}
        for field in dataclasses.fields(cls):
            if field.name in values:
                parsed[field.name] = field.metadata["parse"](field.name, str(values[field.name]))
        return cls(**parsed)

    @property
    def state_dir(self) -> Path:
        path = Path(self.LOCAL_STATE_DIR)
        return path if path.is_absolute() else PROJECT_ROOT / path

    @property
    def streaming_checkpoint_dir(self) -> Path:
        path = Path(self.STREAMING_CHECKPOINT_DIR)
        return path if path.is_absolute() else PROJECT_ROOT / path

    @property
    def fresh_broker_mark(self) -> Path:
        """Written before `make up` starts the broker, removed once the stream's positions were forgotten
        (shopflow/stack/broker.py) or reset by hand (`stream_users --reset`)."""
        return self.state_dir / "run" / "kafka-started-empty"

    @property
    def spark_scratch_dir(self) -> Path:
        """Spark's local dirs for the stack's drivers and executors (SPARK_LOCAL_DIRS), emptied by `make down`."""
        return self.state_dir / "spark" / "tmp"

    @property
    def spark_java_options(self) -> str:
        return self.java_options_for(streaming=False)

    @property
    def spark_cds_archive(self) -> Path:
        """The Spark JVMs' class-data sharing archive (recorded by the stack, shopflow/stack/cds.py), named after the
        pyspark and JDK builds it holds: a JVM of another build maps none of it and says nothing."""
        from importlib.metadata import version

        from shopflow.config_spark import java_runtime_version
        java = re.sub(r"[^A-Za-z0-9._-]", "_", java_runtime_version())
        return self.state_dir / "spark" / f"classes-pyspark-{version('pyspark')}-java-{java}.jsa"

    def java_options_for(self, streaming: bool, job: str | None = None) -> str:
        """Driver and executor JVM flags of `job` (the streaming job's or the batch jobs'); JDBC DATETIME reads use the
        JVM's zone, so it is pinned to UTC. SPARK_CDS_JOBS map the class-data sharing archive once the stack has it."""
        flags = self.SPARK_STREAMING_JAVA_OPTIONS if streaming else self.SPARK_JAVA_OPTIONS
        archive = self.spark_cds_archive
        use = job in self.SPARK_CDS_JOBS.split(",") and archive.is_file()
        cds = f" -XX:SharedArchiveFile={archive}" if use else ""
        return f"-Duser.timezone=UTC {flags}".strip() + cds

    @property
    def postgres_dsn(self) -> str:
        """libpq's key='value' form, each value quoted: a password with a space, a quote or a backslash broke it."""
        parts = {"host": self.POSTGRES_HOST, "port": self.POSTGRES_PORT, "dbname": self.POSTGRES_DB,
                 "user": self.POSTGRES_USER, "password": self.POSTGRES_PASSWORD}
        return " ".join(f"{key}={libpq_quoted(value)}" for key, value in parts.items())

    def postgres_url(self, scheme: str = "postgresql") -> str:
        return database_url(scheme, self.POSTGRES_USER, self.POSTGRES_PASSWORD, self.POSTGRES_HOST, self.POSTGRES_PORT,
                            self.POSTGRES_DB)

    def mysql_url(self, scheme: str = "mysql") -> str:
        return database_url(scheme, self.MYSQL_USER, self.MYSQL_PASSWORD, self.MYSQL_HOST, self.MYSQL_PORT,
                            self.MYSQL_DATABASE)

    @property
    def postgres_jdbc_url(self) -> str:
        return (f"jdbc:postgresql://{v.url_host(self.POSTGRES_HOST)}:{self.POSTGRES_PORT}/{self.POSTGRES_DB}"
                f"?currentSchema={self.POSTGRES_SCHEMA}")

    @property
    def mysql_jdbc_url(self) -> str:
        # jdbc:mysql:// (not jdbc:mariadb://) so Spark picks its MySQL dialect; see PLATFORM.md.
        return f"jdbc:mysql://{v.url_host(self.MYSQL_HOST)}:{self.MYSQL_PORT}/{self.MYSQL_DATABASE}"

    def mysql_connect_args(self) -> dict:
        return {"host": self.MYSQL_HOST, "port": self.MYSQL_PORT, "user": self.MYSQL_USER,
                "password": self.MYSQL_PASSWORD, "database": self.MYSQL_DATABASE,
                "use_pure": True, "charset": "utf8mb4", "collation": "utf8mb4_unicode_ci"}


def libpq_quoted(value) -> str:
    """A value of a libpq connection string, quoted (backslash and single quote escaped)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def database_url(scheme: str, user: str, password: str | None, host: str, port: int, database: str) -> str:
    """`scheme://user:password@host:port/database` (without `:password` when it is None), the user, password and
    database percent-encoded (`@`, `:`, `/`, `%` and the rest)."""
    def quoted(value) -> str:
        return urllib.parse.quote(str(value), safe="")

    auth = quoted(user) if password is None else f"{quoted(user)}:{quoted(password)}"
    return f"{scheme}://{auth}@{v.url_host(host)}:{port}/{quoted(database)}"


# docker compose's own variables, which it also reads from .env
_COMPOSE_KEYS = ("COMPOSE_", "DOCKER_")


def _check_keys(path: Path, values: Mapping[str, str]) -> None:
    """A key that is no setting is a mistake (a misspelled one left its setting at the default, silently)."""
    known = list(Settings.__dataclass_fields__)
    for key in values:
        if key not in known and not key.startswith(_COMPOSE_KEYS):
            close = difflib.get_close_matches(key, known, n=1)
            raise SettingsError(f"{path.name}: {key} is not a setting" + (f" (did you mean {close[0]}?)" if close else
                                "; the settings are the keys of the shipped .env (README, Settings)"))


def env_file_path(env: Mapping[str, str]) -> Path:
    """The settings file: SHOPFLOW_ENV_FILE, else the project's `.env`."""
    return Path(env.get("SHOPFLOW_ENV_FILE") or PROJECT_ROOT / ".env")


def load_settings(env: Mapping[str, str] | None = None, env_file: Path | None = None) -> Settings:
    """`.env` (or SHOPFLOW_ENV_FILE) first, then the process environment on top. One holding every setting (the stack
    gives all to its services and Airflow's tasks) is taken alone: a typo saved in `.env` while the stack ran failed
    every later DAG run (exit 3), though none of the file's values would have been used."""
    env = os.environ if env is None else env
    if all(key in env for key in Settings.__dataclass_fields__):
        return Settings.from_mapping({k: v for k, v in env.items() if k in Settings.__dataclass_fields__})
    named = env.get("SHOPFLOW_ENV_FILE")
    if env_file is None and named and not Path(named).is_file():  # a mistyped path ran everything on the defaults
        raise SettingsError(f"SHOPFLOW_ENV_FILE={named!r}: no such file")
    env_file = env_file or env_file_path(env)
    values = read_env_file(Path(env_file))
    _check_keys(Path(env_file), values)
    values.update({k: v for k, v in env.items() if k in Settings.__dataclass_fields__})
    return Settings.from_mapping(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
