"""The marts in MySQL: staging tables, the atomic publish, and the JDBC options of every Spark read and write.

A mart is written to `<mart>__staging`, checked there, then published for all marts at once with one
`RENAME TABLE mart TO mart__old, mart__staging TO mart, ...`: a reader sees the old marts or the new ones, never a
half-written table, and a run that fails before the rename leaves the published marts as they were.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Iterable

import mysql.connector
from mysql.connector import errorcode
from pyspark.sql.types import DateType

from shopflow.config import Settings
from shopflow.db import named_lock
from shopflow.replication.target import WRITE_URL_OPTIONS, mysql_driver_class

from .spec import Mart

log = logging.getLogger(__name__)
_DUPLICATE = re.compile(r"Duplicate entry '.{0,200}?' for key '?[\w.]+'?")


class StagingRefused(RuntimeError):
    """MySQL refused a mart's rows as duplicates of its key: replica values its collation holds equal (a retry fails
    the same), or a write task Spark ran twice (a retry mends it)."""


# The replication's measured write options per driver: MariaDB's bulk protocol, MySQL's rewritten batches.
WRITE_BATCH_SIZE = 5_000
MAX_WRITERS = 3
BUILD_LOCK = "shopflow.marts.{database}"
BUILD_LOCK_TIMEOUT_S = 60
# A session holding a mart open in a transaction (a SQL client with autocommit off, idle) delays the rename, and
# every new reader of that mart queues behind a waiting rename (the server's lock_wait_timeout: a day in MariaDB,
# a year in MySQL). So the rename waits PUBLISH_ATTEMPT_S at a time, letting readers through in between, and
# PUBLISH_LOCK_WAIT_S in all.
PUBLISH_LOCK_WAIT_S = 120
PUBLISH_ATTEMPT_S = 2
PUBLISH_PAUSE_S = 1
STAGING_LOCK_WAIT_S = PUBLISH_LOCK_WAIT_S  # dropping a staging table a failed run left (no reader queues behind it)


class PublishBlocked(RuntimeError):
    """The marts could not be published: other sessions kept them (or a leftover staging table) open; the published
    marts stay as they were."""


def staging_name(mart: Mart) -> str:
    return f"{mart.name}__staging"


def old_name(mart: Mart) -> str:
    return f"{mart.name}__old"


def jdbc_options(io, settings: Settings, url_options: str):
    """Connection options of a Spark JDBC reader or writer for the replica database."""
    return (io.option("url", f"{settings.mysql_jdbc_url}?{url_options}")
            .option("driver", mysql_driver_class(settings))
            .option("user", settings.MYSQL_USER).option("password", settings.MYSQL_PASSWORD))


def existing_tables(cursor, names: Iterable[str]) -> set[str]:
    """Which of `names` are tables of the connection's database."""
    names = list(names)
    cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
                   f"AND table_name IN ({', '.join(['%s'] * len(names))})", tuple(names))
    return {row[0] for row in cursor.fetchall()}


def publish_sql(marts: Iterable[Mart], published: set[str]) -> str:
    """One RENAME for every mart: the current table (if any) aside to __old, the staging table in its place."""
    renames = []
    for mart in marts:
        if mart.name in published:
            renames.append(f"`{mart.name}` TO `{old_name(mart)}`")
        renames.append(f"`{staging_name(mart)}` TO `{mart.name}`")
    return "RENAME TABLE " + ", ".join(renames)


class MartStore:
    def __init__(self, settings: Settings, cursor):
        self.settings, self.cur = settings, cursor

    def lock(self) -> None:
        """One build per database at a time: two would overwrite each other's staging tables."""
        named_lock(self.cur, BUILD_LOCK.format(database=self.settings.MYSQL_DATABASE), BUILD_LOCK_TIMEOUT_S,
                   "another marts build")

    def create_staging(self, mart: Mart) -> None:
        """A fresh, empty staging table (one a failed run left behind is dropped) and no __old leftover. A session
        holding the leftover open (someone inspecting a failed gate's staging table with autocommit off) makes the
        DROP wait: STAGING_LOCK_WAIT_S at most, not the server's day, then PublishBlocked names it."""
        wait_s = STAGING_LOCK_WAIT_S
        self.cur.execute(f"SET SESSION lock_wait_timeout = {max(1, round(wait_s))}")
        try:
            self.cur.execute(f"DROP TABLE IF EXISTS `{staging_name(mart)}`, `{old_name(mart)}`")
        except mysql.connector.Error as error:
            if error.errno != errorcode.ER_LOCK_WAIT_TIMEOUT:
                raise
            raise PublishBlocked(f"{mart.name}: dropping the staging table a failed build left ({staging_name(mart)}) "
                                 f"waited {wait_s:.0f} s for other sessions to close it: {self._open_transactions()}."
                                 " Commit or roll back there; the published marts stay as they were.") from None
        self.cur.execute(mart.ddl(staging_name(mart)))

    def write_staging(self, df, mart: Mart) -> None:
        # coalesce never adds partitions: a small mart keeps its few writers (and asking df.rdd for its partition
        # count would run the whole plan once more)
        options = WRITE_URL_OPTIONS[mysql_driver_class(self.settings)]
        # dates as text: a java.sql.Date has no 1582-10-05..14 (Julian-Gregorian), so Spark's Monday 1582-10-11 of a
        # calendar spanning it was stored as 1582-10-15, a Friday (the stream takes registration years from 1000)
        df = df.withColumns({f.name: df[f.name].cast("string") for f in df.schema.fields
                             if isinstance(f.dataType, DateType)})
        try:
            (jdbc_options(df.coalesce(MAX_WRITERS).write.format("jdbc").mode("append"), self.settings, options)
             .option("dbtable", f"`{staging_name(mart)}`").option("batchsize", WRITE_BATCH_SIZE).save())
        except Exception as error:
            if (duplicate := _DUPLICATE.search(str(error))) is None:
                raise
            raise StagingRefused(f"{mart.name}: MySQL took two of its rows for one key ({duplicate.group(0)}): "
                                 "replica values that differ only in trailing spaces (or case, where the column's "
                                 "collation ignores it), which Spark groups apart; changed by hand? The source's "
                                 "CHECKs allow neither. (Or a write task Spark ran twice: a retry stages it again.)"
                                 ) from None

    def published(self, marts: Iterable[Mart]) -> set[str]:
        return existing_tables(self.cur, (m.name for m in marts))

    def publish(self, marts: tuple[Mart, ...], wait_s: float = PUBLISH_LOCK_WAIT_S) -> None:
        self.cur.execute(f"SET SESSION lock_wait_timeout = {PUBLISH_ATTEMPT_S}")
        statement, deadline = publish_sql(marts, self.published(marts)), time.monotonic() + wait_s
        while True:
            try:
                self.cur.execute(statement)
                break
            except mysql.connector.Error as error:
                if error.errno != errorcode.ER_LOCK_WAIT_TIMEOUT:
                    raise
                if time.monotonic() >= deadline:
                    raise PublishBlocked(f"publishing the marts waited {wait_s:.0f} s for other sessions to close "
                                         f"them: {self._open_transactions()}. Commit or roll back there (a SQL "
                                         "client with autocommit off keeps every table it read open until then); "
                                         "the published marts stay as they were.") from None
                time.sleep(PUBLISH_PAUSE_S)
        try:  # published by now: a failed drop must not report the build failed, the next one drops them
            self.cur.execute(f"DROP TABLE IF EXISTS {', '.join(f'`{old_name(m)}`' for m in marts)}")
        except mysql.connector.Error as error:
            log.warning("the marts are published; the previous ones (__old) were not dropped (%s): the next build "
                        "drops them", error)

    def _open_transactions(self) -> str:
        """The other sessions in a transaction, as far as this account may see them (PROCESS privilege)."""
        self.cur.execute("SELECT p.id, p.user, p.host, t.trx_started, p.command FROM information_schema.innodb_trx t "
                         "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
                         "WHERE p.id <> CONNECTION_ID() ORDER BY t.trx_started LIMIT 5")
        found = [f"session {sid} ({user}@{host}, in a transaction since {started:%Y-%m-%d %H:%M:%S}, now {command})"
                 for sid, user, host, started, command in self.cur.fetchall()]
        return "; ".join(found) or "none this account can see (SHOW PROCESSLIST as an administrator shows them)"
