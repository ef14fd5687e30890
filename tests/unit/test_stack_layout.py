"""Settings no local stack can run with fail in one line before anything starts (no server needed)."""
import dataclasses
import os
import pwd
import tempfile
from pathlib import Path

import pytest

from shopflow.config import get_settings
from shopflow.stack.layout import blocked_directory, check_layout, check_reachable
from shopflow.stack.services import StackError, all_services


def _layout(**changes):
    settings = dataclasses.replace(get_settings(), **changes)
    check_layout(settings, all_services(settings))


def test_the_default_settings_pass():
    _layout()
    _layout(KAFKA_BOOTSTRAP_SERVERS="localhost:9092", SPARK_MASTER_URL="spark://127.0.0.2:7077")  # loopback too


@pytest.mark.parametrize("changes, message", [
    # the port after 8080: Spark's master UI had taken it by the time Airflow started, 35 s into `make up`
    ({"AIRFLOW_PORT": 8081}, r"port 8081 is given to both spark-master \(SPARK_MASTER_UI_PORT\) and "
                             r"airflow-api-server \(AIRFLOW_PORT\)"),
    ({"DASHBOARD_PORT": 5432}, r"port 5432 is given to both postgres \(POSTGRES_PORT\) and dashboard"),
    ({"SPARK_WORKER_UI_PORT_BASE": 8079}, r"port 8081 is given to both spark-master \(SPARK_MASTER_UI_PORT\) and "
                                          r"spark-worker-3 \(SPARK_WORKER_UI_PORT_BASE\)"),
    ({"SPARK_WORKER_UI_PORT_BASE": 65535}, r"spark-worker-2 \(SPARK_WORKER_UI_PORT_BASE\): port 65536 is not a TCP "
                                           r"port"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "0.0.0.0:9092"}, r"KAFKA_BOOTSTRAP_SERVERS: the local stack listens on 127\.0\.0\.1 "
                                                  r"only, not on 0\.0\.0\.0"),
    ({"SPARK_MASTER_URL": "spark://0.0.0.0:7077"}, r"SPARK_MASTER_URL: the local stack listens on 127\.0\.0\.1"),
    # the readiness checks connect over IPv4: every start ended in "kafka failed to start: not ready after 30s"
    ({"KAFKA_BOOTSTRAP_SERVERS": "[::1]:9092"}, r"KAFKA_BOOTSTRAP_SERVERS: the local stack listens on 127\.0\.0\.1 "
                                                r"only, not on \[::1\]"),
    # the stack started its own servers, then wrote the schema, the data and Airflow's tables into the other one
    ({"POSTGRES_HOST": "10.1.2.3"}, r"POSTGRES_HOST=10\.1\.2\.3: the local stack's server listens on 127\.0\.0\.1 "
                                    r"only, and everything else would use the server at 10\.1\.2\.3"),
    ({"MYSQL_HOST": "::1"}, r"MYSQL_HOST=::1: the local stack's server listens on 127\.0\.0\.1 only"),
    # the workers were given it and exited at their start
    ({"SPARK_MASTER_URL": "local[2]"}, r"SPARK_MASTER_URL=local\[2\]: the local stack runs a standalone cluster; set "
                                       r"spark://127\.0\.0\.1:7077"),
], ids=["airflow on the master UI", "dashboard on postgres", "worker UIs on the master UI", "past 65535", "kafka off "
        "loopback", "spark off loopback", "kafka on ipv6", "postgres elsewhere", "mysql on ipv6", "a local master"])
def test_settings_the_stack_cannot_run_with_name_their_keys(changes, message):
    with pytest.raises(StackError, match=message):
        _layout(**changes)


def test_a_state_directory_too_long_for_unix_sockets_or_with_whitespace_is_refused():
    """supervisord binds <state>/run/supervisor.sock.<pid>: under a checkout path of about 75 characters it failed at
    its start with "AF_UNIX path too long"; a space split the Spark JVMs' flag naming the archive in it."""
    fits = "/tmp/" + "s" * (107 - len("/tmp/") - len("/run/supervisor.sock.9999999"))
    _layout(LOCAL_STATE_DIR=fits)
    with pytest.raises(StackError, match=r"too long for the servers' Unix sockets: supervisord's would be 108 bytes, "
                                         r"at most 107; set LOCAL_STATE_DIR in .env to a shorter absolute path"):
        _layout(LOCAL_STATE_DIR=fits + "s")
    with pytest.raises(StackError, match=r"holds whitespace, which the Spark JVMs' flag naming the class-data "):
        _layout(LOCAL_STATE_DIR="/tmp/my shopflow")
    _layout(LOCAL_STATE_DIR="/tmp/my shopflow", SPARK_CDS_JOBS="")  # no archive, no flag


def test_a_checkout_the_servers_system_users_may_not_enter_is_refused_with_the_way_out():
    """A checkout under root's home (0700): initdb, run as postgres, failed with a bare permission error."""
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        Path(top).chmod(0o755)
        home = Path(top) / "root-home"
        home.mkdir(mode=0o700)
        state = home / "shopflow" / ".local"
        state.mkdir(parents=True)
        data = state / "postgres"  # not made yet: only what exists is checked
        assert blocked_directory(data, "postgres") == blocked_directory(data, "mysql") == home
        with pytest.raises(StackError) as refused:
            check_reachable(dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(state)), "postgres", "Postgres")
        assert str(refused.value) == (
            f"Postgres runs as the system user postgres, which may not enter {home} (drwx------) on the way to "
            f"{state}. Let other users pass through it (`chmod o+x {home}`: entering only, not listing), or put the "
            "checkout where every user can reach it (e.g. under /srv or /opt).")
        postgres = pwd.getpwnam("postgres")
        os.chown(home, 0, postgres.pw_gid)
        home.chmod(0o710)  # the group may enter: postgres's own group, not mysql's
        assert blocked_directory(data, "postgres") is None and blocked_directory(data, "mysql") == home
        os.chown(home, postgres.pw_uid, 0)
        home.chmod(0o700)  # the owner may enter
        assert blocked_directory(data, "postgres") is None
        home.chmod(0o701)  # everyone may enter
        assert blocked_directory(data, "mysql") is None
        check_reachable(dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(state)), "mysql", "MariaDB")
    assert blocked_directory(Path("/work"), "no-such-user-here") is None  # the server's own tool will say so


def test_a_symlink_is_followed_and_an_acl_is_left_to_the_server():
    """A state directory reached through a symlink is checked where it really is; a directory with an ACL (its
    group bits are then the ACL's mask) is not judged by its bits: `setfacl -m u:postgres:x /root` was refused."""
    import struct

    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        Path(top).chmod(0o755)
        home = Path(top) / "root-home"
        (home / "shopflow").mkdir(parents=True)
        home.chmod(0o700)
        link = Path(top) / "link"
        link.symlink_to(home / "shopflow")
        assert blocked_directory(link / ".local", "postgres") == home
        undefined, postgres = 0xFFFFFFFF, pwd.getpwnam("postgres").pw_uid
        entries = [(0x01, 7, undefined), (0x02, 1, postgres), (0x04, 0, undefined), (0x10, 1, undefined),
                   (0x20, 0, undefined)]  # user::rwx, user:postgres:--x, group::---, mask::--x, other::---
        os.setxattr(home, "system.posix_acl_access",
                    struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries))
        assert blocked_directory(link / ".local", "postgres") is None


def test_postgres_runs_the_major_version_that_created_its_data_directory(tmp_path):
    """After `apt install postgresql-16` beside 15, every `make up` started 16 on 15's data, which it refuses
    ("database files are incompatible with server")."""
    import dataclasses

    import pytest

    from shopflow.config import get_settings
    from shopflow.stack import bootstrap
    from shopflow.stack.binaries import pg_bin_dir
    from shopflow.stack.services import StackError

    lib = tmp_path / "lib"
    for major in ("9", "15", "16"):
        (lib / major / "bin").mkdir(parents=True)
        (lib / major / "bin" / "postgres").touch()
    data = tmp_path / "postgres"
    assert pg_bin_dir(data, lib) == lib / "16" / "bin"  # before initdb: the newest (numerically, not 9)
    data.mkdir()
    (data / "PG_VERSION").write_text("15\n")
    assert pg_bin_dir(data, lib) == lib / "15" / "bin"
    (data / "PG_VERSION").write_text("13\n")  # not installed: the newest, and `make up` says why it cannot start
    assert pg_bin_dir(data, lib) == lib / "16" / "bin"
    settings = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path))
    with pytest.raises(StackError, match=r"was created by Postgres 13, whose server is not installed .*"
                                         r"`apt-get install postgresql-13`"):
        bootstrap.init_postgres(settings)


def test_airflow_is_migrated_again_on_a_new_postgres_cluster(tmp_path, monkeypatch):
    """After `rm -rf .local/postgres` the stamp still matched, `airflow db migrate` was skipped, and every Airflow
    component exited with "Database migration required"."""
    import dataclasses
    import os

    from shopflow.config import get_settings
    from shopflow.stack import bootstrap

    runs = []
    monkeypatch.setattr(bootstrap, "_run", lambda argv, *_args, **_kwargs: runs.append(argv[1:]))
    settings = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path))
    (tmp_path / "postgres").mkdir()
    version = tmp_path / "postgres" / "PG_VERSION"
    version.write_text("15\n")
    assert bootstrap.init_airflow(settings) and runs == [["db", "migrate"]]
    assert not bootstrap.init_airflow(settings) and len(runs) == 1  # the same cluster: migrated already
    version.unlink()
    version.write_text("15\n")  # initdb again
    os.utime(version, ns=(1, 1))  # a time of its own, whatever the clock's resolution
    assert bootstrap.init_airflow(settings) and len(runs) == 2


def test_the_servers_logs_are_readable_by_their_owner_alone(tmp_path):
    """Postgres logs a failed statement with its values: the logs directory was 0755 and postgres.log 0644."""
    from shopflow.stack import supervisor

    scratch = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path / "state"))
    (tmp_path / "state" / "logs").mkdir(parents=True, mode=0o755)  # as an older version left it
    supervisor.write_config(scratch, all_services(scratch))
    assert (tmp_path / "state" / "logs").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("key", ["SPARK_JAVA_OPTIONS", "SPARK_STREAMING_JAVA_OPTIONS"])
def test_jvm_flags_the_jvm_refuses_are_named_when_the_stack_starts_spark(key):
    """A typo failed every job at its JVM's start with PySpark's JAVA_GATEWAY_EXITED traceback, the setting
    unnamed."""
    from shopflow.stack.layout import check_java_options

    settings = dataclasses.replace(get_settings(), **{key: "-XX:+UseSerialGc"})
    with pytest.raises(StackError, match=rf"{key}=-XX:\+UseSerialGc: the JVM refuses them \(Unrecognized VM option "
                                         r"'UseSerialGc'"):
        check_java_options(settings)
    check_java_options(get_settings())  # the defaults pass
