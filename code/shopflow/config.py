"""One `Settings` object read from `.env` with the process environment on top.

A bad value fails at start with one line naming the key (`SettingsError`).
"""
from __future__ import annotations

import dataclasses
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message is one line naming the key."""


def _number(key: str, raw: str, cast, expected: str):
    try:
        return cast(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r}: expected {expected}") from None


def _positive_int(key: str, raw: str) -> int:
    value = _number(key, raw, int, "a whole number")
    if value < 0:
        raise SettingsError(f"{key}={raw!r}: must not be negative")
    return value


def _port(key: str, raw: str) -> int:
    value = _positive_int(key, raw)
    if not 1 <= value <= 65535:
        raise SettingsError(f"{key}={raw!r}: a port must be between 1 and 65535")
    return value


def _positive_float(key: str, raw: str) -> float:
    value = _number(key, raw, float, "a number")
    if value <= 0:
        raise SettingsError(f"{key}={raw!r}: must be greater than 0")
    return value


def _non_negative_float(key: str, raw: str) -> float:
    value = _number(key, raw, float, "a number")
    if value < 0:
        raise SettingsError(f"{key}={raw!r}: must not be negative")
    return value


def _text(key: str, raw: str) -> str:
    if not raw.strip():
        raise SettingsError(f"{key} is empty")
    return raw.strip()


def _identifier(key: str, raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", raw):
        raise SettingsError(f"{key}={raw!r}: expected a plain SQL identifier (letters, digits, _)")
    return raw


def _memory(key: str, raw: str) -> str:
    if not re.fullmatch(r"\d+[kmgKMG]", raw):
        raise SettingsError(f"{key}={raw!r}: expected a size like 512m or 1g")
    return raw


def _spark_master(key: str, raw: str) -> str:
    if not re.match(r"^(spark://|local(\[|$)|yarn$|k8s://)", raw):
        raise SettingsError(f"{key}={raw!r}: expected spark://host:port, local[N], yarn or k8s://...")
    return raw


def _streaming_source(key: str, raw: str) -> str:
    if raw not in ("python", "kafka"):
        raise SettingsError(f"{key}={raw!r}: expected python (kafka-python reader) or kafka (Spark's connector jar)")
    return raw


def _write_path(key: str, raw: str) -> str:
    if raw not in ("copy", "jdbc"):
        raise SettingsError(f"{key}={raw!r}: expected copy (COPY -> LOAD DATA in Spark tasks) or jdbc (Spark JDBC)")
    return raw


def _java_options(key: str, raw: str) -> str:
    """JVM flags for Spark's driver and executors: empty (the JVM's defaults) or options that start with '-'."""
    bad = [word for word in raw.split() if not word.startswith("-")]
    if bad:
        raise SettingsError(f"{key}={raw!r}: expected JVM options starting with '-', got {bad[0]!r}")
    return " ".join(raw.split())


def _setting(parse, default=None):
    return dataclasses.field(default=default, metadata={"parse": parse})


@dataclasses.dataclass(frozen=True)
class Settings:
    POSTGRES_HOST: str = _setting(_text, "127.0.0.1")
    POSTGRES_PORT: int = _setting(_port, 5432)
    POSTGRES_DB: str = _setting(_identifier, "postgres_db")
    POSTGRES_USER: str = _setting(_identifier, "db_user")
    POSTGRES_PASSWORD: str = _setting(_text, "qwerty")
    POSTGRES_SCHEMA: str = _setting(_identifier, "source")
    MYSQL_HOST: str = _setting(_text, "127.0.0.1")
    MYSQL_PORT: int = _setting(_port, 3306)
    MYSQL_DATABASE: str = _setting(_identifier, "mysql_db")
    MYSQL_USER: str = _setting(_identifier, "db_user")
    MYSQL_PASSWORD: str = _setting(_text, "qwerty")
    MYSQL_ROOT_PASSWORD: str = _setting(_text, "root_qwerty")
    MARTS_READER_USER: str = _setting(_identifier, "marts_reader")
    MARTS_READER_PASSWORD: str = _setting(_text, "reader_qwerty")
    DASHBOARD_PORT: int = _setting(_port, 8501)
    KAFKA_BOOTSTRAP_SERVERS: str = _setting(_text, "127.0.0.1:9092")
    KAFKA_TOPIC: str = _setting(_text, "users-data")
    KAFKA_TOPIC_PARTITIONS: int = _setting(_positive_int, 3)
    KAFKA_PORT: int = _setting(_port, 9092)  # the port compose publishes; locally it is in KAFKA_BOOTSTRAP_SERVERS
    AIRFLOW_PORT: int = _setting(_port, 8080)
    AIRFLOW_ADMIN_USER: str = _setting(_text, "admin")
    AIRFLOW_ADMIN_PASSWORD: str = _setting(_text, "admin")
    AIRFLOW_DB: str = _setting(_identifier, "airflow_db")
    AIRFLOW_DB_USER: str = _setting(_identifier, "airflow")
    AIRFLOW_DB_PASSWORD: str = _setting(_text, "airflow")
    AIRFLOW_PARALLELISM: int = _setting(_positive_int, 4)
    AIRFLOW_JWT_SECRET: str = _setting(_text, "change-me-jwt-secret")
    AIRFLOW_API_SECRET_KEY: str = _setting(_text, "change-me-api-secret")
    AIRFLOW_FERNET_KEY: str = _setting(_text, "KNkyUJC8tT_ltRcMLWoqE893pwj4H6x-T7zXxRXex0U=")
    REPLICATION_SCHEDULE: str = _setting(_text, "*/15 * * * *")
    REPLICATION_WRITE_PATH: str = _setting(_write_path, "copy")
    REPLICATION_VERIFY_ALL_HOURS: float = _setting(_non_negative_float, 24.0)
    STREAMING_SCHEDULE: str = _setting(_text, "*/5 * * * *")
    SPARK_MASTER_URL: str = _setting(_spark_master, "spark://127.0.0.1:7077")
    SPARK_MASTER_UI_PORT: int = _setting(_port, 8081)
    SPARK_WORKERS: int = _setting(_positive_int, 3)
    SPARK_WORKER_CORES: int = _setting(_positive_int, 1)
    SPARK_WORKER_MEMORY: str = _setting(_memory, "1g")
    SPARK_WORKER_UI_PORT_BASE: int = _setting(_port, 8082)
    SPARK_DRIVER_MEMORY: str = _setting(_memory, "1g")
    # C1 only and the serial collector: on 2 cores, C2's compiler threads and parallel GC threads took the CPU
    # from short jobs (make bench; README "Benchmark"); empty = the JVM's defaults
    SPARK_JAVA_OPTIONS: str = _setting(_java_options, "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    SPARK_STREAMING_JAVA_OPTIONS: str = _setting(_java_options, "-XX:+UseSerialGC")
    POSTGRES_JDBC_JAR: str = _setting(_text, "/usr/share/java/postgresql.jar")
    MYSQL_JDBC_JAR: str = _setting(_text, "/usr/share/java/mariadb-java-client.jar")
    DATAGEN_SEED: int = _setting(_positive_int, 42)
    DATAGEN_USERS: int = _setting(_positive_int, 500)
    DATAGEN_PRODUCTS: int = _setting(_positive_int, 800)
    DATAGEN_ORDERS: int = _setting(_positive_int, 3000)
    DATAGEN_DETAILS_MIN: int = _setting(_positive_int, 1)
    DATAGEN_DETAILS_MAX: int = _setting(_positive_int, 10)
    DATAGEN_CATEGORIES: int = _setting(_positive_int, 20)
    DATAGEN_REVIEWS: int = _setting(_positive_int, 2000)
    DATAGEN_LOYALTY_POINTS: int = _setting(_positive_int, 3000)
    KAFKA_EVENT_INTERVAL_SECONDS: float = _setting(_positive_float, 5.0)
    LOCAL_STATE_DIR: str = _setting(_text, ".local")
    STREAMING_SOURCE: str = _setting(_streaming_source, "python")
    STREAMING_CHECKPOINT_DIR: str = _setting(_text, ".local/checkpoints/users-stream")
    STREAMING_TRIGGER_SECONDS: float = _setting(_positive_float, 2.0)
    STREAMING_MAX_EVENTS_PER_BATCH: int = _setting(_positive_int, 100000)

    def __post_init__(self) -> None:
        if self.DATAGEN_DETAILS_MIN < 1 or self.DATAGEN_DETAILS_MIN > self.DATAGEN_DETAILS_MAX:
            raise SettingsError(
                f"DATAGEN_DETAILS_MIN={self.DATAGEN_DETAILS_MIN}: must be >= 1 and <= DATAGEN_DETAILS_MAX"
                f" ({self.DATAGEN_DETAILS_MAX})"
            )
        if self.DATAGEN_CATEGORIES < 1 or self.DATAGEN_USERS < 1 or self.DATAGEN_PRODUCTS < 1:
            raise SettingsError("DATAGEN_CATEGORIES, DATAGEN_USERS and DATAGEN_PRODUCTS must be >= 1")

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
    def spark_java_options(self) -> str:
        return self.java_options_for(streaming=False)

    def java_options_for(self, streaming: bool) -> str:
        """Driver and executor JVM flags (the streaming job's or the batch jobs'); JDBC DATETIME reads use the JVM's
        zone, so it is pinned to UTC."""
        flags = self.SPARK_STREAMING_JAVA_OPTIONS if streaming else self.SPARK_JAVA_OPTIONS
        return f"-Duser.timezone=UTC {flags}".strip()

    @property
    def postgres_dsn(self) -> str:
        return (f"host={self.POSTGRES_HOST} port={self.POSTGRES_PORT} dbname={self.POSTGRES_DB} "
                f"user={self.POSTGRES_USER} password={self.POSTGRES_PASSWORD}")

    @property
    def postgres_jdbc_url(self) -> str:
        return (f"jdbc:postgresql://{self.POSTGRES_HOST}:{self.POSTGRES_PORT}/{self.POSTGRES_DB}"
                f"?currentSchema={self.POSTGRES_SCHEMA}")

    @property
    def mysql_jdbc_url(self) -> str:
        # jdbc:mysql:// (not jdbc:mariadb://) so Spark picks its MySQL dialect; see PLATFORM.md.
        return f"jdbc:mysql://{self.MYSQL_HOST}:{self.MYSQL_PORT}/{self.MYSQL_DATABASE}"

    def mysql_connect_args(self) -> dict:
        return {"host": self.MYSQL_HOST, "port": self.MYSQL_PORT, "user": self.MYSQL_USER,
                "password": self.MYSQL_PASSWORD, "database": self.MYSQL_DATABASE,
                "use_pure": True, "charset": "utf8mb4", "collation": "utf8mb4_unicode_ci"}


def read_env_file(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines; `#` starts a comment line; values are taken verbatim (no quotes needed)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key.strip()):
            raise SettingsError(f"{path.name} line {number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(env: Mapping[str, str] | None = None, env_file: Path | None = None) -> Settings:
    """`.env` (or SHOPFLOW_ENV_FILE) first, then the process environment on top."""
    env = os.environ if env is None else env
    env_file = env_file or Path(env.get("SHOPFLOW_ENV_FILE", PROJECT_ROOT / ".env"))
    values = read_env_file(Path(env_file))
    values.update({k: v for k, v in env.items() if k in Settings.__dataclass_fields__})
    return Settings.from_mapping(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
