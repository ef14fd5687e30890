"""Entry point of the users stream: Kafka topic `users-data` -> Postgres `source.users` (+ rejected_user_events).

    spark-submit code/shopflow/jobs/stream_users.py                  # the DAG: drain the topic, then stop
    python -m shopflow.jobs.stream_users --continuous                # long-running, a micro-batch every 2 s
    python -m shopflow.jobs.stream_users --reset                     # forget positions + checkpoint (topic recreated)
    python -m shopflow.jobs.stream_users --skip-deleted              # past events the broker deleted unread (retention)

Settings come from .env / the environment: STREAMING_SOURCE (python | kafka), STREAMING_CHECKPOINT_DIR,
STREAMING_TRIGGER_SECONDS, STREAMING_MAX_EVENTS_PER_BATCH, KAFKA_*, POSTGRES_*. Run directly (not under
spark-submit), the job uses SPARK_MASTER_URL, or --master (e.g. local[2]). One query per checkpoint runs at a time
(`streaming/checkpoint_lock.py`): beside a running one, a drain does nothing and exits 0, a continuous run waits for a
drain to end and refuses to start beside another continuous one, and --reset and --skip-deleted refuse. A broker
that does not answer ends the run with one error line and exit code 2, before Spark starts; so does a broker or
Postgres that goes away under a running query, or a Postgres that does not answer at the start, or restored under a
running query (a batch starting above its positions; the restart resumes from them). A topic whose offsets
went back below the committed positions (recreated, or a broker that lost its data), or whose broker id is no longer
the one the positions were committed for (deleted and created again, however many events it holds now), ends it with
one line and exit code 3: a retry would fail the same way until the stream is reset; so do events deleted unread (until
--skip-deleted), STREAMING_SOURCE=kafka in a Spark without the Kafka connector, a Postgres refusing the login,
source users whose emails differ only in case (`streaming/ledger.check_email_identity`), and a checkpoint changed by
hand that Spark refuses (until it is deleted; one deleted under a running query: exit code 2).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import signal
import sys
import threading
import time

import psycopg2
from pyspark.errors import StreamingQueryException

from shopflow import config_spark as vs
from shopflow import config_values as v
from shopflow.db import postgres_gone
from shopflow.jobs.db_exit import database_end, ended
from shopflow.jobs.session import (NO_RETRY_EXIT, RESTART_HINT, MasterUnreachable, build_session, configure_logging,
                                   job_settings)
from shopflow.streaming import checkpoint_lock, offset_log, query
from shopflow.streaming.ledger import EmailKeyMissing
from shopflow.streaming.offset_log import NotACheckpoint, PositionsBehind
from shopflow.streaming.sink import JOB
from shopflow.streaming.source import SourceUnavailable
from shopflow.streaming import kafka_offsets as ko

log = logging.getLogger("shopflow.streaming")


class PostgresGone(RuntimeError):
    """Postgres went away under a running query."""


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stream_users", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--continuous", action="store_true",
                      help="run until stopped, one micro-batch every STREAMING_TRIGGER_SECONDS")
    mode.add_argument("--reset", action="store_true",
                      help="delete the checkpoint and the committed positions, then exit")
    mode.add_argument("--skip-deleted", action="store_true",
                      help="move the partitions whose unread events the broker deleted (retention) to its earliest "
                           "offsets, delete the checkpoint, then exit")
    parser.add_argument("--trigger-seconds", type=v.option(v.positive_float),
                        help="override STREAMING_TRIGGER_SECONDS")
    parser.add_argument("--max-events", type=v.option(v.positive_int),
                        help="override STREAMING_MAX_EVENTS_PER_BATCH (0 = no limit)")
    parser.add_argument("--master", type=v.option(vs.spark_master),
                        help="Spark master when run without spark-submit (default SPARK_MASTER_URL)")
    return parser.parse_args(argv)


def _has_work(settings) -> bool:
    """Skips starting Spark (a minute on a small machine) when the topic holds nothing new."""
    pending = query.pending_events(settings)
    if pending is None:
        log.warning("topic %s does not exist yet: nothing to stream", settings.KAFKA_TOPIC)
    elif pending == 0:
        log.info("topic %s: no events above the committed positions, nothing to do", settings.KAFKA_TOPIC)
    else:
        log.info("topic %s: %d event(s) to stream so far (the run also applies those that arrive before its first "
                 "batch starts)", settings.KAFKA_TOPIC, pending)
    return bool(pending)


SECOND_SIGNAL_AFTER_S = 1.0  # a signal this long after the first ends the job at once


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM (`kill`) and SIGINT (Ctrl-C) only set `stop`. PySpark's own SIGINT handler (installed by SparkContext)
    cancels every job and raises KeyboardInterrupt inside whatever py4j call is running: a page of tracebacks and a
    failed exit instead of the query's clean stop. A second one ends the process at once: a batch whose upsert waits
    for another session's lock on `users` (a psql session left in a transaction) held the clean stop for as long,
    and nothing else ended it but `kill -9`. Its batch is not committed; the next run applies it. Only one at least
    SECOND_SIGNAL_AFTER_S after the first counts: make, `timeout` and systemd send one stop to several processes of
    the job's group at once, and that is one stop."""
    first = [time.monotonic()] if stop.is_set() else []  # set again after the session starts: a stop asked before

    def stop_or_end(signum, _frame):
        if not first or time.monotonic() - first[0] < SECOND_SIGNAL_AFTER_S:
            first[:] = first or [time.monotonic()]
            stop.set()
            return
        log.error("a second %s: ending at once; a batch in flight that had not committed is applied by the next run",
                  signal.Signals(signum).name)
        logging.shutdown()
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_or_end)


def main(argv: list[str] | None = None) -> int:
    """The job; the SIGTERM and SIGINT handlers it sets are put back when it returns (run in-process by a test)."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _main(argv)
    finally:
        for signum, handler in handlers.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(signum, handler)


def _main(argv: list[str] | None) -> int:
    args = _arguments(argv)
    configure_logging()
    settings = job_settings()
    overrides = {"STREAMING_TRIGGER_SECONDS": args.trigger_seconds, "STREAMING_MAX_EVENTS_PER_BATCH": args.max_events}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    exclusive = args.reset or args.skip_deleted  # both delete the checkpoint
    mode = checkpoint_lock.RESET if exclusive else query.CONTINUOUS if args.continuous else query.AVAILABLE_NOW
    # `kill` and Ctrl-C stop query and session cleanly (kill -9 loses nothing either): the handlers only set a flag
    # that query.run polls, so no exception lands inside a py4j call
    stop = threading.Event()
    try:
        if mode == query.AVAILABLE_NOW and not _has_work(settings):
            return 0
        if mode == query.CONTINUOUS:
            query.topic_partitions(settings)  # the broker answers: fail here, not after Spark's start
        _stop_on_signals(stop)
        with checkpoint_lock.holding(settings, mode, stop.is_set) as holding:
            if holding and args.skip_deleted:
                _skip_deleted(settings)
            elif holding and mode == checkpoint_lock.RESET:
                log.info("stream reset: %d committed positions removed, checkpoint deleted", query.reset(settings))
            elif holding:
                _run(args, settings, mode, stop)
    except (ko.BrokerUnreachable, PostgresGone) as gone:  # a server is down: one line, exit 2
        return _ended(settings, mode, 2, f"{gone}; is it running? {RESTART_HINT}")
    except psycopg2.OperationalError as error:  # before Spark starts: the checkpoint lock's connection
        if (end := database_end(error, settings)) is None:
            raise
        return _ended(settings, mode, *end)
    except (ko.OffsetsOutOfRange, SourceUnavailable, NotACheckpoint, EmailKeyMissing,
            offset_log.CheckpointUnreadable) as error:  # a retry fails too
        return _ended(settings, mode, NO_RETRY_EXIT, str(error))
    except (ko.KafkaOffsetError, MasterUnreachable, offset_log.CheckpointDeleted) as error:  # a retry mends these
        return _ended(settings, mode, 2, str(error))
    except checkpoint_lock.CheckpointBusy as busy:
        log.error("%s", busy)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while it asked the broker, before its own handlers: one line, not a traceback
        log.info("interrupted before the stream started: nothing read")
        return 130
    if stop.is_set():
        log.info("stopped")
    return 0


def _ended(settings, mode: str, code: int, message: str) -> int:
    """`ended`, with the stream's table and mode: the run ended before its first batch (or between batches, whose
    own rows say how far it got)."""
    return ended(log, settings, JOB, code, message, table_name="users", mode=mode)


def _gone(failed: str, settings) -> Exception | None:
    """The one-line error for a query that failed because the broker or Postgres went away under it, or the topic's
    offsets went back (PySpark relays the Python traceback in `failed`); None for any other failure."""
    if unreachable := re.search(r"BrokerUnreachable: (cannot reach Kafka at [^\n]*)", failed):
        return ko.BrokerUnreachable(unreachable.group(1))
    # e.g. the topic went back, or events were deleted unread
    if lost := re.search(r"(OffsetsWentBack|OffsetsDeleted|OffsetsOutOfRange|KafkaOffsetError): ([^\n]*)", failed):
        return getattr(ko, lost.group(1))(lost.group(2))
    if behind := re.search(r"PositionsBehind: ([^\n]*)", failed):  # Postgres restored under the query: a restart
        return PositionsBehind(behind.group(1))
    if busy := re.search(r"CheckpointBusy: ([^\n]*)", failed):  # its lock lost to another query (checkpoint_lock)
        return checkpoint_lock.CheckpointBusy(busy.group(1))
    if damaged := offset_log.refused(failed, settings.streaming_checkpoint_dir):  # changed or deleted under Spark
        return damaged
    if line := postgres_gone(failed):
        at = v.address(settings.POSTGRES_HOST, settings.POSTGRES_PORT)
        return PostgresGone(f"lost Postgres at {at} under the running query ({line}); the batch in flight was not "
                            "committed, the next run applies it")
    return None


def _skip_deleted(settings) -> None:
    moved = query.skip_deleted(settings)
    for partition, (old, new) in moved.items():
        log.warning("%s-%d: %d events the broker deleted unread skipped: position %d -> %d", settings.KAFKA_TOPIC,
                    partition, new - old, old, new)
    log.info("%scheckpoint deleted: the next run starts from the positions in Postgres",
             "" if moved else "no partition lost unread events, nothing skipped; ")


def _stop_started_session() -> None:
    from pyspark import SparkContext
    if SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()


def _run(args: argparse.Namespace, settings, mode: str, stop: threading.Event) -> None:
    # Spark's Python workers (the data source runner, executors) must import shopflow: use this interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        spark = build_session("shopflow-stream_users", settings, master=args.master,
                              warm_modules=("shopflow.streaming.kafka_source", "shopflow.streaming.events"),
                              arrow_workers=True, streaming=True, cores=settings.SPARK_STREAMING_CORES,
                              executor_cores=settings.SPARK_STREAMING_CORES)
    except KeyboardInterrupt:  # Ctrl-C while the session started: PySpark's own SIGINT handler raised it
        _stop_started_session()
        stop.set()
        return
    _stop_on_signals(stop)  # again: creating the SparkContext replaced the SIGINT handler with PySpark's own
    try:
        query.run(spark, settings, mode, stop.is_set)
    except StreamingQueryException as failed:
        if (gone := _gone(str(failed), settings)) is None:
            raise
        raise gone from None
    except Exception as failed:  # the query's start refused its checkpoint (a Spark error, or Hadoop's through py4j)
        if (damaged := offset_log.refused(str(failed), settings.streaming_checkpoint_dir)) is None:
            raise
        raise damaged from None
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
