"""Settings no local stack can run with, refused in one line before anything starts (`make up`, every ensure)."""
from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import stat
import subprocess
from pathlib import Path

from shopflow.config import PROJECT_ROOT, Settings
from shopflow.stack.binaries import java_home
from shopflow.stack import supervisor
from shopflow.stack.services import (Service, StackError, kafka_host_port, mariadb_socket, postgres_socket,
                                     spark_master_host_port)


# where the stack's Postgres and MariaDB listen (services.py binds them to 127.0.0.1)
LOCAL_DB_HOSTS = ("127.0.0.1", "localhost")
UNIX_PATH_MAX = 107  # a Unix socket's path: sun_path's 108 bytes with the terminating NUL


def _loopback(host: str) -> bool:
    """An IPv4 loopback address (Kafka and the Spark master listen on the host of their setting; the readiness
    checks connect over IPv4: `[::1]` passed here, then every start ended in "not ready after 30s")."""
    try:
        return host == "localhost" or ipaddress.IPv4Address(host).is_loopback
    except ValueError:  # a name other than localhost
        return False


def check_layout(settings: Settings, services: list[Service]) -> None:
    """Settings no local stack can run with, in one line before anything starts: two services on one port (e.g.
    AIRFLOW_PORT=8081, the Spark master UI's), a port outside 1-65535, a listener off loopback."""
    owners: dict[int, str] = {}
    for service in services:
        for i, port in enumerate(service.ports):
            where = f"{service.name} ({service.port_settings[i] if i < len(service.port_settings) else 'fixed'})"
            if not 0 < port < 65536:
                raise StackError(f"{where}: port {port} is not a TCP port (1-65535); set another one in .env.")
            if owners.setdefault(port, where) != where:
                raise StackError(f"port {port} is given to both {owners[port]} and {where}; set one of them to "
                                 "another port in .env.")
    for key, host in (("POSTGRES_HOST", settings.POSTGRES_HOST), ("MYSQL_HOST", settings.MYSQL_HOST)):
        if host not in LOCAL_DB_HOSTS:  # it started its own servers, then wrote the schema and data into that one
            raise StackError(f"{key}={host}: the local stack's server listens on 127.0.0.1 only, and everything "
                             f"else would use the server at {host}; set {key}=127.0.0.1 in .env (a server of "
                             "yours elsewhere is for the jobs run without the local stack)")
    if not settings.SPARK_MASTER_URL.startswith("spark://"):  # the workers were given it and exited at their start
        raise StackError(f"SPARK_MASTER_URL={settings.SPARK_MASTER_URL}: the local stack runs a standalone cluster; "
                         "set spark://127.0.0.1:7077 in .env (a job run by hand takes --master local[N])")
    for key, (host, _port) in (("KAFKA_BOOTSTRAP_SERVERS", kafka_host_port(settings)),
                               ("SPARK_MASTER_URL", spark_master_host_port(settings))):
        if not _loopback(host):
            raise StackError(f"{key}: the local stack listens on 127.0.0.1 only, not on {host}; set "
                             f"{key} with host 127.0.0.1 in .env.")
    check_state_path(settings)


def check_state_path(settings: Settings) -> None:
    """The servers' Unix sockets are in the state directory: under a long checkout path supervisord failed at its
    start ("AF_UNIX path too long", nothing naming the path or the way out). Whitespace: the Spark JVMs' flag naming
    the class-data sharing archive in it is split at spaces."""
    state = settings.state_dir
    if settings.SPARK_CDS_JOBS and any(character.isspace() for character in str(state)):
        raise StackError(f"the state directory {str(state)!r} holds whitespace, which the Spark JVMs' flag naming "
                         "the class-data sharing archive in it cannot carry; set LOCAL_STATE_DIR in .env to an "
                         "absolute path without it (or SPARK_CDS_JOBS= empty: no archive)")
    supervisord = supervisor.paths(settings)["socket"]
    sockets = {"supervisord's": supervisord.with_name(f"{supervisord.name}.{'9' * 7}"),  # it binds <socket>.<pid>
               "Postgres'": postgres_socket(settings), "MariaDB's": mariadb_socket(settings)}
    whose, path = max(sockets.items(), key=lambda item: len(os.fsencode(item[1])))
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise StackError(f"the state directory {state} is too long for the servers' Unix sockets: {whose} would be "
                         f"{len(os.fsencode(path))} bytes, at most {UNIX_PATH_MAX}; set LOCAL_STATE_DIR in .env to a "
                         "shorter absolute path (e.g. /var/tmp/shopflow)")


def blocked_directory(path: Path, user: str) -> Path | None:
    """The first directory on the way to `path` (itself included, while it exists) that `user` may not enter, by
    the permission bits (ACLs not considered)."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:  # not installed yet: the server's own tool says so
        return None
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    path = path.resolve()  # the directories the server really passes through, not a symlink's
    for directory in [*reversed(path.parents), path]:
        try:
            info = directory.stat()
        except FileNotFoundError:
            return None  # made later, by root, with the default 0755
        if _has_acl(directory):  # its group bits are then the ACL's mask: not judged here
            continue
        bit = (stat.S_IXUSR if info.st_uid == account.pw_uid else
               stat.S_IXGRP if info.st_gid in groups else stat.S_IXOTH)
        if not info.st_mode & bit:
            return directory
    return None


def _has_acl(directory: Path) -> bool:
    try:
        return bool(os.getxattr(directory, "system.posix_acl_access"))
    except OSError:  # none, or a file system without ACLs
        return False


def check_reachable(settings: Settings, user: str, server: str) -> None:
    """`server` runs as the system user `user` in the checkout (supervisord's working directory) on its data under
    the state directory: a checkout under root's home (mode 0700) stopped initdb with a bare permission error."""
    for path in (PROJECT_ROOT, settings.state_dir):
        if blocked := blocked_directory(path, user):
            raise StackError(f"{server} runs as the system user {user}, which may not enter {blocked} "
                             f"({stat.filemode(blocked.stat().st_mode)}) on the way to {path}. Let other users pass "
                             f"through it (`chmod o+x {blocked}`: entering only, not listing), or put the checkout "
                             "where every user can reach it (e.g. under /srv or /opt).")


def check_java_options(settings: Settings) -> None:
    """The jobs' JVM flags tried once on this machine's JVM, when the stack starts Spark: a typo (`-XX:+UseSerialGc`)
    failed every job at its JVM's start, with PySpark's JAVA_GATEWAY_EXITED traceback and the setting unnamed."""
    java = Path(java_home() or "/nonexistent") / "bin" / "java"
    if not java.is_file():  # `make install` puts it there first; the Spark start says so itself
        return
    for key in ("SPARK_JAVA_OPTIONS", "SPARK_STREAMING_JAVA_OPTIONS"):
        tried = subprocess.run([str(java), *getattr(settings, key).split(), "-version"], capture_output=True,
                               text=True, timeout=60)
        if tried.returncode != 0:
            why = " ".join(line.strip() for line in tried.stderr.splitlines()[:2])
            raise StackError(f"{key}={getattr(settings, key)}: the JVM refuses them ({why}); correct them in .env")
