"""Each published mart against the same question answered in plain SQL over the replica (`Mart.reference_sql`).

    python -m shopflow.marts.verify      # exit 0 when every mart equals its plain-SQL answer, 1 when one differs,
                                         # 2 when it could not compare (a bad setting, MySQL down, a mart not built)

The marts are built from the replica as it was; a replication run that changed it since makes them differ until the
next build (the build_marts DAG runs after each replication). The output says so first when `pipeline_runs` shows it.
Like the build, verify reads under the replication lock: a run still applying its tables (it commits table by table)
is waited for, so no answer is computed over a replica half-way between two snapshots.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

import mysql.connector
from mysql.connector import errorcode

from shopflow.config import Settings, get_settings
from shopflow.config_values import SettingsError
from shopflow.db import mysql_connection
from shopflow.quality.rules import normalized
from shopflow.replication.results import JOB as REPLICATION_JOB
from shopflow.runlog import NOT_STARTED

from .build import JOB as MARTS_JOB
from .registry import all_marts
from .replica import (ReplicaIncomplete, ReplicationBusy, check_last_replication, check_replica_tables,
                      replication_paused)
from .spec import Mart

SAMPLE = 5


def _rows(cursor, sql: str) -> list[tuple]:
    cursor.execute(sql)
    return [tuple(normalized(v) for v in row) for row in cursor.fetchall()]


def reference_session(cursor) -> None:
    """What the plain SQL answers need of the session: a recursion as deep as the weekly calendar is long (MariaDB's
    default of 1,000 iterations cut it off after 1,001 weeks without an error; MySQL 8 fails at its own limit of
    1,000), and AVG kept exact before ROUND (`div_precision_increment` shapes AVG's decimals; MariaDB 10.11 rounds
    455/101 to 4.50 with or without it, as the mart does; a precaution for servers not tried here)."""
    cursor.execute("SET SESSION div_precision_increment = 30")  # its maximum
    cursor.execute("SELECT VERSION()")
    depth = "max_recursive_iterations" if "mariadb" in cursor.fetchone()[0].lower() else "cte_max_recursion_depth"
    cursor.execute(f"SET SESSION {depth} = 4294967295")


def reference_rows(cursor, mart: Mart) -> list[tuple]:
    """The mart's plain-SQL answer over the replica."""
    reference_session(cursor)
    columns = ", ".join(f"`{c.name}`" for c in mart.columns)
    return _rows(cursor, f"SELECT {columns} FROM ({mart.reference_sql}) reference")


def differences(cursor, mart: Mart) -> tuple[int, list[str]]:
    """(rows in the mart, a description of each difference from the plain-SQL answer, at most SAMPLE per side)."""
    columns = ", ".join(f"`{c.name}`" for c in mart.columns)
    published = _rows(cursor, f"SELECT {columns} FROM `{mart.name}`")
    reference = reference_rows(cursor, mart)
    only_mart = sorted((Counter(published) - Counter(reference)).elements(), key=repr)
    only_sql = sorted((Counter(reference) - Counter(published)).elements(), key=repr)
    return len(published), ([f"only in {mart.name}: {r}" for r in only_mart[:SAMPLE]] +
                            [f"only in the plain SQL answer: {r}" for r in only_sql[:SAMPLE]])


def replica_changed_since_build(cursor) -> str | None:
    """A note when a replication run that wrote or deleted rows (or failed: its upserts may be committed; not one
    refused before it started) ended after the last successful marts build started; None when the marts are at least
    as new as the replica's last change."""
    cursor.execute("SELECT (SELECT MAX(COALESCE(finished_at, started_at)) FROM pipeline_runs WHERE job = %s "
                   "AND table_name IS NULL AND NOT (status = 'ok' AND COALESCE(rows_written, 0) = 0 "
                   "AND COALESCE(rows_deleted, 0) = 0) AND COALESCE(mode, '') <> %s), "
                   "(SELECT MAX(started_at) FROM pipeline_runs WHERE job = %s AND table_name IS NULL "
                   "AND status = 'ok')",
                   (REPLICATION_JOB, NOT_STARTED, MARTS_JOB))
    changed, built = cursor.fetchone()
    if changed is None or (built is not None and changed <= built):
        return None
    since = f"the last marts build started {built:%Y-%m-%d %H:%M:%S} UTC" if built else "no marts build succeeded yet"
    advice = ("Build the marts again (the build_marts DAG, or `make airflow ARGS=\"dags trigger build_marts\"`) and "
              "verify after it.")
    try:
        check_last_replication(cursor)
    except ReplicaIncomplete as incomplete:  # a build now refuses (exit 3): told to build, the user met that refusal
        advice = f"A marts build would refuse now: {incomplete}; verify after that build."
    return (f"note: a replication run changed the replica at {changed:%Y-%m-%d %H:%M:%S} UTC and {since}: "
            f"differences may be that change, not a wrong mart. {advice}")


def verify(settings: Settings) -> dict[str, list[str]]:
    report = {}
    with mysql_connection(settings) as conn:
        cursor = conn.cursor()
        with replication_paused(cursor, settings):
            _compare_all(conn, cursor, report)
    return report


def _compare_all(conn, cursor, report: dict[str, list[str]]) -> None:
    check_replica_tables(cursor, {table for mart in all_marts() for table in mart.reads})  # else a misleading hint
    note = replica_changed_since_build(cursor)
    if note:
        print(note, flush=True)
    for mart in all_marts():
        rows, problems = differences(cursor, mart)  # the mart and its answer in one transaction (one snapshot),
        conn.commit()  # then its end: a transaction holds the tables it read, and a publish (RENAME) would wait
        report[mart.name] = problems
        print(f"{mart.name}: {'equal' if not problems else 'DIFFERENT'} ({rows} rows)", flush=True)
        for problem in problems:
            print(f"  {problem}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m shopflow.marts.verify", description=(
        "Compare every mart with its plain-SQL answer over the replica (settings from .env / the environment). "
        "Exit 0 when all are equal, 1 when one differs, 2 when it could not compare, 130 on Ctrl-C.")).parse_args(argv)
    try:
        return 1 if any(verify(get_settings()).values()) else 0
    except SettingsError as error:
        print(f"verify: bad setting: {error}", file=sys.stderr)
    except mysql.connector.Error as error:  # the server down, or a mart not built yet: one line, not a traceback
        hints = {errorcode.CR_CONN_HOST_ERROR: " (is MySQL running?)",
                 errorcode.ER_NO_SUCH_TABLE: " (were the marts built? the build_marts DAG builds them)",
                 errorcode.ER_BAD_FIELD_ERROR: " (a mart built by an older version: build the marts again)"}
        hint = hints.get(error.errno, "")
        print(f"verify: {error}{hint}", file=sys.stderr)
    except (ReplicationBusy, ReplicaIncomplete) as error:
        print(f"verify: {error}", file=sys.stderr)
    except KeyboardInterrupt:  # Ctrl-C, in its lock wait say: one line, not a traceback
        print("verify: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
