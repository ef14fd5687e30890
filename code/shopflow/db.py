"""Connections to the two databases and schema application (the only DB plumbing shared by all modules)."""
from __future__ import annotations

import logging
import re
import socket
from contextlib import contextmanager

import mysql.connector
from mysql.connector.constants import ClientFlag
import psycopg2

import postgresdb
from shopflow.config import Settings
from shopflow.config_values import address


@contextmanager
def _transaction(conn, autocommit: bool):
    """Commit on success, roll back on any error, always close. A MySQL connection left by Ctrl-C (KeyboardInterrupt,
    or a SystemExit a signal handler raised, into the pure-Python connector's wait for an answer) is only shut: a
    ROLLBACK or QUIT sent on it then read the interrupted statement's answer first, and a run stopped in a 900 s lock
    wait went on waiting. The server rolls back and frees the session's locks as the connection drops."""
    try:
        yield conn
        if not autocommit:
            conn.commit()
    except BaseException as error:
        if not isinstance(error, Exception) and isinstance(conn, mysql.connector.MySQLConnection):
            conn.shutdown()
        elif not autocommit:
            try:
                conn.rollback()
            except Exception:  # the connection is gone (the error being raised says why): so is its transaction
                pass
        raise
    finally:
        conn.close()


log = logging.getLogger("shopflow")


class LockBusy(RuntimeError):
    """A MySQL named lock another session held for longer than the wait allowed."""


def named_lock(cursor, name: str, timeout_s: int, holders: str, error: type[LockBusy] = LockBusy) -> None:
    """Takes MySQL's named lock `name` on `cursor`'s session, waiting at most `timeout_s`: says so first when another
    session holds it (a job run by hand beside the DAG's waited up to 15 minutes without a word), and raises `error`
    naming `holders` when the wait ran out."""
    cursor.execute("SELECT IS_USED_LOCK(%s)", (name,))
    if cursor.fetchone()[0] is not None:
        log.warning("waiting for the lock %r, held by %s (at most %d s)", name, holders, timeout_s)
    cursor.execute("SELECT GET_LOCK(%s, %s)", (name, timeout_s))
    if cursor.fetchone()[0] != 1:
        raise error(f"the lock {name!r} was held for over {timeout_s} s (by {holders})")


# psycopg2's words for a Postgres that is down, restarting or gone away
_POSTGRES_GONE = re.compile(r"server closed the connection|connection to server .*failed|could not connect to server|"
                            r"terminating connection|the database system is (?:shutting down|starting up|in recovery)|"
                            r"connection already closed|SSL SYSCALL error|no connection to the server")


def postgres_gone(text: str) -> str | None:
    """The line of `text` (an error's, or a traceback Spark relayed) saying Postgres is down or went away, without
    its exception name; None when the error is another one."""
    found = _POSTGRES_GONE.search(text)
    if found is None:
        return None
    start, end = text.rfind("\n", 0, found.start()) + 1, text.find("\n", found.end())
    return re.sub(r"^\s*psycopg2\.[\w.]+: ", "", text[start:end if end >= 0 else len(text)]).strip()


# mysql.connector's errors for a server that is down or went away: can't connect (socket, TCP), unknown host, gone
# away, lost the connection (twice)
MYSQL_GONE = frozenset({2002, 2003, 2005, 2006, 2013, 2055})
# a server that answered and refused the login: libpq 14+ starts these with "connection to server ... failed" too
_POSTGRES_REFUSED = re.compile(r'FATAL:\s+(password authentication failed|(database|role) ".*" does not exist|'
                               r"no pg_hba\.conf entry)")


def server_gone(error: BaseException, settings: Settings) -> str | None:
    """One line naming the database server a job's driver could not reach, from its error; None for other errors
    (a refused login among them: `login_refused`)."""
    if isinstance(error, psycopg2.OperationalError) and not _POSTGRES_REFUSED.search(str(error)) and (
            line := postgres_gone(str(error))):
        return f"cannot reach Postgres at {address(settings.POSTGRES_HOST, settings.POSTGRES_PORT)} ({line})"
    if isinstance(error, mysql.connector.Error) and error.errno in MYSQL_GONE:
        return f"cannot reach MySQL at {address(settings.MYSQL_HOST, settings.MYSQL_PORT)} ({error.msg})"
    return None


def login_refused(error: BaseException, settings: Settings) -> str | None:
    """One line when a server refused a job's login (user, password or database): a retry fails the same way."""
    if isinstance(error, psycopg2.OperationalError) and (found := _POSTGRES_REFUSED.search(str(error))):
        return (f"Postgres at {address(settings.POSTGRES_HOST, settings.POSTGRES_PORT)} refused the login: "
                f"{found.group(0)}; check POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB")
    if isinstance(error, mysql.connector.Error) and error.errno in (1044, 1045, 1049):  # access denied, unknown db
        return (f"MySQL at {address(settings.MYSQL_HOST, settings.MYSQL_PORT)} refused the login: {error.msg}; "
                "check MYSQL_USER, MYSQL_PASSWORD and MYSQL_DATABASE")
    return None


def pg_connection(settings: Settings, autocommit: bool = False):
    conn = psycopg2.connect(settings.postgres_dsn, options="-c timezone=UTC")
    conn.autocommit = autocommit
    return _transaction(conn, autocommit)


# The connector sends connection attributes (performance_schema.session_connect_attrs) by default, and to name the
# OS it runs `lsb_release -a` once per process: 10-35 ms in the first connection of every fresh Spark Python worker.
NO_CONNECT_ATTRIBUTES = [-ClientFlag.CONNECT_ARGS]


def mysql_connection(settings: Settings, autocommit: bool = False, **overrides):
    args = {"client_flags": NO_CONNECT_ATTRIBUTES} | settings.mysql_connect_args() | overrides
    conn = mysql.connector.connect(**args, autocommit=autocommit, time_zone="+00:00")
    tcp_no_delay(conn)
    return _transaction(conn, autocommit)


def tcp_no_delay(conn) -> None:
    """TCP_NODELAY on a MySQL connection's TCP socket, as libmysqlclient and libpq set it; the pure-Python connector
    does not. Without it, LOAD DATA LOCAL (its rows, then an empty packet to end them: two small writes) waited for
    the server's delayed ACK, ~40 ms, on every load of a few rows: 12 or 1,000 rows took 42 ms instead of 0.5-2 ms."""
    sock = getattr(getattr(conn, "_socket", None), "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def apply_postgres_schema(settings: Settings, lock_timeout_s: int | None = None) -> list[str]:
    """Create schema `source`, the 7 tables and their change tracking (idempotent). A trigger or index made again
    (missing, disabled, changed) locks its table against writers; `lock_timeout_s` bounds each wait
    (LockNotAvailable), instead of none. What is there already takes no table lock (postgresdb/guarded.py). Returns
    the DDL's warnings (a part it could not make, e.g. `streaming_ddl.email_identity`)."""
    with pg_connection(settings) as conn, conn.cursor() as cur:
        if lock_timeout_s is not None:
            cur.execute("SET LOCAL lock_timeout = %s", (f"{lock_timeout_s}s",))
        # Serialize concurrent appliers (datagen and tests may race at start-up).
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('shopflow.schema'))")
        for statement in postgresdb.postgres_ddl(settings.POSTGRES_SCHEMA):
            cur.execute(statement)
        return [n.strip().removeprefix("WARNING:").strip() for n in conn.notices if n.startswith("WARNING:")]


def apply_mysql_schema(settings: Settings) -> None:
    """Create the 7 replica tables in MySQL/MariaDB (idempotent)."""
    with mysql_connection(settings, autocommit=True) as conn:
        cur = conn.cursor()
        for statement in postgresdb.mysql_ddl(postgresdb.ddl.key_collation(cur)):
            cur.execute(statement)
        cur.close()


def lock_holders(settings: Settings, tables: list[str]) -> str:
    """Who holds locks on these tables of the source schema now, for an error message (the caller's transaction has
    ended)."""
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT a.pid, a.usename, a.application_name, a.state, a.xact_start, "
                    "string_agg(DISTINCT c.relname, ', ' ORDER BY c.relname) FROM pg_locks l "
                    "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.granted AND n.nspname = %s "
                    "AND c.relname = ANY(%s) AND a.pid <> pg_backend_pid() GROUP BY 1, 2, 3, 4, 5 ORDER BY 1",
                    (settings.POSTGRES_SCHEMA, list(tables)))
        holders = [f"session {pid} ({user}{f', {app}' if app else ''}, {state}"
                   f"{f', in a transaction since {since:%H:%M:%S} UTC' if since else ''}) on {names}"
                   for pid, user, app, state, since, names in cur.fetchall()]
    return "; ".join(holders) or "no session holds them any more"
