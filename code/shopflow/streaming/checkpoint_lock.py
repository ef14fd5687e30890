"""One users stream query per checkpoint at a time.

Spark lets one query write a checkpoint: a second one on it (the Airflow DAG's run while `make stream` runs) dies
with CONCURRENT_STREAM_LOG_UPDATE and a Java stack trace. The data would stay exact either way (the ledger commits
each batch with its positions); this is about which query runs. Each query holds a Postgres session lock named after
its checkpoint for its whole life (a killed driver's connection closes, which frees it); a continuous query holds a
second one. Finding the checkpoint in use:
- an availableNow run (the DAG's) does nothing: the query that holds it applies the topic;
- a continuous query waits for an availableNow run to end (it drains what the topic held, then stops), and refuses
  to start beside another continuous one;
- `--reset` (which deletes the checkpoint) refuses while any query runs (`make up`'s reset after an empty broker
  first waits a while for it to end).
A session lock ends with its session: after a Postgres restart the running query no longer held it, and a DAG run
could start a second query on the checkpoint. So the sink calls `verify` before each micro-batch: the locks are taken
again on a new session, or, when another query took them meanwhile, this one stops.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from contextlib import closing, contextmanager
from typing import Callable

import psycopg2

from shopflow.config import Settings

log = logging.getLogger(__name__)
AVAILABLE_NOW, CONTINUOUS, RESET = "availableNow", "continuous", "reset"
WAIT_POLL_S = 1.0
EXIT_WAIT_S = 5.0  # `verify`: how long a session Postgres ended may take to exit and free its locks
_NAMESPACE = "shopflow.stream.checkpoint"
_HOLDER_SQL = """
SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid::bigint = (hashtext(%s)::bigint & 4294967295) AND l.objid::bigint = (hashtext(%s)::bigint & 4294967295)
"""


class CheckpointBusy(RuntimeError):
    """Another query holds the checkpoint; the message names it."""


@dataclass
class _Held:
    conn: object
    roles: tuple[str, ...]
    application: str
    backend: int  # the holding session's Postgres pid: a session just ended still holds its locks while it exits


_HELD: dict[str, _Held] = {}  # checkpoint key -> the session holding its locks in this process


def _key(settings: Settings, role: str) -> str:
    return f"{settings.streaming_checkpoint_dir.resolve()}:{role}"


def _try(cur, settings: Settings, role: str) -> bool:
    cur.execute("SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", (_NAMESPACE, _key(settings, role)))
    return cur.fetchone()[0]


def _holder_row(cur, settings: Settings, role: str) -> tuple[str | None, int] | None:
    """(application name, Postgres pid) of the session holding `role`'s lock; None when none does."""
    cur.execute(_HOLDER_SQL, (_NAMESPACE, _key(settings, role)))
    return cur.fetchone()


def _holder(cur, settings: Settings, role: str) -> str:
    row = _holder_row(cur, settings, role)
    return f"{row[0] or 'a session'} (Postgres backend {row[1]})" if row else "a query that just ended"


def _session(settings: Settings, application: str):
    """An autocommit connection named `application` (pg_stat_activity), to hold session locks on."""
    conn = psycopg2.connect(settings.postgres_dsn)
    conn.autocommit = True
    conn.cursor().execute("SET application_name = %s", (application,))
    return conn


@contextmanager
def holding(settings: Settings, mode: str, stop_requested: Callable[[], bool] = lambda: False,
            reset_wait_s: float = 0.0, say: Callable[[str], None] = log.info):
    """Yields True while this process holds the checkpoint; False when `mode` availableNow found it in use (or a
    stop was requested while waiting). Raises CheckpointBusy where the module's docstring says it refuses; a reset
    first waits up to `reset_wait_s` for the running query to end (`make up` after starting an empty broker); `say`
    tells of that wait."""
    checkpoint, application = settings.streaming_checkpoint_dir, f"shopflow stream_users {mode} (pid {os.getpid()})"
    with closing(_session(settings, application)) as conn:
        cur = conn.cursor()
        if mode == CONTINUOUS and not _try(cur, settings, CONTINUOUS):
            raise CheckpointBusy(f"another continuous users stream runs on checkpoint {checkpoint}: "
                                 f"{_holder(cur, settings, CONTINUOUS)}. Stop it first (Ctrl-C where it runs).")
        waited, reset_deadline = False, time.monotonic() + reset_wait_s
        while not _try(cur, settings, "query"):
            if mode == RESET and time.monotonic() >= reset_deadline:
                raise CheckpointBusy(f"a users stream query runs on checkpoint {checkpoint}: "
                                     f"{_holder(cur, settings, 'query')}. Stop it (or let the DAG's run end) first.")
            if mode == AVAILABLE_NOW:
                log.info("checkpoint %s is in use by %s, which applies the topic: nothing to do", checkpoint,
                         _holder(cur, settings, "query"))
                yield False
                return
            if stop_requested():
                yield False
                return
            if not waited:
                say(f"waiting for {_holder(cur, settings, 'query')}, the run holding checkpoint {checkpoint}, to end")
                waited = True
            time.sleep(WAIT_POLL_S)
        held = _HELD[_key(settings, "")] = _Held(conn, (CONTINUOUS, "query") if mode == CONTINUOUS else ("query",),
                                                application, conn.get_backend_pid())
        try:
            yield True
        finally:
            _HELD.pop(_key(settings, ""), None)
            if held.conn is not conn:
                held.conn.close()


def verify(settings: Settings) -> None:
    """Before a micro-batch: this process still holds the checkpoint (nothing to check outside `holding`). A session
    Postgres ended (a restart) takes the locks again on a new one; CheckpointBusy when another query has them."""
    held = _HELD.get(_key(settings, ""))
    if held is None:
        return
    try:
        held.conn.cursor().execute("SELECT 1")
        return
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        pass
    conn = _session(settings, held.application)
    cur = conn.cursor()
    deadline = time.monotonic() + EXIT_WAIT_S
    while (lost := [role for role in held.roles if not _try(cur, settings, role)]) and time.monotonic() < deadline \
            and (_holder_row(cur, settings, lost[0]) or ("", None))[1] in (held.backend, None):  # pid
        time.sleep(0.1)  # the ended session has not exited yet
    if lost:
        holder = _holder(cur, settings, lost[0])
        conn.close()
        raise CheckpointBusy(f"this query lost its lock on checkpoint {settings.streaming_checkpoint_dir} when "
                             f"Postgres ended its session (a restart?), and {holder} took it meanwhile: this query "
                             "stops, the other goes on")
    log.warning("Postgres ended the session holding checkpoint %s (a restart?): its lock is taken again",
                settings.streaming_checkpoint_dir)
    held.backend = conn.get_backend_pid()
    try:
        held.conn.close()
    except psycopg2.Error:
        pass
    held.conn = conn
