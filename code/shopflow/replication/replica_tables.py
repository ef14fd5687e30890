"""The replica's tables made to match postgresdb's models before a run: created when missing, checked when present."""
from __future__ import annotations

import re

import postgresdb
import postgresdb.ddl
from postgresdb.models import TABLES

from . import mysql_sql as sql
from .transform import replicated_columns


def _columns(cur) -> tuple[dict[str, list[str]], dict[tuple[str, str], str | None], dict[tuple[str, str], tuple]]:
    """Each table of the replica database with its column names, in order; each (table, column)'s collation; and
    its (type, nullable, character set)."""
    cur.execute("SELECT table_name, column_name, collation_name, column_type, is_nullable = 'YES', character_set_name "
                "FROM information_schema.columns WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position")
    columns: dict[str, list[str]] = {}
    collations, types = {}, {}
    for table, column, collation, kind, nullable, charset in cur.fetchall():
        columns.setdefault(table.lower(), []).append(column.lower())
        collations[table.lower(), column.lower()] = collation
        types[table.lower(), column.lower()] = (_DISPLAY_WIDTH.sub(r"\1", kind.lower()), bool(nullable), charset)
    return columns, collations, types


_DISPLAY_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint)\(\d+\)")  # MariaDB's int(11), MySQL 8's int


def retyped(types: dict[tuple[str, str], tuple]) -> dict[str, list[str]]:
    """Per target table, its replicated columns whose type, nullability or character set is not the model's (altered
    in the replica by hand). The staging tables keep the model's, so loads went on, but the checksum's text changed
    with the type (`12.5000` at a scale of 4), and every whole-table check and every full reload after it failed
    for good, blaming the data; another character set refused rows (1366) at every run."""
    differ: dict[str, list[str]] = {}
    for table in TABLES:
        for column in replicated_columns(table):
            if (found := types.get((table.name, column.name))) is None:  # lacking: reported apart
                continue
            model = postgresdb.ddl.mysql_type(column).lower()
            charset = "utf8mb4" if model.startswith(("varchar", "longtext", "text")) else None
            for differs, what in ((found[0] != model, f"{found[0]}, the model's {model}"),
                                  (found[1] != column.nullable, f"{'NULL' if found[1] else 'NOT NULL'}, the model's "
                                                                f"{'NULL' if column.nullable else 'NOT NULL'}"),
                                  (found[2] != charset, f"in {found[2]}, the model's {charset}")):
                if differs:
                    differ.setdefault(table.name, []).append(f"{column.name} is {what}")
    return differ


def model_differences(cur, tables: set[str]) -> dict[str, list[str]]:
    """Per replica table among `tables` (those present), its replicated columns lacking or not of the model's type,
    nullability or character set (changed by hand since the last replication run, which refuses them too)."""
    existing, _, types = _columns(cur)
    changed, differ = retyped(types), {}
    for table in (t for t in TABLES if t.name in tables and t.name in existing):
        found = [f"{c.name} is missing" for c in replicated_columns(table) if c.name not in existing[table.name]]
        if found := found + changed.get(table.name, []):
            differ[table.name] = found
    return differ


def _stats_recalc_off(cur) -> None:
    """Tables made before their DDL said STATS_AUTO_RECALC=0 get it (an instant ALTER); see postgresdb/ddl.py."""
    names = [t.name for t in TABLES] + [sql.stage_name(t) for t in TABLES]
    cur.execute("SELECT table_name, create_options FROM information_schema.tables "
                f"WHERE table_schema = DATABASE() AND table_name IN ({', '.join(['%s'] * len(names))})", tuple(names))
    for name, options in cur.fetchall():
        if "stats_auto_recalc=0" not in (options or "").lower():
            cur.execute(f"ALTER TABLE `{name}` STATS_AUTO_RECALC=0")


def _exact_keys(cur, collation: str | None, found: dict[tuple[str, str], str | None]) -> None:
    """Unique text columns made before their DDL named `collation` (trailing spaces ignored: see postgresdb/ddl.py)
    get it; the ALTER rebuilds the table once. `found`: the collations before this run (tables made now have it)."""
    if collation is None:
        return
    for table in TABLES:
        for column in postgresdb.ddl.unique_text_columns(table):
            for name in (table.name, sql.stage_name(table)):
                if found.get((name, column.name), collation) != collation:
                    cur.execute(f"ALTER TABLE `{name}` MODIFY `{column.name}` "
                                f"{postgresdb.ddl.mysql_column_type(column, collation)}")


def ensure_tables(cur) -> tuple[dict[str, list[str]], list[str], dict[str, list[str]]]:
    """Target tables from postgresdb (FK order), their staging copies (no FKs; remade when the model changed, as
    they hold nothing between runs), state and rejects. A target table made here loses its stored state, so it is
    loaded in full. Returns, per target table lacking columns of the model, those columns (someone changed the
    replica, or the model changed without it); the target tables it made; and `retyped`'s columns."""
    (existing, collations, types), lacking = _columns(cur), {}
    collation = postgresdb.ddl.key_collation(cur)
    for table in TABLES:
        wanted, stage = [c.name for c in replicated_columns(table)], sql.stage_name(table)
        if stage in existing and existing[stage] != wanted:
            cur.execute(f"DROP TABLE `{stage}`")
        if missing := [c for c in wanted if table.name in existing and c not in existing[table.name]]:
            lacking[table.name] = missing
        cur.execute(postgresdb.mysql_table_ddl(table, key_collation=collation))
        cur.execute(postgresdb.mysql_table_ddl(table, name=stage, key_collation=collation))
    _stats_recalc_off(cur)
    _exact_keys(cur, collation, collations)
    cur.execute(sql.STATE_DDL)
    cur.execute(sql.REJECTS_DDL)
    for column, statement in sql.STATE_MIGRATIONS.items():
        if sql.STATE_TABLE in existing and column not in existing[sql.STATE_TABLE]:
            cur.execute(statement)
    made = [t.name for t in TABLES if t.name not in existing]
    if made and sql.STATE_TABLE in existing:
        cur.execute(f"DELETE FROM {sql.STATE_TABLE} WHERE table_name IN ({', '.join(['%s'] * len(made))})", made)
    return lacking, made, retyped(types)
