"""The checks of `Settings` that involve more than one setting (each setting's own parser is in config_values)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from shopflow import config_spark as vs
from shopflow.config_values import SettingsError

if TYPE_CHECKING:
    from shopflow.config import Settings

# Accounts `make up` (and compose's init scripts) create with different rights and passwords: one name for two of
# them gave the second's password to both (the first then failed with "Access denied" though its password was
# right), or the read-only dashboard account every right of the owner's.
DISTINCT_ACCOUNTS = (("MARTS_READER_USER", "MYSQL_USER", "the dashboard's read-only account"),
                     ("AIRFLOW_DB_USER", "POSTGRES_USER", "Airflow's metadata database owner"))

# The servers' own databases: `make up` grants the app accounts every right on their database (the read-only
# account's SELECT on `mysql` would read the password hashes), and Postgres' own are not ours to create schemas in.
SYSTEM_DATABASES = {"POSTGRES_DB": {"postgres", "template0", "template1"},
                    "AIRFLOW_DB": {"postgres", "template0", "template1"},
                    "MYSQL_DATABASE": {"mysql", "sys", "information_schema", "performance_schema"}}

# Past these every replication run failed with a Postgres DataError traceback (and Airflow retried it twice)
UPPER_BOUNDS = (("REPLICATION_SOURCE_PARALLEL_WORKERS", 1024, "Postgres' limit of max_parallel_workers_per_gather"),
                ("REPLICATION_TOMBSTONE_RETENTION_HOURS", 876_000, "100 years; Postgres' intervals end not far above"))


def check_together(s: "Settings") -> None:
    if s.DATAGEN_DETAILS_MIN < 1 or s.DATAGEN_DETAILS_MIN > s.DATAGEN_DETAILS_MAX:
        raise SettingsError(f"DATAGEN_DETAILS_MIN={s.DATAGEN_DETAILS_MIN}: must be >= 1 and <= DATAGEN_DETAILS_MAX"
                            f" ({s.DATAGEN_DETAILS_MAX})")
    if s.DATAGEN_CATEGORIES < 1 or s.DATAGEN_USERS < 1 or s.DATAGEN_PRODUCTS < 1:
        raise SettingsError("DATAGEN_CATEGORIES, DATAGEN_USERS and DATAGEN_PRODUCTS must be >= 1")
    for key, job in (("SPARK_MARTS_CORES", "marts"), ("SPARK_STREAMING_CORES", "streaming")):
        if getattr(s, key) > s.SPARK_WORKER_CORES:
            raise SettingsError(f"{key}={getattr(s, key)}: the {job} job's single executor must fit on one "
                                f"worker: at most SPARK_WORKER_CORES ({s.SPARK_WORKER_CORES})")
    if vs.megabytes(s.SPARK_EXECUTOR_MEMORY) > vs.megabytes(s.SPARK_WORKER_MEMORY):
        raise SettingsError(f"SPARK_EXECUTOR_MEMORY={s.SPARK_EXECUTOR_MEMORY}: an executor must fit on one "
                            f"worker: at most SPARK_WORKER_MEMORY ({s.SPARK_WORKER_MEMORY})")
    for key, other, what in DISTINCT_ACCOUNTS:
        if getattr(s, key) == getattr(s, other):
            raise SettingsError(f"{key}={getattr(s, key)!r}: {what} must be another account than {other}'s")
    for key, system in SYSTEM_DATABASES.items():
        if getattr(s, key).lower() in system:
            raise SettingsError(f"{key}={getattr(s, key)!r}: the server's own database; name shopflow's own")
    if s.AIRFLOW_DB == s.POSTGRES_DB:  # owned by POSTGRES_USER: Airflow's migration had no right to create its tables
        raise SettingsError(f"AIRFLOW_DB={s.AIRFLOW_DB!r}: Airflow's metadata needs a database of its own, not "
                            "POSTGRES_DB's")
    for key in ("LOCAL_STATE_DIR", "STREAMING_CHECKPOINT_DIR"):  # s3a://b/c became <project>/s3a:/b/c, silently
        if "://" in getattr(s, key):
            raise SettingsError(f"{key}={getattr(s, key)!r}: expected a local directory (no URI)")
        if getattr(s, key).startswith("~"):  # taken literally: a directory named ~ in the checkout
            raise SettingsError(f"{key}={getattr(s, key)!r}: ~ is not expanded here; write the full path")
    _check_checkpoint_dir(s)
    for key, maximum, what in UPPER_BOUNDS:
        if getattr(s, key) > maximum:
            raise SettingsError(f"{key}={getattr(s, key)}: at most {maximum} ({what})")


def _check_checkpoint_dir(s: "Settings") -> None:
    """`make up` (a fresh broker), `make stream --reset` and a checkpoint ahead of Postgres delete the checkpoint
    directory whole: `/tmp`, `.local` or `.` there deleted the machine's temporary files, the databases' files or the
    checkout."""
    from shopflow.config import PROJECT_ROOT

    checkpoint = s.streaming_checkpoint_dir.resolve()
    for what, path in (("the checkout", PROJECT_ROOT), ("LOCAL_STATE_DIR", s.state_dir), ("your home", Path.home())):
        if checkpoint == path.resolve() or checkpoint in path.resolve().parents:
            raise SettingsError(f"STREAMING_CHECKPOINT_DIR={s.STREAMING_CHECKPOINT_DIR!r}: holds {what}, and the "
                                "stream's reset deletes this directory whole; give the checkpoint a directory of its "
                                "own (default .local/checkpoints/users-stream)")
