"""The Pipeline health page over made-up query results (no server): a run row left `running` past the task
timeout is pointed out, and product labels stay one bar per product."""
from __future__ import annotations

import pandas as pd
from test_dashboard_pages import fake_mysql, page_over  # noqa: F401 (fake_mysql: a fixture)

from shopflow.dashboard import charts
from shopflow.dashboard.queries import RUN_HISTORY_COLUMNS


def test_a_run_left_running_past_the_task_timeout_is_pointed_out(monkeypatch, fake_mysql):
    """A run killed outright (kill -9, the OOM killer) leaves its row `running`: the table showed it as under way,
    with no age, for as long as no later run wrote it as failed."""
    runs = pd.DataFrame({"job": ["build_marts", "replicate_postgres_to_mysql"], "status": ["running", "running"],
                         "running_s": [120, 2 * 3600 + 60]})
    fake_mysql()  # every other query: no rows, no server
    app = page_over(monkeypatch, "pipeline", last_runs=runs, run_history=pd.DataFrame(columns=RUN_HISTORY_COLUMNS))
    assert not app.exception
    warnings = [w.value for w in app.warning if "shown `running`" in w.value]
    assert warnings == ["replicate_postgres_to_mysql has shown `running` for 2 h, longer than Airflow lets its "
                        "task run (1 hour): its process most likely ended without writing its end (killed, or MySQL "
                        "unreachable then). Its next run writes it as failed."], warnings


def test_products_alike_in_their_first_40_characters_keep_a_bar_each():
    names = pd.Series(["Samsung Galaxy S24 Ultra 512GB Titanium Black",
                       "Samsung Galaxy S24 Ultra 512GB Titanium Gray", "Kettle", "Kettle"])
    labels = charts._labels(names, pd.Series([7, 8, 9, 10]))
    assert list(labels) == ["Samsung Galaxy S24 Ultra 512GB Titanium… #7",
                            "Samsung Galaxy S24 Ultra 512GB Titanium… #8", "Kettle #9", "Kettle #10"]
    assert list(charts._labels(pd.Series(["Lamp"]), pd.Series([1]))) == ["Lamp"]
