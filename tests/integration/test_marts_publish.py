"""The marts published, and recorded so, though what follows the publishing RENAME fails."""
from __future__ import annotations

import mysql.connector
import pytest
from test_marts_build import published, replica, tables  # noqa: F401  (module fixtures: a replica, marts built)
from test_marts_replica import execute

from shopflow.marts.build import JOB, build_marts

pytestmark = pytest.mark.integration
__all__ = ["published", "replica"]


class _DropFails:
    """The build's cursor, whose DROP of the replaced marts (__old) after the publishing RENAME fails as a lost
    connection would."""

    def __init__(self, cursor):
        self.cursor, self.renamed = cursor, False

    def execute(self, statement, *args):
        self.renamed = self.renamed or statement.startswith("RENAME TABLE")
        if self.renamed and statement.startswith("DROP TABLE IF EXISTS") and "__old" in statement:
            raise mysql.connector.errors.OperationalError(msg="Lost connection to MySQL server during query",
                                                          errno=2013)
        return self.cursor.execute(statement, *args)

    def __getattr__(self, name):
        return getattr(self.cursor, name)


def test_marts_published_are_recorded_published_though_the_old_ones_were_not_dropped(spark, replica, published,
                                                                                     monkeypatch, caplog):
    """The DROP of the replaced marts came after the RENAME, inside the build's failure handling: the new marts
    were live, but every mart's row said "not published" and the run failed (the dashboard warned of it)."""
    from shopflow.marts import store as store_module

    original = store_module.MartStore.__init__
    monkeypatch.setattr(store_module.MartStore, "__init__",
                        lambda self, settings, cursor: original(self, settings, _DropFails(cursor)))
    results = build_marts(spark, replica, run_id="it-old-kept")
    assert "the previous ones (__old) were not dropped" in caplog.text
    runs = execute(replica, "SELECT status FROM pipeline_runs WHERE job = %s AND detail LIKE %s",
                   params=(JOB, "%it-old-kept%"))
    assert runs and {r[0] for r in runs} == {"ok"}
    assert {r.mart.name for r in results} <= set(tables(replica))
    monkeypatch.undo()
    build_marts(spark, replica, run_id="it-old-dropped")  # the next build drops the leftovers
    assert not [t for t in tables(replica) if t.endswith("__old")]
