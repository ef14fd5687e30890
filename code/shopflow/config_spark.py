"""Parsers of the Spark settings' values (master URL, memory sizes, JVM options, job names) for
`shopflow.config.Settings`, like `config_values`' others: each takes the key and the raw text and returns the value or
raises `SettingsError` with one line naming the key. Also the JDK the jobs run on (`java_home`, its build).
"""
from __future__ import annotations

import difflib
import os
import re
import shutil
from pathlib import Path

from shopflow.config_values import SettingsError


def memory(key: str, raw: str) -> str:
    if not re.fullmatch(r"\d+[kmgKMG]", raw):
        raise SettingsError(f"{key}={raw!r}: expected a size like 512m or 1g")
    return raw


def spark_memory(key: str, raw: str) -> str:
    """A Spark driver's or executor's heap: Spark refuses one under 450 MiB at start (every job would fail)."""
    if megabytes(memory(key, raw)) < 512:
        raise SettingsError(f"{key}={raw!r}: at least 512m (Spark refuses a heap under 450 MiB)")
    return raw


def megabytes(size: str) -> int:
    """A size `memory` accepted, in MB (k rounds down)."""
    return int(size[:-1]) * {"k": 1, "m": 1024, "g": 1024 * 1024}[size[-1].lower()] // 1024


def spark_master(key: str, raw: str) -> str:
    """A master URL; a standalone one is `spark://host:port[,host:port...]` with each port in 1-65535 and nothing
    after it (Spark refuses a missing port or a path at the workers' start, and a bad port broke `make status` and
    `make down` with a traceback)."""
    if not re.match(r"^(spark://|local(\[(\d+|\*)(,\d+)?\])?$|yarn$|k8s://.)", raw):  # local[x]: Spark's traceback
        raise SettingsError(f"{key}={raw!r}: expected spark://host:port, local[N], yarn or k8s://...")
    for address in raw.removeprefix("spark://").split(",") if raw.startswith("spark://") else ():
        host, colon, port = address.rpartition(":")
        if not (colon and host and re.fullmatch(r"[\w.-]+|\[[0-9a-fA-F:]+\]", host) and port.isdigit()
                and 1 <= int(port) <= 65535):
            raise SettingsError(f"{key}={raw!r}: expected spark://host:port (a port in 1-65535, no path), or "
                                "several host:port separated by commas")
    return raw


SPARK_JOBS = ("build_marts", "stream_users", "replicate_postgres_to_mysql")  # code/shopflow/jobs/<name>.py


def job_names(key: str, raw: str) -> str:
    """Comma-separated names among SPARK_JOBS, returned as `a,b`; empty = none (a misspelt one ran its job without
    the archive, silently)."""
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if bad := [name for name in names if name not in SPARK_JOBS]:
        close = difflib.get_close_matches(bad[0], SPARK_JOBS, n=1)
        raise SettingsError(f"{key}={raw!r}: {bad[0]!r} is no Spark job of shopflow"
                            f"{f' (did you mean {close[0]}?)' if close else ''}; the jobs: {', '.join(SPARK_JOBS)}")
    return ",".join(names)


def java_options(key: str, raw: str) -> str:
    """JVM flags for Spark's driver and executors: empty (the JVM's defaults) or options that start with '-'."""
    bad = [word for word in raw.split() if not word.startswith("-")]
    if bad:
        raise SettingsError(f"{key}={raw!r}: expected JVM options starting with '-', got {bad[0]!r}")
    if heap := [word for word in raw.split() if word.startswith("-Xmx")]:  # Spark refuses it at every job's start
        raise SettingsError(f"{key}={raw!r}: {heap[0]} is not allowed here (Spark refuses it): the heap is "
                            "SPARK_DRIVER_MEMORY and SPARK_EXECUTOR_MEMORY")
    if spark := [word for word in raw.split() if word.startswith("-Dspark.")]:  # the executors' copy: Spark refuses
        raise SettingsError(f"{key}={raw!r}: {spark[0]} is not allowed here (Spark refuses Spark properties in the "
                            "executors' JVM options at every job's start): set Spark properties in code or settings")
    return " ".join(raw.split())


def java_runtime_version(home: str | None = None) -> str:
    """The JDK's exact build (its `release` file's JAVA_RUNTIME_VERSION, e.g. 17.0.15+6-Debian-1deb12u1), "unknown"
    without one: a class-data sharing archive maps only into the build that recorded it."""
    try:
        lines = (Path(home or java_home()) / "release").read_text().splitlines()
    except OSError:
        return "unknown"
    found = [line.split("=", 1)[1].strip().strip('"') for line in lines if line.startswith("JAVA_RUNTIME_VERSION=")]
    return found[0] if found else "unknown"


def java_home() -> str:
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    return str(Path(java).resolve().parents[1]) if java else ""
