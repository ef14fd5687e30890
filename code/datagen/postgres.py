"""Fill the seven source tables in Postgres with seeded fake data, bulk-loaded with COPY.

    python -m datagen.postgres [--seed N] [--scale N] [--reset]

- Applies the Postgres schema first (idempotent), then loads users, product_categories, products, orders,
  order_details, reviews and loyalty_points with explicit ids and moves each id sequence past the largest id.
- Sizes come from the settings (DATAGEN_USERS, DATAGEN_PRODUCTS, ...), each multiplied by --scale
  (a float such as 0.1, or 600 for about 10 million order_details; sizes over 100 million rows in a table are
  refused, before anything is changed). The seed defaults to DATAGEN_SEED.
  The same seed and scale give the same table contents on every run (updated_at/change_txid aside).
- Idempotent: when any source table already holds rows (users written by the streaming job count too, so
  run this first), nothing is generated; a line says so (and when users alone hold rows, that the source was never
  generated) and the exit code is 0. `--reset` truncates the seven tables (RESTART IDENTITY) and regenerates them,
  all in one transaction, so a failed reset leaves the old data in place. A table of yours with a foreign key to one
  of them makes the reset fail with Postgres' message naming it (CASCADE would have emptied it too).
- The reset and the load lock the tables; a session holding one of them (a SQL client idle in a transaction, a
  replication run reading it) is waited for up to LOCK_WAIT_S, then the run fails naming the sessions.
- Each table's foreign keys are dropped for its COPY and added back (validated) in the same transaction:
  per-row checks would triple the time of a large load. Other sessions wait for the tables until commit.
- Exit codes: 0 loaded or skipped; 1 Postgres unreachable or the load refused (a lock not granted, a full disk, ...:
  nothing changed); 2 bad setting or argument (one line on stderr).
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import psycopg2
import psycopg2.errors

from postgresdb.models import TABLES, Table
from shopflow.config import Settings
from shopflow.config_values import address
from shopflow.db import apply_postgres_schema, lock_holders, pg_connection

from .cli import EXIT_UNREACHABLE, OneLineParser, fail, non_negative_int, positive_float, settings_or_exit
from .copyfmt import ChunkReader, copy_chunks, copy_sql
from .tables import Sizes, generate

PROG = "datagen.postgres"
COPY_READ_SIZE = 1 << 20
PROGRESS_S = 30  # a line this often while one table loads
LOCK_WAIT_S = 60  # per lock; psycopg2 does not stop a lock wait on Ctrl-C, so it must end by itself


def parse_args(argv: list[str] | None):
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0], epilog=(
        "Skips (exit 0) when the source tables already hold data; --reset truncates and regenerates them "
        "in one transaction. Exit codes: 0 ok or skipped, 1 Postgres unreachable or the load refused (nothing "
        "changed), 2 bad setting/argument."))
    parser.add_argument("--seed", type=non_negative_int, default=None,
                        help="random seed (default: DATAGEN_SEED); same seed and scale give the same data")
    parser.add_argument("--scale", type=positive_float, default=1.0,
                        help="multiply every DATAGEN_* size by this (e.g. 0.1, 2, 600); default 1")
    parser.add_argument("--reset", action="store_true",
                        help="TRUNCATE the seven source tables (RESTART IDENTITY; the users the stream applied "
                             "too, which it does not apply again) and regenerate")
    return parser.parse_args(argv)


_ONLY_USERS = ("The six other tables are empty, so the source was never generated (users written by the streaming "
               "job before the generator ran?): --reset deletes those users. ")


def _tables_with_rows(cur, schema: str) -> list[str]:
    filled = []
    for table in TABLES:
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {schema}.{table.name})")
        if cur.fetchone()[0]:
            filled.append(table.name)
    return filled


def _truncate(cur, schema: str) -> None:
    names = ", ".join(f"{schema}.{table.name}" for table in TABLES)
    cur.execute(f"TRUNCATE {names} RESTART IDENTITY")


@contextmanager
def _foreign_keys_deferred(cur, schema: str, table: Table, say: Callable[[str], None] = lambda line: None,
                           started: float = 0.0) -> Iterator[None]:
    """Drop the table's foreign keys for the COPY and add them back, validated, in the same transaction.

    Per-row foreign key checks are about two thirds of a large COPY's time; one validating join at the end
    is far cheaper. The definitions are read back from pg_constraint, so the schema ends as the DDL made it;
    if anything fails, the rollback restores them.
    """
    qualified = f"{schema}.{table.name}"
    cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname", (qualified,))
    constraints = cur.fetchall()
    for name, _ in constraints:
        cur.execute(f'ALTER TABLE {qualified} DROP CONSTRAINT "{name}"')
    yield
    if constraints and time.monotonic() - started >= PROGRESS_S:  # a load that long: its joins take a while too
        say(f"  {table.name:<20}checking {len(constraints)} foreign key(s) over the loaded rows")
    for name, definition in constraints:
        cur.execute(f'ALTER TABLE {qualified} ADD CONSTRAINT "{name}" {definition}')


def _progress(chunks: Iterator[bytes], table: Table, counter: list[int], say: Callable[[str], None],
              started: float) -> Iterator[bytes]:
    """`chunks`, with a line every PROGRESS_S (order_details at a big scale took minutes without one)."""
    told = started
    for chunk in chunks:
        yield chunk
        if (now := time.monotonic()) - told >= PROGRESS_S:
            say(f"  {table.name:<20}{counter[0]:>12,} rows so far {now - started:8.1f} s")
            told = now


def _copy_table(cur, schema: str, table: Table, rows, say: Callable[[str], None]) -> int:
    started, counter = time.monotonic(), [0]
    reader = ChunkReader(_progress(copy_chunks(table, rows, counter), table, counter, say, started))
    with _foreign_keys_deferred(cur, schema, table, say, started):
        try:
            cur.copy_expert(copy_sql(schema, table), reader, size=COPY_READ_SIZE)
        except psycopg2.Error:
            if reader.error is not None:  # the rows' generation failed (Ctrl-C): that, not the COPY psycopg2 ended
                raise reader.error from None
            raise
    # Explicit ids bypass the identity sequence: move it past them so later inserts do not collide.
    key = table.primary_key
    cur.execute(f"SELECT setval(pg_get_serial_sequence('{schema}.{table.name}', '{key}'), "
                f"COALESCE(max({key}), 0) + 1, false) FROM {schema}.{table.name}")
    say(f"  {table.name:<20}{counter[0]:>12,} rows {time.monotonic() - started:8.1f} s")
    return counter[0]


def load(settings: Settings, seed: int, scale: float = 1.0, reset: bool = False,
         say: Callable[[str], None] = print) -> dict[str, int] | None:
    """Generate and COPY all tables in one transaction; returns rows per table, or None when skipped."""
    apply_postgres_schema(settings, lock_timeout_s=LOCK_WAIT_S)  # a missing trigger or index locks out writers
    schema = settings.POSTGRES_SCHEMA
    with pg_connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute("SET LOCAL lock_timeout = %s", (f"{LOCK_WAIT_S}s",))
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('shopflow.datagen.' || %s))", (schema,))
        filled = _tables_with_rows(cur, schema)
        if filled and not reset:
            say(f"{PROG}: {schema} tables already hold data ({', '.join(filled)}); nothing generated. "
                + (_ONLY_USERS if filled == ["users"] else "")
                + "Run `.venv/bin/python -m datagen.postgres --reset` to truncate and regenerate them.")
            return None
        if reset:
            say(f"{PROG}: truncating the seven {schema} tables (waiting at most {LOCK_WAIT_S} s for each session "
                "using them)")
            _truncate(cur, schema)
        say(f"{PROG}: seed {seed}, scale {scale:g} -> {settings.POSTGRES_DB}.{schema}"
            + (" (after TRUNCATE)" if reset else ""))
        loaded = {table.name: _copy_table(cur, schema, table, rows, say)
                  for table, rows in generate(settings, seed, scale)}
        if sum(loaded.values()) >= 10_000_000:
            say(f"{PROG}: analyzing the tables and committing")
        for name in loaded:  # the planner's statistics now, not at autovacuum's next pass (the replication's
            cur.execute(f"ANALYZE {schema}.{name}")  # checksum reads them: `SourceSnapshot.in_key_order`)
        return loaded


def _say(line: str) -> None:
    print(line, flush=True)


def _server_message(exc: psycopg2.Error) -> str:
    """The server's message on one line, with its detail and hint: a reset refused for a table of yours that
    references one of ours names that table only in the detail."""
    diag = exc.diag
    parts = [diag.message_primary, diag.message_detail, diag.message_hint] if diag.message_primary else [str(exc)]
    return " ".join(" ".join(part.split()) for part in parts if part)


# per table: order_details at about --scale 6,000 of the default sizes, hours of loading and tens of GB; the generator
# holds every user's and product's dates in memory
MAX_ROWS = 100_000_000


def over_the_cap(settings: Settings, scale: float) -> tuple[str, int | None] | None:
    """(the largest table, its rows) when `scale` gives a table more than MAX_ROWS rows (rows None: the counts
    overflow, e.g. --scale 1e306); None when it is within the cap. `make bench` checks it before its servers start."""
    try:
        table, rows = Sizes.from_settings(settings, scale).largest()
    except OverflowError:
        return "every table", None
    return (table, rows) if rows > MAX_ROWS else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_or_exit(PROG)
    seed = settings.DATAGEN_SEED if args.seed is None else args.seed
    # before any TRUNCATE: a --reset held the seven tables while the generator ran out of memory
    if over := over_the_cap(settings, args.scale):
        table, rows = over
        gives = "overflows the row counts" if rows is None else f"gives {rows:,} rows of {table}"
        fail(PROG, f"--scale {args.scale:g} with the DATAGEN_* sizes {gives}; this generator makes at most "
                   f"{MAX_ROWS:,} rows per table", 2)
    started = time.monotonic()
    try:
        counts = load(settings, seed, args.scale, args.reset, say=_say)
    except KeyboardInterrupt:  # one transaction: rolled back when the connection closed
        fail(PROG, "interrupted: nothing was loaded (the load is one transaction)", 130)
    except psycopg2.errors.LockNotAvailable:
        holders = lock_holders(settings, [t.name for t in TABLES])
        fail(PROG, f"the {settings.POSTGRES_SCHEMA} tables stayed in use for {LOCK_WAIT_S} s, so nothing was "
                   f"changed: {holders}. End those sessions (or let them finish) and run it again.", EXIT_UNREACHABLE)
    except psycopg2.Error as exc:
        if exc.pgcode:  # the server answered: a full disk, a table of yours referencing one of ours, ... (rolled back)
            fail(PROG, f"Postgres refused the load, nothing was changed: {_server_message(exc)}", EXIT_UNREACHABLE)
        if not isinstance(exc, psycopg2.OperationalError):
            raise
        fail(PROG, f"cannot reach Postgres at {address(settings.POSTGRES_HOST, settings.POSTGRES_PORT)}"
                   f"/{settings.POSTGRES_DB} as {settings.POSTGRES_USER}: {str(exc).strip()}", EXIT_UNREACHABLE)
    if counts is not None:
        _say(f"{PROG}: loaded {sum(counts.values()):,} rows in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
