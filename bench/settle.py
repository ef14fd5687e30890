"""Every measure starts from quiet servers.

A bulk load leaves InnoDB with hundreds of MB of dirty pages that MariaDB writes out slowly in the background (about
100 pages/s with the stock io capacity), and Postgres autovacuum wakes up after a generator run. Left alone, that
work lands inside whichever measure comes next and charges it for its predecessor's load (measured: 20,000 dirty
pages after the bound, still 17,400 thirty seconds later). So before each measure the harness has InnoDB flush
everything (dirty-page target 0 for a moment, then the server's own values again) and waits for autovacuum to end.

Before the first measure, `prewarm_innodb` writes every free page of InnoDB's buffer pool once. A freshly started
server hands out buffer pool pages that the process has never written, and on this VM (its balloon device reports
free memory to the host) the first write to each costs a page fault that the host serves: a full run that loaded into
such pages spent 20 % of mariadbd's CPU zeroing them (`clear_page_erms` in `perf`), against 5 % once the pool had
been written. Which measure paid that depended on how much of the pool the measures before it had used: on a freshly
started server, without this, the full run's attempts took 6.3-8.0 s (13.8 core-seconds on average), with it 6.5-7.2
s (12.3), the bound the same (bench/NOTES.md, 2026-12-05). A long-running server is past it: its loads reuse the
pages that dropped tables left in the pool.
"""
from __future__ import annotations

import time

from shopflow.config import Settings
from shopflow.db import mysql_connection, pg_connection

DIRTY_PAGES_LEFT = 200  # close enough to clean: a few MB
FLUSH_IO_CAPACITY = 20_000  # pages/s InnoDB may write while the harness waits (the stock 200 takes minutes)
POLL_S = 0.5
PREWARM_ROW_BYTES = 7000  # two rows per 16 KB page, stored in the page (no overflow pages)
_POOL_PAGES = ("SELECT CAST(variable_value AS UNSIGNED) FROM information_schema.global_status "
               "WHERE variable_name = 'INNODB_BUFFER_POOL_PAGES_{}'")


def _dirty_pages(settings: Settings) -> int:
    with mysql_connection(settings, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
        return int(cur.fetchone()[1])


def _autovacuum_workers(settings: Settings) -> int:
    with pg_connection(settings, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
        return int(cur.fetchone()[0])


def _wait(condition, deadline: float) -> bool:
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def flush_innodb(settings: Settings, deadline: float) -> bool:
    """Dirty pages written out (True), or the deadline passed first (False); the server's settings are restored."""
    from shopflow.stack.bootstrap import mariadb_root

    names = ("innodb_max_dirty_pages_pct", "innodb_max_dirty_pages_pct_lwm", "innodb_io_capacity_max",
             "innodb_io_capacity")  # restored in reverse: capacity may not exceed capacity_max
    saved = mariadb_root(settings, "SELECT " + ", ".join(f"@@GLOBAL.{name}" for name in names)).split()
    mariadb_root(settings, "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001; "
                           "SET GLOBAL innodb_max_dirty_pages_pct = 0; "
                           f"SET GLOBAL innodb_io_capacity_max = {FLUSH_IO_CAPACITY * 2}; "
                           f"SET GLOBAL innodb_io_capacity = {FLUSH_IO_CAPACITY};")
    try:
        return _wait(lambda: _dirty_pages(settings) <= DIRTY_PAGES_LEFT, deadline)
    finally:
        mariadb_root(settings, " ".join(f"SET GLOBAL {name} = {value};" for name, value in zip(names, saved)))


def settle(settings: Settings, timeout_s: float = 180.0) -> dict:
    """Waits (bounded) for quiet servers; returns what it waited for, for the measure's record."""
    start = time.monotonic()
    deadline = start + timeout_s
    flushed = flush_innodb(settings, deadline)
    vacuumed = _wait(lambda: _autovacuum_workers(settings) == 0, deadline)
    return {"settle_s": round(time.monotonic() - start, 2), "innodb_flushed": flushed, "autovacuum_done": vacuumed}


def prewarm_innodb(settings: Settings) -> dict:
    """Fills the buffer pool's free pages with a temporary table (no redo log, not flushed while the pool has room),
    most of them in one INSERT (into an empty table: InnoDB's bulk path), the rest in steps of 1 % of the pool down
    to the free pages InnoDB's page cleaner keeps (`innodb_lru_scan_depth`; below that it evicts instead), then drops
    it: every free page has been written once, and later loads take pages from the LRU list like they do on a
    long-running server. Returns the free pages it found and its seconds, for the results."""
    from shopflow.stack.bootstrap import mariadb_root

    start = time.monotonic()
    free, total, page_size, kept = (int(x) for x in mariadb_root(settings, (
        f"{_POOL_PAGES.format('FREE')}; {_POOL_PAGES.format('TOTAL')}; "
        "SELECT @@innodb_page_size; SELECT @@innodb_lru_scan_depth;")).split())
    per_page = max(1, page_size // (PREWARM_ROW_BYTES + 200))
    first, step = max(1, free * per_page * 9 // 10), max(1, total // 100)  # rows, pages
    mariadb_root(settings, f"""USE mysql;
CREATE TEMPORARY TABLE shopflow_prewarm (id INT PRIMARY KEY, pad TEXT) ENGINE=InnoDB;
INSERT INTO shopflow_prewarm SELECT seq, REPEAT('x', {PREWARM_ROW_BYTES}) FROM seq_1_to_{first};
DELIMITER //
BEGIN NOT ATOMIC
  DECLARE n INT DEFAULT {first};
  WHILE n < {first + total * per_page} AND ({_POOL_PAGES.format('FREE')}) > {kept + step} DO
    INSERT INTO shopflow_prewarm SELECT n + seq, REPEAT('x', {PREWARM_ROW_BYTES}) FROM seq_1_to_{step * per_page};
    SET n = n + {step * per_page};
  END WHILE;
END//
DELIMITER ;
DROP TEMPORARY TABLE shopflow_prewarm;""")
    return {"pages": free, "seconds": round(time.monotonic() - start, 2)}


def vacuum_source(settings: Settings, schema: str) -> float:
    """After the generator: VACUUM (FREEZE, ANALYZE) of the source tables, then a CHECKPOINT (as the superuser, over
    the local stack's socket; db_user may not). The first full read of freshly loaded rows sets their hint bits and
    so dirties every page again, an autovacuum of the new rows comes due within a minute, and the checkpointer
    writes the generator's pages: each landed inside whichever measure came first (the bound's first attempt, mostly,
    which best-of-2 then hid). Returns its seconds."""
    from postgresdb.models import TABLES
    from shopflow.stack.bootstrap import pg_superuser

    start = time.monotonic()
    conn = pg_superuser(settings, settings.POSTGRES_DB)  # autocommit: VACUUM runs outside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(f"VACUUM (FREEZE, ANALYZE) {', '.join(f'{schema}.{t.name}' for t in TABLES)}")
            cur.execute("CHECKPOINT")
    finally:
        conn.close()
    return round(time.monotonic() - start, 2)
