"""`bench.run` arguments and the chart of a run where nothing completed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import report
from bench.args import MEASURES, parse_args


def test_skipping_every_measure_is_an_error_not_an_empty_run(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--skip", ",".join(MEASURES)])
    assert exit_info.value.code == 2 and "nothing to measure" in capsys.readouterr().err
    assert parse_args(["--skip", ",".join(MEASURES[1:])]).skip == set(MEASURES[1:])  # one left is fine


@pytest.mark.parametrize("argv, message", [
    (["--scale", "0"], "--scale: must be > 0"),
    (["--scale", "x"], "invalid float value"),
    (["--repeat", "0"], "--repeat: must be >= 1"),
    (["--stream-events", "0"], "--stream-events: must be >= 1"),
    (["--stream-rate", "-5"], "--stream-rate: must be > 0"),
    (["--stream-seconds", "0"], "--stream-seconds: must be > 0"),
    (["--stream-warmup", "-1"], "--stream-warmup: must be >= 0"),
    (["--scale", "nan"], "--scale: must be a finite number"),  # nan passed every comparison, and failed later
    (["--stream-seconds", "inf"], "--stream-seconds: must be a finite number"),
    (["--source-schema", "x; DROP SCHEMA source"], "want lower-case letters"),  # written into DDL as is
    (["--target-prefix", "prod"], "starting with 'test_'"),  # only test_* databases are ever dropped
    # datagen's and the event generator's own limits: they refused after the servers had started, with a traceback
    (["--scale", "7000"], "order_details would get 115,500,000 rows; the generator makes at most 100,000,000"),
    (["--scale", "1e306"], "every table would get too many rows"),
    (["--stream-rate", "0.00001"], "the event generator sends at least one event a day"),
    (["--stream-rate", "0.5", "--stream-seconds", "1"], "sends no event"),
])
def test_bad_arguments_are_refused_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--source-schema", "source"], ["--source-schema", "shop"],
                                  ["--source-schema", "shop", "--no-generate"]])
def test_the_live_source_schema_is_refused_with_or_without_generating(argv, capsys):
    """The bench regenerates its source and changes 1 % of it before each incremental run, so neither `source` nor
    the stack's POSTGRES_SCHEMA (here `shop`) may be it, even with --no-generate."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv, live_schema="shop")
    assert exit_info.value.code == 2 and "that is the live source (POSTGRES_SCHEMA)" in capsys.readouterr().err


def test_limits_of_a_step_not_run_are_not_checked():
    assert parse_args(["--scale", "7000", "--no-generate"]).scale == 7000  # the source is reused as it is
    assert parse_args(["--stream-rate", "0.5", "--stream-seconds", "1", "--skip", "streaming"]).stream_rate == 0.5


def test_a_bad_setting_is_one_line_not_a_traceback():
    run = subprocess.run([sys.executable, "-m", "bench.run", "--repeat", "1"], capture_output=True, text=True,
                         timeout=120, env=os.environ | {"MYSQL_PORT": "abc"})
    assert (run.returncode, run.stderr) == (2, "bench: bad setting: MYSQL_PORT='abc': expected a whole number\n")


def test_edge_values_that_make_sense_are_accepted():
    args = parse_args(["--scale", "0.01", "--repeat", "1", "--stream-events", "1", "--stream-warmup", "0",
                       "--source-schema", "bench_x2", "--target-prefix", "test_x"])
    assert (args.scale, args.repeat, args.stream_events, args.stream_warmup) == (0.01, 1, 1, 0)
    assert (args.source_schema, args.target_prefix) == ("bench_x2", "test_x")


def test_the_chart_of_a_run_without_measures_is_written(tmp_path):
    path = tmp_path / "latest.png"
    report.chart([], path, "every measure failed")
    assert path.stat().st_size > 1000


def test_the_table_columns_line_up_whatever_the_names_length():
    measures = [{"name": "short", "rows": 10, "seconds": 1.0, "rows_per_s": 10.0},
                {"name": "a measure name longer than the default column of forty-four", "rows": 1_550_070,
                 "seconds": 5.41, "rows_per_s": 286_498.1, "cpu_cores_busy": 1.23}]
    header, rule, *rows = report.table(measures, {}).splitlines()[:4]
    assert len({len(header), len(rule), *map(len, rows)}) == 1  # one width for every line
    assert all(row.split()[-1] in ("1.23", "10") for row in rows)  # no name ran into the numbers


def test_report_prints_a_results_tables_and_names_a_file_it_cannot_read(tmp_path, capsys):
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"measures": [{"name": "bound", "rows": 10, "seconds": 2.0, "rows_per_s": 5.0}],
                                  "ratios": {"replication_full_vs_bound": 0.9}}))
    assert report.main([str(result)]) == 0
    assert "| bound | 10 | 2.00 | 5 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path / "missing.json")])
    assert exit_info.value.code == 2 and "cannot read" in capsys.readouterr().err


def test_ratios_point_the_way_the_issue_states_its_goals():
    """Throughput ratios are ours over theirs (> 1 = ours faster); incremental and marts compare seconds (< 1 = the
    first is quicker); p95 is the continuous run's own value; a missing measure gives None, not a guess."""
    def measure(rows: int, seconds: float, **extra) -> dict:
        return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, **extra}
    ratios = report.ratios({
        "bound": measure(1000, 2.0), "naive": measure(1000, 20.0), "peer": measure(1000, 10.0),
        "ours_full": measure(1000, 4.0), "ours_incremental": measure(10, 0.5),
        "stream_drain": measure(500, 5.0), "stream_bound": measure(500, 1.0),
        "stream_continuous": measure(60, 60.0, p95_latency_s=1.7),
        "marts_spark": measure(300, 6.0), "marts_duckdb": measure(300, 1.5)})
    assert ratios == {"replication_full_vs_bound": 0.5, "replication_full_vs_naive": 5.0,
                      "replication_full_vs_peer": 2.5, "replication_incremental_vs_full": 0.125,
                      "stream_drain_vs_bound": 0.2, "stream_p95_latency_s": 1.7, "marts_spark_vs_duckdb": 4.0}
    assert set(ratios) == set(report.RATIO_KEYS)
    assert report.ratios({"ours_full": measure(1000, 4.0)})["replication_full_vs_bound"] is None


def test_ctrl_c_while_the_servers_start_stops_those_the_bench_started(monkeypatch, capsys):
    """The servers were started before the bench's `try`: Ctrl-C there gave a traceback and left them running, and
    the next bench or `make test` took them for servers someone else runs and never stopped them."""
    from bench import run
    from shopflow.stack import manager

    def ensure(_settings, _groups, started):
        started.append("postgres")
        raise KeyboardInterrupt

    stopped = []
    monkeypatch.setattr(run, "exit_on_sigterm", lambda: None)  # pytest's own SIGTERM handler stays
    monkeypatch.setattr(run, "refuse_if_busy", lambda _args: [])
    monkeypatch.setattr(run, "daemon_running", lambda: False)
    monkeypatch.setattr(manager, "ensure", ensure)
    monkeypatch.setattr(run, "stop_servers", lambda *args: stopped.append(args))
    assert run.main([]) == 130
    assert stopped == [(["postgres"], False, False)]
    assert capsys.readouterr().err.startswith("bench: interrupted")


def test_a_failed_generation_ends_the_bench_with_one_line(monkeypatch):
    """datagen's exit went through `check=True`: a CalledProcessError traceback below datagen's own line."""
    from bench import run
    monkeypatch.setattr(run.subprocess, "call", lambda *args, **kwargs: 1)
    with pytest.raises(SystemExit) as exit_info:
        run.generate(0.01, "bench_x")
    assert str(exit_info.value.code).startswith("bench: generating the source failed (datagen.postgres exit 1")


def test_a_run_unlike_the_issues_does_not_replace_the_readmes_latest_numbers(tmp_path):
    """--allow-busy or a shorter stream run into bench/results replaced latest.json and the README's chart, their
    ratios named as the issue's (1M-event drain, 60 s at 1,000 events/s)."""
    from bench.args import parse_args, unlike_the_issue

    assert unlike_the_issue(parse_args([]), []) == []
    assert unlike_the_issue(parse_args(["--stream-events", "2000", "--repeat", "1"]), ["airflow-scheduler"]) == [
        "--repeat 1", "--stream-events 2000", "measured beside airflow-scheduler"]
    assert unlike_the_issue(parse_args(["--scale", "1", "--results-dir", str(tmp_path)]), []) == []  # the harness'
    assert unlike_the_issue(parse_args(["--no-generate"]), []) == ["--no-generate"]  # an earlier run's source


def test_the_issues_defaults_are_not_checked_again_where_the_checks_would_refuse_them(monkeypatch):
    """A live source sized up in .env makes the default --scale 60 too big: parsing the defaults again (with their
    checks) ended a finished bench in a usage error, nothing written."""
    from bench.args import parse_args, unlike_the_issue

    from shopflow.config import get_settings

    monkeypatch.setenv("DATAGEN_ORDERS", "2000000")
    get_settings.cache_clear()
    try:
        assert unlike_the_issue(parse_args(["--scale", "1"]), []) == ["--scale 1"]
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_such_a_run_is_written_dated_only(tmp_path, capsys):
    from bench import report

    result = {"scale": 60.0, "measures": [], "ratios": {}, "notes": [], "machine": {"cores": 2}}
    report.write_and_show(result, tmp_path, not_measured=[], unlike=["--repeat 1"])
    assert [p.name for p in tmp_path.iterdir()] != [] and not (tmp_path / "latest.json").exists()
    assert "left as they were: the run is not the issue's (--repeat 1)" in capsys.readouterr().out
