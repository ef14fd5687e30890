"""Source DDL that locks a table only when it has something to change there. `CREATE INDEX IF NOT EXISTS` and
`CREATE OR REPLACE TRIGGER` lock their table before they look, and a lock request waits for a client's open
transaction while every writer of the table queues behind it: applied at each `make up` to a live source (the stream
writing users), they stalled its writers up to the 15 s lock wait, or ended in a deadlock. Each statement here reads
the catalog first, which takes no lock, and runs only when what it makes is missing or differs."""
from __future__ import annotations

import hashlib


def unless(present: str, statements: list[str]) -> str:
    """A DO block running `statements` unless the SQL condition `present` holds."""
    body = "\n        ".join(f"{statement};" for statement in statements)
    return f"DO $$ BEGIN\n    IF NOT ({present}) THEN\n        {body}\n    END IF;\nEND $$"


def index(schema: str, table: str, columns: tuple[str, ...], name: str | None = None) -> str:
    name = name or f"ix_{table}_{'_'.join(columns)}"
    return unless(f"to_regclass('{schema}.{name}') IS NOT NULL",
                  [f"CREATE INDEX IF NOT EXISTS {name} ON {schema}.{table} ({', '.join(columns)})"])


def trigger(relation: str, name: str, definition: str) -> str:
    """The trigger enabled ALWAYS, its comment a digest of the definition it was made from and of the one Postgres
    holds (`pg_get_triggerdef`): one missing, disabled (`ALTER TABLE … DISABLE TRIGGER`, left after a bulk fix), made
    from another definition (an older version) or replaced since (`CREATE OR REPLACE TRIGGER` keeps the comment) is
    made again."""
    mark = "shopflow " + hashlib.sha256(definition.encode()).hexdigest()[:16]
    held = "md5(pg_get_triggerdef(oid))"
    this = _trigger_row(relation, name)
    return unless(f"EXISTS (SELECT 1 FROM {this} AND tgenabled = 'A' "
                  f"AND obj_description(oid, 'pg_trigger') = '{mark} ' || {held})",
                  [f"CREATE OR REPLACE TRIGGER {name} {definition}",
                   f"ALTER TABLE {relation} ENABLE ALWAYS TRIGGER {name}",
                   f"EXECUTE format('COMMENT ON TRIGGER {name} ON {relation} IS %L', "
                   f"(SELECT '{mark} ' || {held} FROM {this}))"])


def dropped_trigger(relation: str, name: str) -> str:
    """The trigger dropped, when there is one of that name (a name an older version used)."""
    return unless(f"NOT EXISTS (SELECT 1 FROM {_trigger_row(relation, name)})", [f"DROP TRIGGER {name} ON {relation}"])


def _trigger_row(relation: str, name: str) -> str:
    return f"pg_trigger WHERE tgrelid = '{relation}'::regclass AND tgname = '{name}'"


def constraint(relation: str, name: str, definition: str) -> str:
    return unless(f"EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = '{relation}'::regclass "
                  f"AND conname = '{name}')", [f"ALTER TABLE {relation} ADD CONSTRAINT {name} {definition}"])
