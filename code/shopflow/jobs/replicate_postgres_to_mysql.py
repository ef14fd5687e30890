"""spark-submit entry point: make the MySQL replica equal to the Postgres `source` schema (incrementally).

    .venv/bin/python -m shopflow.jobs.replicate_postgres_to_mysql [--full]   # by hand: master, jars, JVM flags: .env
    spark-submit --jars <both JDBC jars> … code/shopflow/jobs/replicate_postgres_to_mysql.py [--full [true|false]]

Settings come from .env / the environment. Exit code 0 when every table reconciled, 1 otherwise (the reason
is the last log line and in `pipeline_runs`), 2 when the Spark master does not answer (one line, before Spark starts)
or Postgres or MySQL cannot be reached (one line),
3 when a retry would fail the same way: tables that differ from the models, rows the replica would reject,
local_infile off, spark-submit without the JDBC jars, a server refusing the login (Airflow then fails the task without
retrying), 143 / 130 when SIGTERM / Ctrl-C stopped it (one line; its `pipeline_runs` row says so).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

import mysql.connector
import psycopg2

from shopflow.jobs.db_exit import database_exit, ended, ends_on_signals, interrupted
from shopflow.jobs.session import NO_RETRY_EXIT, SessionRefused, build_session, configure_logging, job_settings
from shopflow.replication import JOB, ReplicationError, ReplicationRefused, replicate
from shopflow.replication.source import POSTGRES_DRIVER
from shopflow.replication.target import mysql_driver_class
from shopflow.runlog import ensure_pipeline_runs

log = logging.getLogger("shopflow.replication")
# A failed task fails the run: Spark's 4 attempts would make a read that gave way to a queued TRUNCATE or ALTER wait
# 4 x REPLICATION_SOURCE_LOCK_TIMEOUT_SECONDS (the snapshot's lock stays, so each attempt waits in full). A run is
# repeated whole (Airflow's retries, the next schedule) and picks up where the failed one left off.
TASK_ATTEMPTS = 1


def session(settings):
    return build_session(f"shopflow-{JOB}", settings, warm_modules=("shopflow.replication.copy_load",),
                         jdbc_drivers={POSTGRES_DRIVER: settings.POSTGRES_JDBC_JAR,  # the validating path
                                       mysql_driver_class(settings): settings.MYSQL_JDBC_JAR},
                         task_attempts=TASK_ATTEMPTS)


def _flag(raw: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {raw!r}")
    return raw.lower() == "true"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=JOB, description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", nargs="?", type=_flag, const=True, default=False, metavar="true|false",
                        help="reload every table in full (ignore watermarks); the DAG passes its full_reload param")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(force=True)
    settings = job_settings()
    with ends_on_signals(log, settings, JOB) as rearm:  # Airflow's timeout, Ctrl-C: one line, a failed row
        return _run(args, settings, rearm)


def _run(args: argparse.Namespace, settings, rearm: Callable[[], None]) -> int:
    try:
        spark = session(settings)
    except SessionRefused as refused:  # the master down (2), spark-submit without the JDBC jars (3)
        return ended(log, settings, JOB, refused.exit_code, str(refused))
    except KeyboardInterrupt:
        return interrupted(log, settings, JOB)
    rearm()  # Ctrl-C: PySpark's SIGINT handler replaced ours
    try:
        ensure_pipeline_runs(settings)  # keys added since an older version made it (compose: no `make up`)
        results = replicate(spark, settings, force_full=args.full)
    except ReplicationError as error:
        log.error("replication failed: %s", error)
        return NO_RETRY_EXIT if isinstance(error, ReplicationRefused) else 1
    except (psycopg2.OperationalError, mysql.connector.Error) as error:  # a server down or a refused login: one line
        if (code := database_exit(error, settings, log)) is None:
            raise
        return code
    finally:
        spark.stop()
    log.info("replica equal to the source (rows:checksum, of the whole table or of the rows this run changed): %s",
             ", ".join(f"{name} {'whole' if r.verify_all else 'changed'} {r.checksum}" for name, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
