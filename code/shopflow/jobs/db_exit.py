"""The jobs' one-line ends for a database their driver could not use: a refused login, or a server down."""
from __future__ import annotations

import logging

from shopflow.config import Settings
from shopflow.db import login_refused, server_gone
from shopflow.jobs.session import NO_RETRY_EXIT, RESTART_HINT


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
