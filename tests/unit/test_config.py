import dataclasses

import pytest

from shopflow.config import Settings, SettingsError, load_settings, read_env_file


@pytest.mark.parametrize("env_file", [None, "repo"], ids=["code defaults", ".env"])
def test_env_file_defaults_match_the_brief(env_file):
    """The code's defaults and the repository's .env (what the stack runs with) both give the brief's values."""
    from shopflow.config import PROJECT_ROOT

    settings = load_settings(env={}, env_file=PROJECT_ROOT / ".env" if env_file else None)
    assert (settings.POSTGRES_PORT, settings.POSTGRES_DB, settings.POSTGRES_USER) == (5432, "postgres_db", "db_user")
    assert (settings.MYSQL_PORT, settings.MYSQL_DATABASE, settings.KAFKA_TOPIC) == (3306, "mysql_db", "users-data")
    assert (settings.DATAGEN_USERS, settings.DATAGEN_PRODUCTS, settings.DATAGEN_ORDERS) == (500, 800, 3000)
    assert (settings.DATAGEN_DETAILS_MIN, settings.DATAGEN_DETAILS_MAX) == (1, 10)
    assert (settings.DATAGEN_CATEGORIES, settings.DATAGEN_REVIEWS, settings.DATAGEN_LOYALTY_POINTS) == (20, 2000, 3000)
    assert settings.KAFKA_EVENT_INTERVAL_SECONDS == 5.0
    assert settings.SPARK_MASTER_URL == "spark://127.0.0.1:7077" and settings.SPARK_MASTER_UI_PORT == 8081
    assert settings.postgres_jdbc_url == "jdbc:postgresql://127.0.0.1:5432/postgres_db?currentSchema=source"
    assert settings.mysql_jdbc_url == "jdbc:mysql://127.0.0.1:3306/mysql_db"


def test_every_env_file_key_is_a_setting():
    from shopflow.config import PROJECT_ROOT

    keys = set(read_env_file(PROJECT_ROOT / ".env"))
    assert keys <= {f.name for f in dataclasses.fields(Settings)}


def test_the_env_files_jwt_secret_is_long_enough_for_airflows_hs512():
    """Airflow signs its tokens with HS512 when given a secret: PyJWT warned at every token issued with the 43-byte
    secret .env held ("below the minimum recommended length of 64 bytes")."""
    from shopflow.config import PROJECT_ROOT

    assert len(read_env_file(PROJECT_ROOT / ".env")["AIRFLOW_JWT_SECRET"].encode()) >= 64


def test_process_environment_overrides_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PORT=6000\nKAFKA_TOPIC=from-file\n")
    settings = load_settings(env={"POSTGRES_PORT": "7000"}, env_file=env_file)
    assert settings.POSTGRES_PORT == 7000
    assert settings.KAFKA_TOPIC == "from-file"


@pytest.mark.parametrize("key, value, fragment", [
    ("POSTGRES_PORT", "abc", "POSTGRES_PORT='abc': expected a whole number"),
    ("MYSQL_PORT", "70000", "MYSQL_PORT='70000': a port must be between 1 and 65535"),
    ("DATAGEN_USERS", "-5", "DATAGEN_USERS='-5': must not be negative"),
    ("SPARK_WORKERS", "0", "SPARK_WORKERS='0': must be at least 1"),
    ("SPARK_WORKER_CORES", "0", "SPARK_WORKER_CORES='0': must be at least 1"),
    ("SPARK_MARTS_CORES", "0", "SPARK_MARTS_CORES='0': must be at least 1"),
    ("SPARK_MARTS_CORES", "3", "SPARK_MARTS_CORES=3: the marts job's single executor must fit on one worker: at most "
                               "SPARK_WORKER_CORES (2)"),
    ("SPARK_STREAMING_CORES", "0", "SPARK_STREAMING_CORES='0': must be at least 1"),
    ("SPARK_STREAMING_CORES", "3", "SPARK_STREAMING_CORES=3: the streaming job's single executor must fit on one "
                                   "worker: at most SPARK_WORKER_CORES (2)"),
    ("KAFKA_TOPIC_PARTITIONS", "0", "KAFKA_TOPIC_PARTITIONS='0': must be at least 1"),
    ("AIRFLOW_PARALLELISM", "-2", "AIRFLOW_PARALLELISM='-2': must not be negative"),
    ("KAFKA_EVENT_INTERVAL_SECONDS", "0", "KAFKA_EVENT_INTERVAL_SECONDS='0': must be greater than 0"),
    ("POSTGRES_SCHEMA", "source; drop", "POSTGRES_SCHEMA='source; drop': expected a plain SQL identifier"),
    ("POSTGRES_SCHEMA", "user", "POSTGRES_SCHEMA='user': a reserved word in Postgres"),  # failed at the first DDL
    ("POSTGRES_SCHEMA", "Source", "POSTGRES_SCHEMA='Source': expected lower case"),
    ("POSTGRES_HOST", "db.example:5432", "POSTGRES_HOST='db.example:5432': expected a host name or an IP address"),
    ("MYSQL_HOST", "mysql/replica", "MYSQL_HOST='mysql/replica': expected a host name or an IP address"),
    ("SPARK_MASTER_URL", "http://x", "SPARK_MASTER_URL='http://x'"),
    ("STREAMING_TRIGGER_SECONDS", "nan", "STREAMING_TRIGGER_SECONDS='nan': expected a finite number"),  # it passed
    ("KAFKA_EVENT_INTERVAL_SECONDS", "1e10", "KAFKA_EVENT_INTERVAL_SECONDS='1e10': one event a day (86400 s between "
                                             "events) is the slowest pace"),  # the event generator's sleep crashed
    ("KAFKA_EVENT_INTERVAL_SECONDS", "inf", "KAFKA_EVENT_INTERVAL_SECONDS='inf': expected a finite number"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "KAFKA_BOOTSTRAP_SERVERS='localhost': expected host:port"),  # a traceback
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092,kafka2", "got 'kafka2'"),
    ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:0", "got '127.0.0.1:0'"),
    ("SPARK_WORKER_MEMORY", "lots", "SPARK_WORKER_MEMORY='lots'"),
    ("REPLICATION_WRITE_PATH", "bulk", "REPLICATION_WRITE_PATH='bulk': expected copy"),
    ("REPLICATION_VERIFY_ALL_HOURS", "-1", "REPLICATION_VERIFY_ALL_HOURS='-1': must not be negative"),
    ("REPLICATION_VERIFY_ALL_HOURS", "daily", "REPLICATION_VERIFY_ALL_HOURS='daily': expected a number"),
    ("REPLICATION_TOMBSTONE_RETENTION_HOURS", "-1", "REPLICATION_TOMBSTONE_RETENTION_HOURS='-1': must not be negative"),
    ("REPLICATION_SOURCE_PARALLEL_WORKERS", "-1", "REPLICATION_SOURCE_PARALLEL_WORKERS='-1': must not be negative"),
    ("AIRFLOW_FERNET_KEY", "my secret passphrase", "AIRFLOW_FERNET_KEY: expected a Fernet key"),
    ("AIRFLOW_FERNET_KEY", "KNkyUJC8tT_ltRcMLWoqE893pwj4H6x-T7zXxRXex0=", "AIRFLOW_FERNET_KEY: expected a Fernet key"),
    ("KAFKA_TOPIC", "users data", "KAFKA_TOPIC='users data': expected a Kafka topic name"),
    ("REPLICATION_SCHEDULE", "every 15 min", "REPLICATION_SCHEDULE='every 15 min': expected a cron expression"),
    ("STREAMING_SCHEDULE", "61 * * * *", "STREAMING_SCHEDULE='61 * * * *': expected a cron expression"),
    ("SPARK_DRIVER_MEMORY", "256m", "SPARK_DRIVER_MEMORY='256m': at least 512m (Spark refuses a heap under 450 MiB)"),
    ("SPARK_EXECUTOR_MEMORY", "0g", "SPARK_EXECUTOR_MEMORY='0g': at least 512m"),
    ("SPARK_JAVA_OPTIONS", "-XX:+UseSerialGC -Xmx2g",
     "SPARK_JAVA_OPTIONS='-XX:+UseSerialGC -Xmx2g': -Xmx2g is not allowed here (Spark refuses it): the heap is "
     "SPARK_DRIVER_MEMORY"),
    ("SPARK_STREAMING_JAVA_OPTIONS", "-Xmx4g", "SPARK_STREAMING_JAVA_OPTIONS='-Xmx4g': -Xmx4g is not allowed here"),
    ("REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS", "0.0001", "REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS='0.0001': must be "
                                                          "between 0.001 and 2147483 (seconds)"),  # was 0 ms: no limit
    ("REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS", "99999999", "must be between 0.001 and 2147483"),  # Postgres refused
    ("SPARK_JAVA_OPTIONS", "-XX:+UseSerialGC Xmx2g", "SPARK_JAVA_OPTIONS='-XX:+UseSerialGC Xmx2g': expected JVM "
                                                     "options starting with '-', got 'Xmx2g'"),
    # Postgres refused these role names, and its log kept the refused CREATE ROLE with the password; then a traceback
    ("POSTGRES_USER", "pg_shop", "POSTGRES_USER='pg_shop': Postgres reserves this role name"),
    ("AIRFLOW_DB_USER", "public", "AIRFLOW_DB_USER='public': Postgres reserves this role name"),
    # one account for two roles: the second's password (and rights) won, the first's 'Access denied'
    ("MARTS_READER_USER", "db_user", "MARTS_READER_USER='db_user': the dashboard's read-only account must be another "
                                     "account than MYSQL_USER's"),
    ("AIRFLOW_DB_USER", "db_user", "AIRFLOW_DB_USER='db_user': Airflow's metadata database owner must be another "
                                   "account than POSTGRES_USER's"),
])
def test_bad_value_fails_with_one_line_naming_the_key(key, value, fragment):
    with pytest.raises(SettingsError) as error:
        load_settings(env={key: value}, env_file=None)
    message = str(error.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["*/5 * * * *", "0 3 * * 1-5", "@hourly", "@daily", "@weekly",
                                   "@monthly", "@quarterly", "@yearly", "@once", "@continuous"])
def test_schedules_take_what_airflow_takes(value):
    assert load_settings(env={"STREAMING_SCHEDULE": value}, env_file=None).STREAMING_SCHEDULE == value


def test_an_executor_must_fit_in_a_workers_memory():
    fits = load_settings(env={"SPARK_WORKER_MEMORY": "2g", "SPARK_EXECUTOR_MEMORY": "2048m"}, env_file=None)
    assert fits.SPARK_EXECUTOR_MEMORY == "2048m"
    with pytest.raises(SettingsError, match=r"SPARK_EXECUTOR_MEMORY=2049m: an executor must fit on one worker: at "
                                            r"most SPARK_WORKER_MEMORY \(2g\)"):
        load_settings(env={"SPARK_WORKER_MEMORY": "2g", "SPARK_EXECUTOR_MEMORY": "2049m"}, env_file=None)
    with pytest.raises(SettingsError, match="SPARK_EXECUTOR_MEMORY='lots'"):
        load_settings(env={"SPARK_EXECUTOR_MEMORY": "lots"}, env_file=None)


def test_details_range_is_checked():
    with pytest.raises(SettingsError, match="DATAGEN_DETAILS_MIN"):
        load_settings(env={"DATAGEN_DETAILS_MIN": "11"}, env_file=None)


def test_malformed_env_line_names_the_line(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nPOSTGRES_PORT=1\nthis is not a setting\n")
    with pytest.raises(SettingsError, match="line 3"):
        load_settings(env={}, env_file=env_file)


def test_cli_prints_one_line_and_exits_2(monkeypatch, capsys):
    from shopflow.config import get_settings
    from shopflow.stack.__main__ import main

    get_settings.cache_clear()
    monkeypatch.setenv("MYSQL_PORT", "not-a-port")
    try:
        assert main(["status"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MYSQL_PORT" in err


def test_spark_java_options_always_pin_utc_and_may_be_empty(tmp_path):
    state = {"LOCAL_STATE_DIR": str(tmp_path)}  # no class-data sharing archive there
    assert load_settings(env=state | {"SPARK_JAVA_OPTIONS": ""}, env_file=None).spark_java_options == \
        "-Duser.timezone=UTC"
    tuned = load_settings(env=state | {"SPARK_JAVA_OPTIONS": " -XX:+UseSerialGC   -Xss4m "}, env_file=None)
    assert tuned.spark_java_options == "-Duser.timezone=UTC -XX:+UseSerialGC -Xss4m"


def test_the_streaming_job_has_its_own_jvm_options(tmp_path):
    settings = load_settings(env={"LOCAL_STATE_DIR": str(tmp_path), "SPARK_JAVA_OPTIONS": "-XX:TieredStopAtLevel=1",
                                  "SPARK_STREAMING_JAVA_OPTIONS": "-Xss4m"}, env_file=None)
    assert settings.java_options_for(streaming=False) == "-Duser.timezone=UTC -XX:TieredStopAtLevel=1"
    assert settings.java_options_for(streaming=True) == "-Duser.timezone=UTC -Xss4m"
    with pytest.raises(SettingsError, match="SPARK_STREAMING_JAVA_OPTIONS"):
        load_settings(env={"SPARK_STREAMING_JAVA_OPTIONS": "Xss4m"}, env_file=None)


def test_run_details_keep_their_start_and_their_end():
    from shopflow.runlog import clip

    assert clip("short") == "short"
    relayed = "PythonException: An exception was thrown from the Python worker:\n" + "  File x\n" * 500 + \
        "mysql.connector.errors.DatabaseError: 4166 (HY000): local infile disabled"
    clipped = clip(relayed)
    assert len(clipped) == 2000 and clipped.startswith("PythonException: An exception was thrown")
    assert clipped.endswith("4166 (HY000): local infile disabled")


def test_bootstrap_servers_from_the_environment_are_stripped_around_each_address():
    """A value with spaces (the environment is not stripped as .env lines are) started the broker on
    `tcp:// 127.0.0.1:9092`."""
    assert load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": " 127.0.0.1:9092 , kafka2:9092 "},
                         env_file=None).KAFKA_BOOTSTRAP_SERVERS == "127.0.0.1:9092,kafka2:9092"


def test_a_misspelled_key_in_the_env_file_is_an_error_naming_the_setting(tmp_path):
    """`MYSQL_PASWORD=secret` left MYSQL_PASSWORD at its default, silently."""
    env_file = tmp_path / ".env"
    env_file.write_text("MYSQL_PASWORD=secret\n")
    with pytest.raises(SettingsError, match=r"^\.env: MYSQL_PASWORD is not a setting \(did you mean "
                                            r"MYSQL_PASSWORD\?\)$"):
        load_settings(env={}, env_file=env_file)
    env_file.write_text("WHATEVER=1\n")
    with pytest.raises(SettingsError, match="WHATEVER is not a setting; the settings are the keys of the shipped"):
        load_settings(env={}, env_file=env_file)
    env_file.write_text("COMPOSE_PROJECT_NAME=shop\nMYSQL_PASSWORD=secret\n")  # docker compose's own: allowed
    assert load_settings(env={}, env_file=env_file).MYSQL_PASSWORD == "secret"


@pytest.mark.parametrize("line, value", [
    ("abc # demo", "abc"), ("abc\t# demo", "abc"), ("a#b", "a#b"), ('"a # b" # c', "a # b"), ("'x#y'", "x#y"),
    ('"quoted"', "quoted"), ('"half', '"half'), ("", "")])
def test_env_values_read_as_docker_compose_reads_them(tmp_path, line, value):
    """The same .env feeds docker compose, which ends an unquoted value at ` #`: `abc # demo` was our password
    `abc # demo` and compose's `abc`."""
    env_file = tmp_path / ".env"
    env_file.write_text(f"MYSQL_PASSWORD={line}\n")
    assert read_env_file(env_file)["MYSQL_PASSWORD"] == value


def test_an_env_file_named_but_missing_is_an_error_not_the_defaults(tmp_path):
    with pytest.raises(SettingsError, match=r"SHOPFLOW_ENV_FILE='/nonexistent/shopflow.env': no such file"):
        load_settings(env={"SHOPFLOW_ENV_FILE": "/nonexistent/shopflow.env"})
    named = tmp_path / "other.env"
    named.write_text("POSTGRES_PORT=15432\n")
    assert load_settings(env={"SHOPFLOW_ENV_FILE": str(named)}).POSTGRES_PORT == 15432


@pytest.mark.parametrize("given", ["::1", "[::1]"])
def test_an_ipv6_host_is_bracketed_in_every_url(given):
    settings = load_settings(env={"POSTGRES_HOST": given, "MYSQL_HOST": given}, env_file=None)
    assert settings.POSTGRES_HOST == settings.MYSQL_HOST == "::1"  # as libpq and the MySQL client take it
    assert settings.postgres_url().startswith("postgresql://db_user:qwerty@[::1]:5432/")
    assert settings.mysql_url().startswith("mysql://db_user:qwerty@[::1]:3306/")
    assert settings.postgres_jdbc_url.startswith("jdbc:postgresql://[::1]:5432/")
    assert settings.mysql_jdbc_url.startswith("jdbc:mysql://[::1]:3306/")
    assert load_settings(env={"MYSQL_HOST": "mysql-replica_1.local"}, env_file=None).mysql_jdbc_url.startswith(
        "jdbc:mysql://mysql-replica_1.local:3306/")
