"""The jobs' one-line ends: for a database their driver could not use (a refused login, a server down), for a
run that ended before its work began (`ended`), and for a batch run stopped by SIGTERM or Ctrl-C (`ends_on_signals`)."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager

from shopflow.config import Settings
from shopflow.db import login_refused, server_gone
from shopflow.jobs.session import NO_RETRY_EXIT, RESTART_HINT
from shopflow.runlog import record_exit, record_stopped


def ended(log: logging.Logger, settings: Settings, job: str, code: int, message: str, **fields) -> int:
    """Logs `message` as the run's one error line, records it as a failed pipeline_runs row (`record_exit`, with
    `fields`) and returns `code`, the job's exit code."""
    log.error("%s", message)
    record_exit(settings, job, message, **fields)
    return code


def database_end(error: BaseException, settings: Settings, prefix: str = "") -> tuple[int, str] | None:
    """The job's exit code and one line for `error` (a psycopg2 or mysql.connector error): NO_RETRY_EXIT for a refused
    login (a retry fails the same way), 2 for a server down or gone (retried). None for any other error, which the
    caller re-raises."""
    if refused := login_refused(error, settings):
        return NO_RETRY_EXIT, f"{prefix}{refused}"
    if (line := server_gone(error, settings)) is None:
        return None
    return 2, f"{prefix}{line}; is it running? {RESTART_HINT}"


def database_exit(error: BaseException, settings: Settings, log: logging.Logger, prefix: str = "") -> int | None:
    """`database_end`'s line logged; its exit code returned (None: the caller re-raises)."""
    if (end := database_end(error, settings, prefix)) is None:
        return None
    log.error("%s", end[1])
    return end[0]


STOP_ROW_WAIT_S = 10.0  # for the failed row of a stopped run; the process ends then, row or not
# what each signal a batch job ends on says, in its one line and its pipeline_runs row
STOPPED = {signal.SIGTERM: "stopped by SIGTERM (Airflow's execution_timeout, a task stopped from its UI, or kill)",
           signal.SIGINT: "stopped by SIGINT (Ctrl-C)"}


@contextmanager
def ends_on_signals(log: logging.Logger, settings: Settings, job: str):
    """While inside, SIGTERM and SIGINT end the batch job after one line and its failed pipeline_runs row
    (`record_stopped`), exit 128 + the signal's number. Airflow's execution_timeout and a task stopped from its UI
    send SIGTERM to the driver once the spark-submit JVM is gone (the DAGs' `JobSubmit.on_kill`). Before, SIGTERM
    ended the driver with no row (the dashboard showed the job as ok, the marts build took a stopped replication
    for a finished one), and Ctrl-C raised KeyboardInterrupt into the MySQL call under way, whose connection then
    waited on the way out for that call's answer: a run stopped in its lock wait went on waiting, up to 900 s. So the
    handler ends the process itself; the servers roll back what the run had not committed when its connections
    close. A Postgres statement under way (the source's lock wait, up to REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS; a
    checksum) ends first: libpq waits out the signal, and the handler runs when it returns. Yields `rearm`, to call
    once the SparkContext exists (creating it puts PySpark's own SIGINT handler in). A second Ctrl-C while the row is
    written ends the process at once, as by default, and so does STOP_ROW_WAIT_S without an answer from MySQL."""
    def stop(signum, _frame):
        # a repeated SIGTERM is the same stop: Airflow's supervisor signals the task's whole process group, then the
        # operator's on_kill signals the driver again ~2 ms later, which killed it in the middle of its row; a
        # second Ctrl-C ends it at once
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # a MySQL that does not answer (a table lock on pipeline_runs, a full disk) must not keep the driver, and the
        # locks its connections hold, alive: Airflow sends one SIGTERM and no more
        threading.Timer(STOP_ROW_WAIT_S, os._exit, (128 + signum,)).start()
        try:  # under spark-submit, whose JVM relayed our output and is gone, the line goes nowhere: the row stays
            log.error("%s", STOPPED[signum])
            record_stopped(settings, job, STOPPED[signum])
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(128 + signum)

    def rearm() -> None:
        for signum in STOPPED:
            signal.signal(signum, stop)

    previous = {signum: signal.getsignal(signum) for signum in STOPPED}
    rearm()
    try:
        yield rearm
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted(log: logging.Logger, settings: Settings, job: str) -> int:
    """`ended` for Ctrl-C while the Spark session starts, before `ends_on_signals`' rearm: PySpark's own SIGINT
    handler raised KeyboardInterrupt (a traceback and no row, before)."""
    return ended(log, settings, job, 128 + signal.SIGINT, STOPPED[signal.SIGINT])
