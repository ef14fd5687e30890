"""A merge whose rows refer to a parent row the replica lacks (deleted there by hand, or a table emptied there with
foreign key checks off: the source has the row, or the source's own key would have refused the change).

MySQL refused the merge (1452) at every run: phase B, which would find the parent short of rows and mark it for a
full reload, comes after the merges, so every retry failed the same way, with a traceback, until a full reload by
hand. Now the parents lacking rows are marked for a full reload in the same place (their watermark and checksum
cleared), and the run fails with one line: the retry reloads them, then merges the child."""
from __future__ import annotations

import mysql.connector
from mysql.connector import errorcode

from postgresdb.models import Table

from . import mysql_sql as sql
from .results import ReplicationError
from .target import Replica, UpsertCounts


def upserted(replica: Replica, table: Table, staged: int) -> UpsertCounts:
    """`replica.upsert`, with a missing parent row turned into a reload of its table (see above)."""
    try:
        return replica.upsert(table, staged)
    except mysql.connector.IntegrityError as error:
        if error.errno != errorcode.ER_NO_REFERENCED_ROW_2:
            raise
        replica.rollback()
        lacking = missing_parents(replica, table)
        if not lacking:
            raise
    for parent in lacking:
        replica.cur.execute(f"UPDATE {sql.STATE_TABLE} SET watermark = NULL, checksum = NULL WHERE table_name = %s",
                            (parent,))
    replica.commit()
    raise ReplicationError(
        f"{table.name}: its changed rows refer to rows the replica's {' and '.join(lacking)} lack(s) "
        f"({'; '.join(f'{column} {keys}' for column, keys in lacking.values())}), which the source has: deleted in "
        f"the replica by hand? {', '.join(lacking)} marked for a full reload on the next run")


def missing_parents(replica: Replica, table: Table, shown: int = 3) -> dict[str, tuple[str, list]]:
    """{parent table: (column, up to `shown` of its values in the stage that the parent lacks)}."""
    lacking = {}
    for column in table.foreign_keys:
        parent, key = column.references.split(".")
        if parent == table.name:  # merged with foreign key checks off (mysql_sql.references_itself)
            continue
        replica.cur.execute(f"SELECT DISTINCT s.{column.name} FROM {sql.stage_name(table)} s LEFT JOIN {parent} p "
                            f"ON p.{key} = s.{column.name} WHERE s.{column.name} IS NOT NULL AND p.{key} IS NULL "
                            f"ORDER BY s.{column.name} LIMIT {int(shown)}")
        if keys := [row[0] for row in replica.cur.fetchall()]:
            lacking[parent] = (column.name, keys)
    return lacking
