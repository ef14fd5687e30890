"""The jobs' one-line ends: for a database their driver could not use (a refused login, a server down), and for a
run that ended before its work began (`ended`)."""
from __future__ import annotations

import logging

from shopflow.config import Settings
from shopflow.db import login_refused, server_gone
from shopflow.jobs.session import NO_RETRY_EXIT, RESTART_HINT
from shopflow.runlog import record_exit


def ended(log: logging.Logger, settings: Settings, job: str, code: int, message: str, **fields) -> int:
    """Logs `message` as the run's one error line, records it as a failed pipeline_runs row (`record_exit`, with
    `fields`) and returns `code`, the job's exit code."""
    log.error("%s", message)
    record_exit(settings, job, message, **fields)
    return code


def database_exit(error: BaseException, settings: Settings, log: logging.Logger, prefix: str = "") -> int | None:
    """Logs one line for `error` (a psycopg2 or mysql.connector error) and returns the job's exit code: NO_RETRY_EXIT
    for a refused login (a retry fails the same way), 2 for a server down or gone (retried). None for any other error,
    which the caller re-raises."""
    if refused := login_refused(error, settings):
        log.error("%s%s", prefix, refused)
        return NO_RETRY_EXIT
    if (line := server_gone(error, settings)) is None:
        return None
    log.error("%s%s; is it running? %s", prefix, line, RESTART_HINT)
    return 2
