"""SQL text for the replica, valid on MySQL 8 and MariaDB 10.11 (pure string builders, unit-tested)."""
from __future__ import annotations

from postgresdb.models import Column, Table

from .transform import replicated_columns

STATE_TABLE = "replication_state"
REJECTS_TABLE = "replication_rejects"

STATE_DDL = f"""CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
    table_name VARCHAR(64) NOT NULL PRIMARY KEY,
    source_oid BIGINT NULL,
    source_system_id BIGINT NULL,
    source_timeline BIGINT NULL,
    watermark BIGINT NULL,
    rows_total BIGINT NULL,
    checksum VARCHAR(64) NULL,
    loaded_at DATETIME(6) NOT NULL,
    verified_at DATETIME(6) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""

REJECTS_DDL = f"""CREATE TABLE IF NOT EXISTS {REJECTS_TABLE} (
    reject_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    rejected_at DATETIME(6) NOT NULL,
    table_name VARCHAR(64) NOT NULL,
    row_key VARCHAR(64) NOT NULL,
    reason TEXT NOT NULL,
    KEY ix_{REJECTS_TABLE}_table (table_name, rejected_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""


def stage_name(table: Table) -> str:
    return f"stage_{table.name}"


def _names(table: Table) -> list[str]:
    return [f"`{c.name}`" for c in replicated_columns(table)]


def references_itself(table: Table) -> bool:
    """InnoDB checks a foreign key row by row within a statement: rows of a self-referencing table can meet a
    parent that the same statement inserts or deletes later."""
    return table.name in table.parents


def _same(column: Column) -> str:
    name = f"`{column.name}`"
    # Text compares as bytes: utf8mb4_bin pads spaces, so 'a' = 'a ' would hide a real change.
    if column.kind in ("text", "longtext"):
        return f"CAST(t.{name} AS BINARY) <=> CAST(s.{name} AS BINARY)"
    return f"t.{name} <=> s.{name}"


def changed_rows_sql(table: Table) -> str:
    """(staged rows already in the target, of which differ in some column) in one pass over the join."""
    same = " AND ".join(_same(c) for c in replicated_columns(table))
    key = f"`{table.primary_key}`"
    return (f"SELECT COUNT(t.{key}), COALESCE(SUM(CASE WHEN {same} THEN 0 ELSE 1 END), 0) "
            f"FROM `{stage_name(table)}` s JOIN `{table.name}` t ON t.{key} = s.{key}")


# A key written after a NUL byte: a value no source row can hold (Postgres text cannot contain NUL), unique per key.
SET_ASIDE_LENGTH = 1 + 20  # NUL + a BIGINT key's digits and sign


def unique_conflicts_sql(table: Table) -> list[tuple[str, str]]:
    """Per unique column: (set aside the value of target rows holding a value the snapshot gives to another key and
    whose own key is not staged = rows deleted in the source, which phase B deletes after their children; delete
    the remaining holders = staged rows the upsert re-inserts in the same transaction).
    Needed when two rows swap a unique value or a deleted row's value is reused: a plain upsert would fail, or
    update the wrong row. Setting the value aside instead of deleting the row keeps the replica's foreign keys
    whole if the run fails before phase B deletes the row's children."""
    key, statements = f"`{table.primary_key}`", []
    for column in (c for c in table.columns if c.unique):
        if column.kind != "text" or (column.length or 0) < SET_ASIDE_LENGTH:
            raise ValueError(f"{table.name}.{column.name}: a unique column must be text of at least "
                             f"{SET_ASIDE_LENGTH} characters to be set aside (see unique_conflicts_sql)")
        name = f"`{column.name}`"
        conflict = f"`{table.name}` t JOIN `{stage_name(table)}` s ON t.{name} = s.{name} AND t.{key} <> s.{key}"
        gone = (f"UPDATE {conflict} LEFT JOIN `{stage_name(table)}` kept ON kept.{key} = t.{key} "
                f"SET t.{name} = CONCAT(CHAR(0 USING utf8mb4), t.{key}) WHERE kept.{key} IS NULL")
        statements.append((gone, f"DELETE t FROM {conflict}"))
    return statements


def upsert_sql(table: Table) -> str:
    """One INSERT ... SELECT ... ON DUPLICATE KEY UPDATE from the staging table (row alias syntax and VALUES()
    differ between MySQL 8.0.20+ and MariaDB; a reference to the SELECT's column works on both)."""
    names = _names(table)
    updates = ", ".join(f"{n} = s.{n}" for n in names if n != f"`{table.primary_key}`")
    return (f"INSERT INTO `{table.name}` ({', '.join(names)}) "
            f"SELECT {', '.join('s.' + n for n in names)} FROM `{stage_name(table)}` s "
            f"ON DUPLICATE KEY UPDATE {updates}")


def delete_missing_sql(table: Table) -> str:
    """Full reload: every target row whose key is not in the (complete) staging table."""
    key = f"`{table.primary_key}`"
    return (f"DELETE t FROM `{table.name}` t LEFT JOIN `{stage_name(table)}` s ON s.{key} = t.{key} "
            f"WHERE s.{key} IS NULL")


def delete_keys_sql(table: Table, count: int) -> str:
    return f"DELETE FROM `{table.name}`{in_keys_filter(table, count)}"


# Added after the first release: replicas created before it get the column on their next run.
STATE_MIGRATIONS = {"verified_at": f"ALTER TABLE {STATE_TABLE} ADD COLUMN verified_at DATETIME(6) NULL",
                    "source_system_id": f"ALTER TABLE {STATE_TABLE} ADD COLUMN source_system_id BIGINT NULL",
                    "source_timeline": f"ALTER TABLE {STATE_TABLE} ADD COLUMN source_timeline BIGINT NULL"}


def save_state_sql() -> str:
    # REPLACE: one statement for insert-or-overwrite that needs neither VALUES() nor a row alias.
    return (f"REPLACE INTO {STATE_TABLE} (table_name, source_oid, source_system_id, source_timeline, watermark, "
            "rows_total, checksum, loaded_at, verified_at) VALUES (%s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6), %s)")


def in_stage_filter(table: Table) -> str:
    """The target rows whose key is staged (this run's changed rows)."""
    key = f"`{table.primary_key}`"
    return f" WHERE {key} IN (SELECT {key} FROM `{stage_name(table)}`)"


def in_keys_filter(table: Table, count: int) -> str:
    return f" WHERE `{table.primary_key}` IN ({', '.join(['%s'] * count)})"
