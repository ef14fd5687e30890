"""Settings accepted before that broke something later (a traceback in `make status`, a workers' start, Airflow's
API server, every DAG run): refused at start with one line naming the key, or taken as the stack gives them."""
import codecs

import pytest
from test_config import test_bad_value_fails_with_one_line_naming_the_key as refused_naming_the_key

from shopflow.config import Settings, SettingsError, load_settings


@pytest.mark.parametrize("key, value, fragment", [
    ("MYSQL_DATABASE", "mysql", "MYSQL_DATABASE='mysql': the server's own database"),  # reader: the password hashes
    ("POSTGRES_DB", "postgres", "POSTGRES_DB='postgres': the server's own database"),  # CREATE SCHEMA: a traceback
    ("AIRFLOW_DB", "postgres_db", "AIRFLOW_DB='postgres_db': Airflow's metadata needs a database of its own"),
    # Airflow's simple auth manager reads `user:role,...`: a ':' or ',' stopped its API server, a '$' was expanded
    ("AIRFLOW_ADMIN_USER", "ops:team", "AIRFLOW_ADMIN_USER='ops:team': expected a plain SQL identifier"),
    ("STREAMING_CHECKPOINT_DIR", "s3a://bucket/ckpt", "STREAMING_CHECKPOINT_DIR='s3a://bucket/ckpt': expected a "
                                                      "local directory (no URI)"),  # was <project>/s3a:/bucket/ckpt
    # the stream's reset (every `make up` with a fresh broker) deletes the checkpoint directory whole: these deleted
    # the checkout, the databases' files under the state directory, or the whole machine
    ("STREAMING_CHECKPOINT_DIR", ".", "STREAMING_CHECKPOINT_DIR='.': holds the checkout, and the stream's reset "
                                      "deletes this directory whole"),
    ("STREAMING_CHECKPOINT_DIR", ".local", "STREAMING_CHECKPOINT_DIR='.local': holds LOCAL_STATE_DIR"),
    ("STREAMING_CHECKPOINT_DIR", "/", "STREAMING_CHECKPOINT_DIR='/': holds the checkout"),
    ("STREAMING_CHECKPOINT_DIR", "code/..", "holds the checkout"),
    # past Postgres' limits: every replication run ended in a DataError traceback
    ("REPLICATION_SOURCE_PARALLEL_WORKERS", "2000", "REPLICATION_SOURCE_PARALLEL_WORKERS=2000: at most 1024 (Postgres"),
    ("REPLICATION_TOMBSTONE_RETENTION_HOURS", "1e9", "REPLICATION_TOMBSTONE_RETENTION_HOURS=1000000000.0: at most "
                                                     "876000 (100 years"),
    # taken literally: a directory named ~ in the checkout
    ("STREAMING_CHECKPOINT_DIR", "~/ckpt", "STREAMING_CHECKPOINT_DIR='~/ckpt': ~ is not expanded here"),
    ("LOCAL_STATE_DIR", "~/shopflow", "LOCAL_STATE_DIR='~/shopflow': ~ is not expanded here"),
    # a bad port broke make status and make down with a traceback; no port or a path broke the workers' start
    ("SPARK_MASTER_URL", "spark://127.0.0.1:99999", "SPARK_MASTER_URL='spark://127.0.0.1:99999': expected "
                                                    "spark://host:port (a port in 1-65535, no path)"),
    ("SPARK_MASTER_URL", "spark://127.0.0.1", "expected spark://host:port"),
    ("SPARK_MASTER_URL", "spark://127.0.0.1:7077/", "expected spark://host:port"),
    ("SPARK_MASTER_URL", "spark://127.0.0.1:7077,x", "expected spark://host:port"),
    ("SPARK_MASTER_URL", "local[x]", "SPARK_MASTER_URL='local[x]': expected spark://host:port, local[N]"),  # py4j's
    ("SPARK_CDS_JOBS", "all", "SPARK_CDS_JOBS='all': 'all' is no Spark job of shopflow; the jobs: build_marts, "
                              "stream_users, replicate_postgres_to_mysql"),
    # a misspelt name ran its job without the archive, silently
    ("SPARK_CDS_JOBS", "build_marts,stream_user", "SPARK_CDS_JOBS='build_marts,stream_user': 'stream_user' is no "
                                                  "Spark job of shopflow (did you mean stream_users?)"),
    # the executors get the same JVM options, and Spark refuses a Spark property among them: every job failed at start
    ("SPARK_JAVA_OPTIONS", "-XX:+UseSerialGC -Dspark.network.timeout=600s", "SPARK_JAVA_OPTIONS='-XX:+UseSerialGC "
     "-Dspark.network.timeout=600s': -Dspark.network.timeout=600s is not allowed here (Spark refuses Spark properties"),
    ("SPARK_STREAMING_JAVA_OPTIONS", "-Dspark.x=1", "-Dspark.x=1 is not allowed here"),
])
def test_a_setting_that_broke_something_later_is_refused_at_start(key, value, fragment):
    refused_naming_the_key(key, value, fragment)


def test_a_standalone_master_url_may_name_several_masters():
    """Spark's form for standby masters: accepted (the jobs try each), and the stack takes the first one's address
    (urlparse of the whole URL raised ValueError: `make status` and `make down` ended in a traceback)."""
    from shopflow.stack.services import spark_master_host_port

    settings = load_settings(env={"SPARK_MASTER_URL": "spark://127.0.0.1:7077,127.0.0.2:7078"}, env_file=None)
    assert spark_master_host_port(settings) == ("127.0.0.1", 7077)


def test_an_environment_with_every_setting_does_not_read_the_file(tmp_path):
    """The stack gives its services and Airflow's tasks every setting in their environment: a typo saved in `.env`
    while it ran failed every later DAG run (exit 3, no retry), though none of the file's values were used."""
    broken = tmp_path / "broken.env"
    broken.write_text("MYSQL_PASWORD=typo\nthis line has no equals sign\n")
    full = {name: str(getattr(Settings(), name)) for name in Settings.__dataclass_fields__} | {"MYSQL_PORT": "3307"}
    assert load_settings(env=full, env_file=broken).MYSQL_PORT == 3307
    with pytest.raises(SettingsError, match="broken.env line 2: expected KEY=VALUE"):  # one missing: the file is read
        load_settings(env={k: v for k, v in full.items() if k != "MYSQL_PORT"}, env_file=broken)


def test_an_env_file_not_in_utf8_is_one_line_and_a_byte_order_mark_is_skipped(tmp_path):
    """A Latin-1 `.env` ended every command in a UnicodeDecodeError traceback; a UTF-8 file that a Windows editor
    began with a byte-order mark failed its first line ("expected KEY=VALUE, got '\\ufeff# comment'")."""
    latin = tmp_path / "latin.env"
    latin.write_bytes("# settings\nPOSTGRES_PASSWORD=m\u00fcller\n".encode("latin-1"))
    with pytest.raises(SettingsError, match=r"^latin.env line 2: not UTF-8 \(byte 0xfc\); save the file as UTF-8$"):
        load_settings(env={}, env_file=latin)
    marked = tmp_path / "marked.env"
    marked.write_bytes("# settings\nPOSTGRES_PASSWORD=m\u00fcller\n".encode("utf-8-sig"))
    assert load_settings(env={}, env_file=marked).POSTGRES_PASSWORD == "m\u00fcller"
    marked.write_bytes(codecs.BOM_UTF8 + "# settings\nPOSTGRES_PASSWORD=m\u00fcller\n".encode("latin-1"))
    with pytest.raises(SettingsError, match=r"^marked.env line 2: not UTF-8 \(byte 0xfc\)"):  # counted past the mark
        load_settings(env={}, env_file=marked)


def test_a_checkpoint_directory_of_its_own_is_accepted(tmp_path):
    settings = load_settings(env={"STREAMING_CHECKPOINT_DIR": str(tmp_path / "ckpt")}, env_file=None)
    assert settings.streaming_checkpoint_dir == tmp_path / "ckpt"
