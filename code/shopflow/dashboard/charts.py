"""Altair charts of the dashboard: pure functions, a query's frame in, a chart out (no Streamlit, no IO).

Charts render as SVG (`usermeta.embedOptions`): one element per mark, which the browser test counts.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Iterable

import altair as alt
import pandas as pd

from postgresdb.models import LOYALTY_STATUSES, ORDER_STATUSES

SVG = {"embedOptions": {"renderer": "svg"}}
WEEKLY_COUNTS = {"new_users": "New users", "orders": "Orders", "active_users": "Users who ordered"}
MONEY = ",.2f"
COUNT_AXIS = alt.Axis(format=",d", tickMinStep=1)  # counts: no 0.5 ticks on a small range
TIME_AXIS = alt.Axis(format="%Y-%m-%d %H:%M", labelAngle=-30)
WEEK_AXIS = alt.Axis(format="%Y-%m-%d")


def numeric(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """A copy with DECIMAL columns (Python Decimals from MySQL) as floats: Vega-Lite takes JSON numbers."""
    frame = frame.copy()
    for column in columns:
        frame[column] = frame[column].map(lambda v: float(v) if isinstance(v, Decimal) else v).astype("float64")
    return frame


def ordered(values: Iterable[str], known: Iterable[str]) -> list[str]:
    """`values` in the order of `known`, unknown ones after them in name order (a sort order for an axis)."""
    values, known = set(values), list(known)
    return [v for v in known if v in values] + sorted(values - set(known))


def _svg(chart):
    return chart.properties(usermeta=SVG)


def orders_by_status(frame: pd.DataFrame) -> alt.Chart:
    data = numeric(frame, "orders", "revenue")
    return _svg(alt.Chart(data).mark_bar().encode(
        x=alt.X("orders:Q", title="Orders", axis=COUNT_AXIS),
        y=alt.Y("status:N", title=None, sort=ordered(data["status"], ORDER_STATUSES)),
        color=alt.Color("status:N", legend=None),
        tooltip=["status", alt.Tooltip("orders:Q", format=","), alt.Tooltip("revenue:Q", format=MONEY)],
    ).properties(height=220))


def weekly_counts(frame: pd.DataFrame) -> alt.Chart:
    data = numeric(frame, *WEEKLY_COUNTS).assign(week_start=lambda f: pd.to_datetime(f["week_start"]))
    data = data.rename(columns=WEEKLY_COUNTS)
    return _svg(alt.Chart(data).transform_fold(list(WEEKLY_COUNTS.values()), as_=["measure", "value"])
                .mark_line(point=alt.OverlayMarkDef(size=20)).encode(
        x=alt.X("week_start:T", title="Week (Monday, UTC)", axis=WEEK_AXIS),
        y=alt.Y("value:Q", title="Count", axis=COUNT_AXIS),
        color=alt.Color("measure:N", title=None, sort=list(WEEKLY_COUNTS.values())),
        tooltip=[alt.Tooltip("week_start:T", title="Week"), "measure:N", alt.Tooltip("value:Q", format=",")],
    ).properties(height=320))


def weekly_revenue(frame: pd.DataFrame) -> alt.Chart:
    """One bar per week, spanning Monday to Sunday (on a time axis a plain bar is a hairline)."""
    data = numeric(frame, "revenue").assign(week_start=lambda f: pd.to_datetime(f["week_start"]))
    data["week_end"] = data["week_start"] + pd.Timedelta(days=6)  # a day's gap between bars
    return _svg(alt.Chart(data).mark_bar().encode(
        x=alt.X("week_start:T", title="Week (Monday, UTC)", axis=WEEK_AXIS), x2="week_end:T",
        y=alt.Y("revenue:Q", title="Revenue"),
        tooltip=[alt.Tooltip("week_start:T", title="Week"), alt.Tooltip("revenue:Q", format=MONEY)],
    ).properties(height=260))


def _labels(names: pd.Series, ids: pd.Series, width: int = 40) -> pd.Series:
    """Names cut to `width`, made unique by the product id where they are alike: a bar per label, and two products
    whose first 40 characters matched shared one, the second bar drawn over the first."""
    cut = names.where(names.str.len() <= width, names.str.slice(0, width - 1) + "…")
    return cut.where(~cut.duplicated(keep=False), cut + " #" + ids.astype(str))


def ranked_products(frame: pd.DataFrame, best: bool) -> alt.Chart:
    data = numeric(frame, "rating").assign(label=lambda f: _labels(f["name"], f["product_id"]))
    return _svg(alt.Chart(data).mark_bar(color="#2e7d32" if best else "#c62828").encode(
        x=alt.X("rating:Q", title="Average rating", scale=alt.Scale(domain=[0, 5])),
        y=alt.Y("label:N", title=None, sort=None),
        tooltip=["product_id", "name", alt.Tooltip("rating:Q", format=".2f"), "review_count"],
    ).properties(height=max(160, 60 + 26 * len(data))))  # svg height: axis + a bar per product


def rating_distribution(frame: pd.DataFrame) -> alt.Chart:
    data = numeric(frame, "band", "products").assign(band=lambda f: f["band"].map("{:.1f}".format))
    return _svg(alt.Chart(data).mark_bar().encode(
        x=alt.X("band:O", title="Rating band (half stars, from)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("products:Q", title="Products", axis=COUNT_AXIS),
        tooltip=[alt.Tooltip("band:O", title="From"), "products:Q"],
    ).properties(height=260))


def loyalty_tiers(frame: pd.DataFrame, measure: str, title: str) -> alt.Chart:
    data = numeric(frame, measure)
    return _svg(alt.Chart(data).mark_bar().encode(
        x=alt.X("loyalty_status:N", title="Loyalty tier", sort=ordered(data["loyalty_status"], LOYALTY_STATUSES),
                axis=alt.Axis(labelAngle=0)),
        y=alt.Y(f"{measure}:Q", title=title),
        color=alt.Color("loyalty_status:N", legend=None, sort=list(LOYALTY_STATUSES)),
        tooltip=["loyalty_status", alt.Tooltip(f"{measure}:Q", format=",")],
    ).properties(height=280))


def average_check_heatmap(frame: pd.DataFrame) -> alt.LayerChart:
    data = numeric(frame, "average_check")
    x = alt.X("loyalty_status:N", title="Loyalty tier", sort=ordered(data["loyalty_status"], LOYALTY_STATUSES),
              axis=alt.Axis(labelAngle=0, orient="top"))
    y = alt.Y("status:N", title="Order status", sort=ordered(data["status"], ORDER_STATUSES))
    base = alt.Chart(data).encode(x=x, y=y)
    cells = base.mark_rect().encode(
        color=alt.Color("average_check:Q", title="Average check", scale=alt.Scale(scheme="blues")),
        tooltip=["status", "loyalty_status", alt.Tooltip("average_check:Q", format=MONEY)])
    middle = (data["average_check"].min() + data["average_check"].max()) / 2  # dark cells get white text
    labels = base.mark_text(fontSize=14).encode(
        text=alt.Text("average_check:Q", format=MONEY),
        color=alt.condition(alt.datum.average_check > middle, alt.value("white"), alt.value("black")))
    return _svg((cells + labels).properties(height=300))


def run_history(frame: pd.DataFrame) -> alt.Chart:
    data = numeric(frame, "seconds").assign(started_at=lambda f: pd.to_datetime(f["started_at"]))
    return _svg(alt.Chart(data).mark_point(filled=True, size=45).encode(
        x=alt.X("started_at:T", title="Started (UTC)", axis=TIME_AXIS),
        y=alt.Y("seconds:Q", title="Duration (s)"),
        color=alt.Color("job:N", title="Job"),
        shape=alt.Shape("status:N", title="Status"),
        tooltip=["job", "status", alt.Tooltip("started_at:T", format="%Y-%m-%d %H:%M:%S"), "seconds:Q",
                 "rows_written:Q"],
    ).properties(height=300))
