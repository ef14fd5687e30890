"""The pages' build line: when the marts shown were published, and a warning only when a build failed after it."""
from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from shopflow.dashboard import data, queries


def _page():
    from shopflow.dashboard.pages import _build_time

    _build_time()


def _row(status, started, finished):
    return pd.DataFrame([{"job": "build_marts", "status": status, "started_at": datetime(2026, 1, 1, *started),
                          "finished_at": finished and datetime(2026, 1, 1, *finished), "detail": "LockBusy: …",
                          "seconds": 1.0, "age_seconds": 60}])


@pytest.mark.parametrize("failed, warned", [
    (((10, 0, 20), (10, 1, 20)), False),  # waited for the lock while 10:00 published at 10:02, then gave up
    (((10, 3, 0), (10, 3, 30)), True),  # started and failed after the marts shown were published
    (((10, 3, 0), None), True),  # still running
])
def test_a_failed_build_is_warned_of_only_when_it_ended_after_the_marts_shown(monkeypatch, failed, warned):
    ok = _row("ok", (10, 0, 0), (10, 2, 0))
    latest = _row("running" if failed[1] is None else "failed", *failed)
    monkeypatch.setattr(queries, "last_run", lambda settings, job, status=None: queries.Result(
        ok if status == "ok" else latest))
    data.load.clear()
    app = AppTest.from_function(_page, default_timeout=30)
    app.run()
    assert not app.exception
    assert [c.value for c in app.caption] == ["Marts built 2026-01-01 10:02:00 UTC (1 min ago)."]
    assert bool(app.warning) == warned
