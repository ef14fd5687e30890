"""The Spark JVMs' class-data sharing archive in the settings: its name, and which jobs map it."""
from shopflow.config import load_settings


def test_the_class_data_sharing_archive_is_named_after_the_jdk_build(tmp_path, monkeypatch):
    """A JVM of another build maps none of an archive and says nothing: after a JDK security update the old archive
    stayed, silently unused by every job."""
    jdk = tmp_path / "jdk"
    jdk.mkdir()
    monkeypatch.setenv("JAVA_HOME", str(jdk))
    settings = load_settings(env={"LOCAL_STATE_DIR": str(tmp_path)}, env_file=None)
    names = []
    for build in ("17.0.14+7-Debian-1deb12u1", "17.0.15+6-Debian-1deb12u1"):
        (jdk / "release").write_text(f'IMPLEMENTOR="Debian"\nJAVA_RUNTIME_VERSION="{build}"\nJAVA_VERSION="17"\n')
        names.append(settings.spark_cds_archive.name)
    assert names[0].endswith("-java-17.0.14_7-Debian-1deb12u1.jsa") and names[0] != names[1]


def test_the_cds_jobs_map_the_class_data_sharing_archive_once_it_exists(tmp_path):
    settings = load_settings(env={"LOCAL_STATE_DIR": str(tmp_path), "SPARK_JAVA_OPTIONS": "-Xss4m"}, env_file=None)
    archive = settings.spark_cds_archive
    assert archive.parent == tmp_path / "spark" and archive.suffix == ".jsa"
    assert settings.SPARK_CDS_JOBS == "build_marts,stream_users,replicate_postgres_to_mysql"
    assert settings.java_options_for(False, job="build_marts") == "-Duser.timezone=UTC -Xss4m"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"recorded")
    mapped = f"-Duser.timezone=UTC -Xss4m -XX:SharedArchiveFile={archive}"
    assert settings.java_options_for(False, job="build_marts") == mapped
    assert settings.java_options_for(False, job="replicate_postgres_to_mysql") == mapped
    # only the listed jobs map it
    assert settings.java_options_for(False, job="naive_job") == "-Duser.timezone=UTC -Xss4m"
    assert settings.java_options_for(False) == "-Duser.timezone=UTC -Xss4m"
    one = load_settings(env={"LOCAL_STATE_DIR": str(tmp_path), "SPARK_JAVA_OPTIONS": "-Xss4m",
                             "SPARK_CDS_JOBS": " build_marts "}, env_file=None)
    assert one.java_options_for(False, job="build_marts") == mapped
    assert one.java_options_for(False, job="replicate_postgres_to_mysql") == "-Duser.timezone=UTC -Xss4m"
    none = load_settings(env={"LOCAL_STATE_DIR": str(tmp_path), "SPARK_CDS_JOBS": ""}, env_file=None)
    assert none.SPARK_CDS_JOBS == "" and "SharedArchiveFile" not in none.java_options_for(False, job="build_marts")
