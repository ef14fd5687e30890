"""Every page run headlessly (streamlit.testing.AppTest) over a fake MySQL: missing tables, empty tables and an
unreachable server each give a clear message, never an exception."""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import mysql.connector
import pytest
from mysql.connector import errorcode
from streamlit.testing.v1 import AppTest

from shopflow.dashboard import data, queries
from shopflow.dashboard.pages import PAGES

APP = Path(__file__).resolve().parents[2] / "code" / "shopflow" / "dashboard" / "app.py"


def run_page(path):
    from shopflow.dashboard.pages import PAGES

    {p: page for p, _, page in PAGES}[path]()


class FakeCursor:
    """Answers every query with no rows, or raises `error`; records the SQL it was given."""

    def __init__(self, error, log):
        self.error, self.log, self.column_names = error, log, ()

    def execute(self, sql, params=()):
        self.log.append(sql)
        if self.error:
            raise self.error(sql)

    def fetchall(self):
        return []

    def close(self):
        pass


@pytest.fixture
def fake_mysql(monkeypatch):
    """Sets the fake server's behaviour: `fake_mysql(error_for_sql)`; returns the executed SQL and the logins."""
    log, logins = [], []

    def install(error=None):
        @contextmanager
        def connection(settings, autocommit=False, **overrides):
            logins.append((overrides.get("user"), autocommit))
            yield type("Conn", (), {"cursor": lambda self: FakeCursor(error, log)})()

        monkeypatch.setattr(queries, "mysql_connection", connection)
        return log, logins

    data.load.clear()
    yield install
    data.load.clear()


def missing_table(sql):
    table = re.search(r"\b(mart_\w+|pipeline_runs|quality_results)\b", sql)[1]
    return mysql.connector.ProgrammingError(msg=f"Table 'mysql_db.{table}' doesn't exist",
                                            errno=errorcode.ER_NO_SUCH_TABLE)


def page_test(path) -> AppTest:
    app = AppTest.from_function(run_page, args=(path,), default_timeout=60)
    app.run()
    return app


@pytest.mark.parametrize("path, title", [(p, t) for p, t, _ in PAGES])
def test_a_missing_table_is_named_in_a_message(fake_mysql, settings, path, title):
    log, logins = fake_mysql(missing_table)
    app = page_test(path)
    assert not app.exception
    assert [t.value for t in app.title] == [title]
    infos = " ".join(i.value for i in app.info)
    assert re.search(r"the table `(mart_\w+|pipeline_runs|quality_results)` does not exist", infos), infos
    assert log and all(sql.lstrip().upper().startswith(("SELECT", "WITH")) for sql in log)
    assert set(logins) == {(settings.MARTS_READER_USER, True)}  # only ever the read-only account


@pytest.mark.parametrize("path, title", [(p, t) for p, t, _ in PAGES])
def test_an_empty_table_says_so(fake_mysql, path, title):
    fake_mysql()
    app = page_test(path)
    assert not app.exception
    assert [t.value for t in app.title] == [title]
    assert any("the table is empty" in i.value for i in app.info)


def test_an_unreachable_server_is_one_error_line_not_a_traceback(fake_mysql):
    refused = mysql.connector.errors.InterfaceError(msg="Can't connect to MySQL server on '127.0.0.1:3306'",
                                                    errno=2003)
    fake_mysql(lambda sql: refused)
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    assert not app.exception
    assert [t.value for t in app.title] == ["Overview"]
    (error,) = app.error
    assert "did not answer" in error.value and "Can't connect" in error.value


def test_the_cache_is_short_and_the_query_layer_is_not_cached():
    assert 0 < data.CACHE_TTL_S <= 60
    assert not hasattr(queries.overview, "clear")  # plain functions: the app layer caches


def page_over(monkeypatch, path, **frames) -> AppTest:
    """The page with these queries answering these frames, every other query with no rows (no server)."""
    import pandas as pd

    for name in ("last_run", *frames):
        monkeypatch.setattr(queries, name, lambda *_args, _frame=frames.get(name, pd.DataFrame()): queries.Result(
            _frame))
    data.load.clear()
    try:
        return page_test(path)
    finally:
        data.load.clear()


def test_the_loyalty_table_lists_the_tiers_in_tier_order_like_the_charts(monkeypatch):
    import pandas as pd

    app = page_over(monkeypatch, "loyalty", top_loyalty_users=pd.DataFrame(), loyalty_tiers=pd.DataFrame({
        "loyalty_status": ["Bronze", "Gold", "Silver"], "users": [3, 1, 2], "total_points": [30, 10, 20],
        "average_points": [10.0, 10.0, 10.0]}))
    assert not app.exception
    assert list(app.dataframe[0].value["loyalty_status"]) == ["Gold", "Silver", "Bronze"]


def test_products_without_any_review_say_so_instead_of_an_empty_table(monkeypatch):
    """The mart holds products but none is rated: the ranked lists are empty, the mart is not."""
    import pandas as pd

    app = page_over(monkeypatch, "products", rating_summary=pd.DataFrame(
        {"products": [3], "rated": [0], "unrated": [3], "reviews": [0], "average_rating": [None]}))
    assert not app.exception
    infos = [i.value for i in app.info]
    assert infos == ["No product has a review yet: nothing to rank."], infos


@pytest.mark.parametrize("schedule, stale_s", [
    ("*/15 * * * *", 3_600), ("@hourly", 7_200), ("@daily", 2 * 86_400), ("0 */2 * * *", 4 * 3_600),
    ("0 9 * * 1-5", 6 * 86_400),  # Friday 09:00 to Monday 09:00 is the longest gap
    ("@continuous", 3_600), ("@once", None)])
def test_replication_counts_as_stale_after_two_of_its_schedules_intervals(schedule, stale_s):
    from shopflow.dashboard.pages import replication_stale_s

    assert replication_stale_s(schedule) == stale_s
