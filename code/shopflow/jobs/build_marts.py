"""spark-submit entry point: build every mart from the MySQL replica, gate it, publish all of them atomically.

    .venv/bin/python -m shopflow.jobs.build_marts [--run-id ID]   # by hand: master, jars, JVM flags from .env
    spark-submit --jars <MYSQL_JDBC_JAR> … code/shopflow/jobs/build_marts.py [--run-id ID]   # the DAG

Settings come from .env / the environment (e.g. MYSQL_DATABASE=test_marts_x). Exit code 0 when every mart was
published, 3 when a quality gate failed (nothing published; the failed checks are the last log lines and in
`quality_results`; Airflow fails the task without retrying: the same replica fails the same checks), when the last
replication run failed (one line: the replica may hold part of it, and only a successful run, which starts a build
of its own, changes that) or spark-submit was not given the MySQL JDBC jar (one line, before Spark starts), 2 when
the Spark master does not answer (one line, before Spark starts) or MySQL cannot be reached (one line; 3 when it
refuses the login), or when the replica lacks a table or its columns differ from the models (changed by hand: one
line naming them), 143 / 130 when SIGTERM / Ctrl-C stopped it (one line; its `pipeline_runs` row says so), 1 on any
other error (one line when another build or a replication run held its lock past the wait, a session holding a mart
or a staging table open in a transaction blocked the publish, or MySQL took two of a mart's rows for one key).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

import mysql.connector
import psycopg2

from shopflow.db import LockBusy
from shopflow.jobs.db_exit import database_exit, ended, ends_on_signals, interrupted
from shopflow.jobs.session import NO_RETRY_EXIT, SessionRefused, build_session, configure_logging, job_settings
from shopflow.marts.build import JOB, build_marts
from shopflow.marts.replica import ReplicaIncomplete
from shopflow.marts.store import PublishBlocked, StagingRefused
from shopflow.replication.target import mysql_driver_class
from shopflow.quality import QualityGateError

log = logging.getLogger("shopflow.marts")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=JOB, description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-id", type=_run_id, help="recorded with the quality results (the DAG passes its run id)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    settings = job_settings()
    with ends_on_signals(log, settings, JOB) as rearm:  # Airflow's timeout, Ctrl-C: one line, a failed row
        return _run(args, settings, rearm)


def _run_id(raw: str) -> str:
    """At most quality_results.run_id's 250 characters: a longer one failed the build at its end, every mart built."""
    if not raw.strip() or len(raw) > 250:
        raise argparse.ArgumentTypeError(f"expected 1 to 250 characters, got {len(raw)}")
    return raw


def _run(args: argparse.Namespace, settings, rearm: Callable[[], None]) -> int:
    try:
        spark = build_session(f"shopflow-{JOB}", settings, warm_modules=(),
                              cores=settings.SPARK_MARTS_CORES, executor_cores=settings.SPARK_MARTS_CORES,
                              jdbc_drivers={mysql_driver_class(settings): settings.MYSQL_JDBC_JAR})  # the replica
    except SessionRefused as refused:  # the master down (2), spark-submit without the JDBC jars (3)
        return ended(log, settings, JOB, refused.exit_code, str(refused))
    except KeyboardInterrupt:
        return interrupted(log, settings, JOB)
    rearm()  # Ctrl-C: PySpark's SIGINT handler replaced ours
    try:
        build_marts(spark, settings, run_id=args.run_id)
    except QualityGateError as error:
        for failure in error.failures:
            log.error("quality gate failed: %s", failure)
        log.error("no mart published: %d check(s) failed", len(error.failures))
        return NO_RETRY_EXIT
    except (LockBusy, PublishBlocked) as busy:  # another build, a replication run or a reader's open transaction held
        log.error("no mart published: %s", busy)  # on (retried: they end); a traceback before for a held mart
        return 1
    except ReplicaIncomplete as incomplete:  # not retried: a successful replication run (its Asset event starts a
        log.error("no mart published: %s", incomplete)  # build of its own) or a hand fix changes it, not a retry
        return NO_RETRY_EXIT
    except StagingRefused as refused:  # one line; retried: a write task Spark ran twice would also do it
        log.error("no mart published: %s", refused)
        return 1
    except (psycopg2.OperationalError, mysql.connector.Error) as error:  # a server down or a refused login: one line
        if (code := database_exit(error, settings, log, "no mart published: ")) is None:
            raise
        return code
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
