"""The dashboard's charts and formatting helpers, on tiny inline frames (no server, no browser)."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pandas as pd
import pytest

from shopflow.dashboard import charts, data, queries


def spec(chart) -> dict:
    return chart.to_dict()


def rows(chart) -> list[dict]:
    datasets = spec(chart)["datasets"]
    assert len(datasets) == 1
    return next(iter(datasets.values()))


def test_numeric_turns_decimals_into_floats_and_keeps_nulls():
    frame = pd.DataFrame({"x": [Decimal("1.25"), None, Decimal("-3")], "y": ["a", "b", "c"]})
    converted = charts.numeric(frame, "x")
    assert converted["x"].dtype == "float64"
    assert converted["x"].iloc[0] == 1.25 and pd.isna(converted["x"].iloc[1]) and converted["x"].iloc[2] == -3.0
    assert isinstance(frame["x"].iloc[0], Decimal)  # the caller's frame is untouched


def test_ordered_follows_the_known_order_then_names():
    assert charts.ordered(["Silver", "Platinum", "Gold", "Aluminium"], ("Gold", "Silver", "Bronze")) == [
        "Gold", "Silver", "Aluminium", "Platinum"]
    assert charts.ordered([], ("Gold",)) == []


def test_every_chart_renders_as_svg_with_one_datum_per_row():
    weeks = pd.DataFrame({"week_start": [date(2026, 1, 5), date(2026, 1, 12)], "new_users": [2, 0],
                          "orders": [3, 0], "revenue": [Decimal("120.50"), Decimal("0.00")], "active_users": [1, 0]})
    built = [charts.weekly_counts(weeks), charts.weekly_revenue(weeks),
             charts.orders_by_status(pd.DataFrame({"status": ["Pending"], "orders": [Decimal(1)],
                                                   "revenue": [Decimal("2.00")], "customers": [1]}))]
    for chart in built:
        assert spec(chart)["usermeta"] == charts.SVG
    assert [r["revenue"] for r in rows(built[1])] == [120.5, 0.0]


def test_weekly_revenue_bars_span_their_week():
    weeks = pd.DataFrame({"week_start": [date(2026, 1, 5)], "revenue": [Decimal("9.99")]})
    chart = charts.weekly_revenue(weeks)
    (row,) = rows(chart)
    assert row["week_start"].startswith("2026-01-05") and row["week_end"].startswith("2026-01-11")
    assert spec(chart)["encoding"]["x2"]["field"] == "week_end"


def test_statuses_and_tiers_are_sorted_by_lifecycle_and_rank():
    checks = pd.DataFrame({"status": ["Shipped", "Pending", "Shipped"], "loyalty_status": ["Bronze", "Gold", "Gold"],
                           "average_check": [Decimal("10.00"), Decimal("30.00"), Decimal("20.00")]})
    layers = spec(charts.average_check_heatmap(checks))["layer"]
    assert layers[0]["encoding"]["y"]["sort"] == ["Pending", "Shipped"]
    assert layers[0]["encoding"]["x"]["sort"] == ["Gold", "Bronze"]
    # labels on cells darker than the middle of the range (20.00) are white
    assert layers[1]["encoding"]["color"]["condition"]["test"] == "(datum.average_check > 20.0)"


def test_rating_bands_are_labelled_with_one_decimal():
    bands = pd.DataFrame({"band": [Decimal("1.0"), Decimal("4.5")], "products": [3, 1]})
    assert [r["band"] for r in rows(charts.rating_distribution(bands))] == ["1.0", "4.5"]


def test_ranked_products_grow_with_the_list_and_keep_query_order():
    products = pd.DataFrame({"product_id": range(10), "name": [f"p{i}" for i in range(10)],
                             "rating": [Decimal("4.00")] * 10, "review_count": [1] * 10})
    chart = charts.ranked_products(products, best=True)
    assert spec(chart)["height"] == 60 + 26 * 10
    assert spec(chart)["encoding"]["y"]["sort"] is None
    assert spec(charts.ranked_products(products.head(2), best=False))["height"] == 160


def test_run_history_has_a_point_per_run():
    runs = pd.DataFrame({"job": ["build_marts", "stream_users"], "status": ["ok", "failed"],
                         "started_at": [datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 11)],
                         "seconds": [Decimal("65.250"), None], "rows_written": [19, None]})
    assert [r["job"] for r in rows(charts.run_history(runs))] == ["build_marts", "stream_users"]


@pytest.mark.parametrize("seconds, text", [(None, "never"), (-3, "0 s ago"), (59, "59 s ago"), (60, "1 min ago"),
                                           (3599, "59 min ago"), (3600, "1 h ago"), (86_400 * 2 - 1, "47 h ago"),
                                           (86_400 * 3, "3 d ago")])
def test_age(seconds, text):
    assert data.age(seconds) == text


@pytest.mark.parametrize("value, text", [(None, "–"), ("999999.99", "999,999.99"), ("1000000", "1.00 M"),
                                         ("196877465.21", "196.88 M"), ("-2500000", "-2.50 M"),
                                         ("1234567890123.45", "1,234.57 bn")])
def test_money_short_abbreviates_millions_and_billions(value, text):
    assert data.money_short(value) == text


def test_number_and_time_formats():
    assert data.count(1234567) == "1,234,567" and data.count(None) == "–"
    assert data.money(Decimal("9999999999.99")) == "9,999,999,999.99" and data.money("0.5") == "0.50"
    assert data.utc(datetime(2026, 1, 2, 3, 4, 5, 678)) == "2026-01-02 03:04:05 UTC" and data.utc(None) == "–"


def test_job_names_match_the_jobs_that_write_pipeline_runs():
    from shopflow.marts.build import JOB as marts_job
    from shopflow.replication.pipeline import JOB as replication_job
    from shopflow.streaming.sink import JOB as streaming_job

    assert (queries.BUILD_MARTS_JOB, queries.REPLICATION_JOB, queries.STREAMING_JOB) == (
        marts_job, replication_job, streaming_job)
