"""First-start work for the local servers: data directories, roles, databases, Airflow's metadata DB.

Everything is idempotent: a second `make up` finds the work done and skips it.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from postgresdb.models import TABLES
from shopflow import db
from shopflow.config import Settings
from shopflow.stack import supervisor
from shopflow.stack.binaries import PG_LIB, data_major, pg_bin_dir
from shopflow.stack.services import VENV_BIN, StackError, airflow_env, mariadb_socket


def _chown_dir(path: Path, user: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, user, user)


def _run(command: list[str], log: Path, what: str, env: dict | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{what} failed (exit {result.returncode}); last lines of {log}:\n{tail}")


def _initdb_interrupted(data: Path) -> bool:
    """initdb writes PG_VERSION first and the `postgres` database last (base/ then holds template1, template0 and
    postgres); a server writes postmaster.opts at each start. A hard kill (OOM, the VM stopped) of the first init left
    a directory every later `make up` took as initialised: "postgres failed to start" each time, no way out named."""
    base = data / "base"
    return (not (data / "postmaster.opts").exists()
            and (not base.is_dir() or sum(1 for p in base.iterdir() if p.is_dir()) < 3))


def init_postgres(settings: Settings) -> bool:
    data = settings.state_dir / "postgres"
    if major := data_major(data):
        if pg_bin_dir(data) != PG_LIB / major / "bin":
            raise StackError(f"{data} was created by Postgres {major}, whose server is not installed (the newest here "
                             f"is {pg_bin_dir().parent.name}): `apt-get install postgresql-{major}`, or move the "
                             "directory away to start with an empty database")
        if not _initdb_interrupted(data):
            return False
        print(f"  {data}: the first initdb did not finish; initialising again", flush=True)
        shutil.rmtree(data)
    _chown_dir(data, "postgres")
    initdb = [str(pg_bin_dir() / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
              "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256"]
    # initdb refuses to run as root (PLATFORM.md): run it as the postgres system user.
    _run(["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(initdb)],
         settings.state_dir / "logs" / "postgres-init.log", "initdb")
    return True


# mariadb-install-db writes one of these last, once the system tables are in (mysql_… up to 10.11, mariadb_… from 11)
MARIADB_INIT_DONE = ("mysql_upgrade_info", "mariadb_upgrade_info")
MARIADB_SYSTEM = {"mysql", "performance_schema", "sys"}


def init_mariadb(settings: Settings) -> bool:
    data = settings.state_dir / "mariadb"
    if (data / "mysql").exists():
        done = any((data / name).exists() for name in MARIADB_INIT_DONE)
        if done or any(p.is_dir() and p.name not in MARIADB_SYSTEM for p in data.iterdir()):  # databases: a server
            return False  # ran on it, not ours to redo
        # an interrupted first init: mariadbd would not start on its partial system tables
        print(f"  {data}: the first mariadb-install-db did not finish; initialising again", flush=True)
        shutil.rmtree(data)
    _chown_dir(data, "mysql")
    _run(["mariadb-install-db", "--user=mysql", f"--datadir={data}", "--auth-root-authentication-method=socket",
          "--skip-test-db"], settings.state_dir / "logs" / "mariadb-init.log", "mariadb-install-db")
    return True


def pg_superuser(settings: Settings, dbname: str = "postgres"):
    """Superuser over the Unix socket in the data dir (trust auth there; TCP needs passwords)."""
    conn = psycopg2.connect(host=str(settings.state_dir / "postgres"), port=settings.POSTGRES_PORT,
                            user="postgres", dbname=dbname)
    conn.autocommit = True
    return conn


def _pg_role_and_db(cur, user: str, password: str, database: str) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
    if not cur.fetchone():
        cur.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
            sql.Identifier(database), sql.Identifier(user)))


def bootstrap_postgres(settings: Settings) -> None:
    conn = pg_superuser(settings)
    try:
        with conn.cursor() as cur:
            _pg_role_and_db(cur, settings.POSTGRES_USER, settings.POSTGRES_PASSWORD, settings.POSTGRES_DB)
            _pg_role_and_db(cur, settings.AIRFLOW_DB_USER, settings.AIRFLOW_DB_PASSWORD, settings.AIRFLOW_DB)
    finally:
        conn.close()


def _mysql_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def mariadb_root(settings: Settings, statements: str) -> str:
    """Run SQL as root over the socket (unix_socket auth: root of this machine only)."""
    socket = mariadb_socket(settings)
    # The client honours MYSQL_HOST / MYSQL_TCP_PORT from the environment (our settings export MYSQL_HOST): force the
    # socket and drop those, or it would try TCP, where root's unix_socket login cannot work.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQL_")}
    result = subprocess.run(["mariadb", "--no-defaults", "--protocol=socket", f"--socket={socket}", "-u", "root",
                             "--batch", "--skip-column-names"], input=statements, capture_output=True, text=True,
                            env=env)
    if result.returncode != 0:
        raise RuntimeError(f"MariaDB bootstrap failed: {result.stderr.strip()}")
    return result.stdout


def bootstrap_mariadb(settings: Settings) -> None:
    # Tests build scratch databases named test_*, so the app user may create those too.
    # PROCESS: a marts build blocked by other sessions' open transactions names them (marts/store.py).
    # The reader account (dashboard, SQL clients) may only SELECT.
    # Identifiers are validated by Settings as plain identifiers; the password goes in as an escaped literal.
    user, db, reader = settings.MYSQL_USER, settings.MYSQL_DATABASE, settings.MARTS_READER_USER
    password, reader_password = _mysql_literal(settings.MYSQL_PASSWORD), _mysql_literal(settings.MARTS_READER_PASSWORD)
    mariadb_root(settings, f"""
CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY {password};
ALTER USER '{user}'@'%' IDENTIFIED BY {password};
GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%';
GRANT ALL PRIVILEGES ON `test\\_%`.* TO '{user}'@'%';
GRANT PROCESS ON *.* TO '{user}'@'%';
CREATE USER IF NOT EXISTS '{reader}'@'%' IDENTIFIED BY {reader_password};
ALTER USER '{reader}'@'%' IDENTIFIED BY {reader_password};
GRANT SELECT ON `{db}`.* TO '{reader}'@'%';
FLUSH PRIVILEGES;
""")


def write_airflow_password(settings: Settings) -> None:
    """Airflow's admin password in clear, for its login (`AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE`). The
    simple auth manager reads the file at each login, so a running Airflow takes a new password at once; its user
    (`AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS`) is the one it started with."""
    supervisor.write_private(settings.state_dir / "airflow" / "passwords.json",
                             json.dumps({settings.AIRFLOW_ADMIN_USER: settings.AIRFLOW_ADMIN_PASSWORD}))


def init_airflow(settings: Settings) -> bool:
    """`airflow db migrate` (skipped when this Airflow version already migrated)."""
    home = settings.state_dir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    import airflow

    stamp = home / "migrated.stamp"
    # the database cluster it migrated, by the time its initdb wrote PG_VERSION: a new .local/postgres (the old one
    # removed) has no Airflow tables, and every Airflow component exited with "Database migration required"
    try:
        cluster = (settings.state_dir / "postgres" / "PG_VERSION").stat().st_mtime_ns
    except OSError:
        cluster = None
    marker = f"{airflow.__version__} {settings.AIRFLOW_DB}@{settings.POSTGRES_PORT} cluster {cluster}"
    if stamp.exists() and stamp.read_text() == marker:
        return False
    _run([str(VENV_BIN / "airflow"), "db", "migrate"], settings.state_dir / "logs" / "airflow-migrate.log",
         "airflow db migrate", env=airflow_env(settings))
    stamp.write_text(marker)
    return True


SCHEMA_LOCK_WAIT_S = 15  # per lock; a client's open transaction on a source table, not a server still starting


def apply_source_schema(settings: Settings) -> None:
    """The source schema, checked at every ensure that includes Postgres: a trigger or index it must make again (one
    missing, disabled or changed) locks its table against writers (postgresdb/guarded.py; a complete schema none).
    With no limit, a client's open transaction on such a table (psql without autocommit after an UPDATE) held `make
    up` and `make test` without a word, and every writer of that table queued behind them."""
    try:
        for warning in db.apply_postgres_schema(settings, lock_timeout_s=SCHEMA_LOCK_WAIT_S):
            print(f"  note: {warning} (README, Troubleshooting)", flush=True)
    except (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected):
        holders = db.lock_holders(settings, [t.name for t in TABLES])
        raise StackError(f"the {settings.POSTGRES_SCHEMA} tables stayed in use for {SCHEMA_LOCK_WAIT_S} s, so their "
                         f"triggers and indexes could not be checked: {holders}. End those sessions (or let them "
                         "finish) and run it again.") from None
