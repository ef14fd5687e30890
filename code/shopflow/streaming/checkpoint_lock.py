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
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Callable

from shopflow.config import Settings
from shopflow.db import pg_connection

log = logging.getLogger(__name__)
AVAILABLE_NOW, CONTINUOUS, RESET = "availableNow", "continuous", "reset"
WAIT_POLL_S = 1.0
_NAMESPACE = "shopflow.stream.checkpoint"
_HOLDER_SQL = """
SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid::bigint = (hashtext(%s)::bigint & 4294967295) AND l.objid::bigint = (hashtext(%s)::bigint & 4294967295)
"""


class CheckpointBusy(RuntimeError):
    """Another query holds the checkpoint; the message names it."""


def _key(settings: Settings, role: str) -> str:
    return f"{settings.streaming_checkpoint_dir.resolve()}:{role}"


def _try(cur, settings: Settings, role: str) -> bool:
    cur.execute("SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", (_NAMESPACE, _key(settings, role)))
    return cur.fetchone()[0]


def _holder(cur, settings: Settings, role: str) -> str:
    cur.execute(_HOLDER_SQL, (_NAMESPACE, _key(settings, role)))
    row = cur.fetchone()
    return f"{row[0] or 'a session'} (Postgres backend {row[1]})" if row else "a query that just ended"


@contextmanager
def holding(settings: Settings, mode: str, stop_requested: Callable[[], bool] = lambda: False,
            reset_wait_s: float = 0.0):
    """Yields True while this process holds the checkpoint; False when `mode` availableNow found it in use (or a
    stop was requested while waiting). Raises CheckpointBusy where the module's docstring says it refuses; a reset
    first waits up to `reset_wait_s` for the running query to end (`make up` after starting an empty broker)."""
    checkpoint = settings.streaming_checkpoint_dir
    with pg_connection(settings, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("SET application_name = %s", (f"shopflow stream_users {mode} (pid {os.getpid()})",))
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
                log.info("waiting for %s, the run holding checkpoint %s, to end", _holder(cur, settings, "query"),
                         checkpoint)
                waited = True
            time.sleep(WAIT_POLL_S)
        yield True
