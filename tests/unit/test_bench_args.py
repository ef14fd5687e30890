"""`bench.run` arguments and the chart of a run where nothing completed."""
from __future__ import annotations

import pytest

from bench import report
from bench.run import MEASURES, parse_args


def test_skipping_every_measure_is_an_error_not_an_empty_run(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--skip", ",".join(MEASURES)])
    assert exit_info.value.code == 2 and "nothing to measure" in capsys.readouterr().err
    assert parse_args(["--skip", ",".join(MEASURES[1:])]).skip == set(MEASURES[1:])  # one left is fine


def test_the_chart_of_a_run_without_measures_is_written(tmp_path):
    path = tmp_path / "latest.png"
    report.chart([], path, "every measure failed")
    assert path.stat().st_size > 1000
