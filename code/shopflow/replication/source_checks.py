"""What a run checks of the source before it plans (`pipeline._plan`): the model's columns, their types and the
change-tracking triggers, in the run's snapshot. Each returns, per table, what it found wrong; tables without any
are left out."""
from __future__ import annotations

import logging

from postgresdb.ddl import legacy_names, pg_type_name, tracking_triggers
from postgresdb.models import CHANGE_TXID, TABLES, Table

from .source import SourceSnapshot
from .transform import replicated_columns

log = logging.getLogger("shopflow.replication")


def inspect(source: SourceSnapshot, oids: dict[str, int]) -> tuple[dict[tuple[int, str], str], dict[str, list[str]]]:
    """(`columns`, `untracked`); what the run goes on with but names in a warning is logged: columns outside the model
    (`unreplicated`) and rows from another cluster (`warn_foreign_txids`)."""
    found = columns(source, oids)
    for table, names in unreplicated(found, TABLES, oids).items():
        log.warning("source table %s has column(s) outside the model, not replicated: %s (postgresdb/models.py "
                    "lists what is)", table, ", ".join(names))
    warn_foreign_txids(source, [t for t in TABLES if (oids[t.name], CHANGE_TXID) in found])  # lacking: refused later
    return found, untracked(source, TABLES, oids)


def warn_foreign_txids(source: SourceSnapshot, tables: list[Table]) -> None:
    """Rows whose change_txid is at or past the snapshot's xmax cannot have been written in this cluster: a source
    moved with pg_dump/pg_restore (the data is restored before its triggers) keeps the old cluster's ids, and every
    incremental run then reads those rows again until this cluster's ids pass them (correct, and silently slow)."""
    if not tables:
        return
    for table, top in source.rows(" UNION ALL ".join(
            f"SELECT '{t.name}', (SELECT max({CHANGE_TXID}) FROM {source.schema}.{t.name})" for t in tables)):
        if top is not None and top >= source.xmax:
            log.warning("source table %s holds rows from another cluster (change_txid up to %d, this one's next "
                        "transaction id is %d): every incremental run reads them again until its ids pass theirs. "
                        "Stamp them anew: UPDATE %s.%s SET %s = 0 WHERE %s >= %d (the row trigger gives each its "
                        "own transaction's id)", table, top, source.xmax, source.schema, table, CHANGE_TXID,
                        CHANGE_TXID, source.xmax)


def columns(source: SourceSnapshot, oids: dict[str, int]) -> dict[tuple[int, str], str]:
    """Every column of the tables `oids` names: {(table oid, column): its type as `format_type` spells it}, in one
    catalog read for `missing_columns` and `retyped`."""
    return {(oid, name): kind for oid, name, kind in source.rows(
        "SELECT attrelid::bigint, attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = ANY(%s::oid[]) AND attnum > 0 AND NOT attisdropped", (list(oids.values()),))}


def missing_columns(found: dict[tuple[int, str], str], tables: list[Table], oids: dict[str, int]
                    ) -> dict[str, list[str]]:
    """Per table, the columns that replication reads by name (postgresdb/models.py, plus the change-tracking
    columns) and the source table lacks (`found`: `columns`); tables lacking none are left out."""
    lacking = {}
    for table in tables:
        wanted = [c.name for c in replicated_columns(table)] + [CHANGE_TXID]
        if missing := [name for name in wanted if (oids[table.name], name) not in found]:
            lacking[table.name] = missing
    return lacking


def differences(found: dict[tuple[int, str], str], tables: list[Table], oids: dict[str, int]
                ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(`missing_columns`, `retyped`)."""
    return missing_columns(found, tables, oids), retyped(found, tables, oids)


def unreplicated(found: dict[tuple[int, str], str], tables: list[Table], oids: dict[str, int]
                 ) -> dict[str, list[str]]:
    """Per table, the source's columns that replication does not read (added by hand: they were left out without a
    word); tables without any are left out."""
    extra: dict[str, list[str]] = {}
    for table in tables:
        known = {c.name for c in replicated_columns(table)} | {CHANGE_TXID}
        if names := sorted(name for oid, name in found if oid == oids[table.name] and name not in known):
            extra[table.name] = names
    return extra


def retyped(found: dict[tuple[int, str], str], tables: list[Table], oids: dict[str, int]) -> dict[str, list[str]]:
    """Per table, its replicated columns whose type is not the model's (a character type of another length
    passes): the checksum's text of the column changes with its type (a timestamp without time zone, another
    scale), so every whole-table check failed and reloaded the table, blaming the data. Tables without any are
    left out; missing columns are `missing_columns`'."""
    differ = {}
    for table in tables:
        for column in replicated_columns(table):
            kind, model = found.get((oids[table.name], column.name)), pg_type_name(column)
            if kind not in (None, model) and not (_character(kind) and _character(model)):
                differ.setdefault(table.name, []).append(f"{column.name} is {kind}, the model's {model}")
    return differ


def untracked(source: SourceSnapshot, tables: list[Table], oids: dict[str, int]) -> dict[str, list[str]]:
    """Per table, its change-tracking triggers that are missing or not enabled ALWAYS (`ALTER TABLE … DISABLE
    TRIGGER`, left on after a bulk fix): the changes made meanwhile carry no new change_txid, and incremental runs
    missed them until the whole-table check. Tables with all of them are left out."""
    enabled = set(source.rows("SELECT tgrelid::bigint, tgname::text FROM pg_trigger WHERE tgrelid = ANY(%s::oid[]) "
                              "AND tgenabled = 'A'", (list(oids.values()),)))
    off = {}
    for table in tables:  # a source not yet given a trigger's new name tracks with the old one
        oid, older = oids[table.name], legacy_names(table)
        if missing := [n for n in tracking_triggers(table)
                       if (oid, n) not in enabled and (oid, older.get(n)) not in enabled]:
            off[table.name] = missing
    return off


def _character(kind: str) -> bool:
    return kind == "text" or kind.startswith("character varying")
