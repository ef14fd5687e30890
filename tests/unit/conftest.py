"""Fixtures of the unit tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def recorded_runs(monkeypatch) -> list:
    """The pipeline_runs rows a test's job wrote (RunRecords), captured instead of written: a job's main run by a unit
    test took MySQL from the settings, so each `make test` left failed rows (a master on a closed port, offsets gone
    back) in the live run log, which the dashboard of a stack beside the tests then showed as its latest runs."""
    from shopflow import runlog

    rows: list = []
    monkeypatch.setattr(runlog, "record_run", lambda _settings, record: rows.append(record))
    return rows
