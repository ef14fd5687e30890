"""The dashboard's pages: one function each, registered in PAGES (url path, title, function)."""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import pandas as pd
import streamlit as st

from postgresdb.models import LOYALTY_STATUSES, ORDER_STATUSES
from shopflow.config import get_settings
from shopflow.config_values import AIRFLOW_ONLY_PRESETS

from . import charts, queries
from .data import age, count, load, money, money_short, shown, utc

REPLICATION_STALE_S = 3_600  # at least: replication runs every 15 minutes by default
RUN_TIMEOUT_S = 3_600  # the DAGs' execution_timeout (code/airflow/dags/_spark.py)
_PRESET_INTERVAL_S = {"@once": None, "@continuous": 0, "@quarterly": 92 * 86_400}
assert set(_PRESET_INTERVAL_S) == set(AIRFLOW_ONLY_PRESETS)


@lru_cache(maxsize=8)
def replication_stale_s(schedule: str) -> float | None:
    """How long without a successful replication run the replica counts as stale: two of the schedule's intervals
    (the longest of its next 100), at least REPLICATION_STALE_S; None when no run is due again (@once)."""
    if schedule in _PRESET_INTERVAL_S:
        interval = _PRESET_INTERVAL_S[schedule]
        return None if interval is None else max(REPLICATION_STALE_S, 2 * interval)
    try:
        from croniter import croniter  # Airflow's dependency: an image without Airflow keeps the fixed hour
    except ImportError:
        return REPLICATION_STALE_S
    runs = croniter(schedule, datetime(2026, 1, 1))
    times = [runs.get_next(float) for _ in range(100)]
    return max(REPLICATION_STALE_S, 2 * max(b - a for a, b in zip(times, times[1:])))


def _chart(chart) -> None:
    st.altair_chart(chart, width="stretch")


def _charted(result, what: str, heading: str, chart) -> None:
    """A heading and `chart(result.frame)`, or the message saying why there is nothing to draw."""
    if shown(result, what):
        st.subheader(heading)
        _chart(chart(result.frame))


def _metrics(values: dict[str, str], hints: dict[str, str] | None = None) -> None:
    for column, (label, value) in zip(st.columns(len(values)), values.items()):
        column.metric(label, value, help=(hints or {}).get(label))


def _build_time() -> None:
    """When the marts on screen were published, and a warning when a later build failed."""
    built, latest = load("last_run", queries.BUILD_MARTS_JOB, "ok"), load("last_run", queries.BUILD_MARTS_JOB)
    if built.empty:
        st.caption("No successful marts build recorded in `pipeline_runs` yet.")
    else:
        run = built.frame.iloc[0]
        st.caption(f"Marts built {utc(run['finished_at'])} ({age(run['age_seconds'])}).")
    if not latest.empty and latest.frame.iloc[0]["status"] != "ok" and not _ended_before(latest, built):
        run = latest.frame.iloc[0]
        st.warning(f"The latest marts build ({utc(run['started_at'])}) {run['status']}: {run['detail']}. "
                   "The marts shown are those of the last successful build.")


def _ended_before(latest, built) -> bool:
    """The latest build to start ended before the last successful one did: one that waited for the build lock
    while it published, then gave up (the marts shown are newer than its failure)."""
    ended, ok = (None if r.empty else r.frame.iloc[0]["finished_at"] for r in (latest, built))
    return not (ended is None or ok is None or pd.isna(ended) or pd.isna(ok)) and ended <= ok


def overview() -> None:
    st.title("Overview")
    _build_time()
    totals = load("overview")
    if not shown(totals, "users or orders in the marts"):
        return
    row = totals.frame.iloc[0]
    _metrics({"Users": count(row["users"]), "Customers with orders": count(row["customers"]),
              "Orders": count(row["orders"]), "Revenue": money_short(row["revenue"]),
              "Average check": money(row["average_check"])},
             hints={"Revenue": f"{money(row['revenue'])}: the sum of every order's total amount, every status "
                               "included (cancelled, pending and processing orders too)",
                    "Average check": "Revenue / orders, over every order"})
    _charted(load("orders_by_status"), "orders by status", "Orders by status", charts.orders_by_status)


def weekly_activity() -> None:
    st.title("Weekly activity")
    _build_time()
    weeks = load("weekly_activity")
    if not shown(weeks, "weekly activity"):
        return
    frame = weeks.frame
    _metrics({"Weeks": count(len(frame)), "First week": f"{frame['week_start'].iloc[0]}",
              "Last week": f"{frame['week_start'].iloc[-1]}",
              "Orders in the busiest week": count(frame["orders"].max())})
    st.subheader("New users, orders and users who ordered per week")
    _chart(charts.weekly_counts(frame))
    st.subheader("Revenue per week", help="The ordered amount, every status included (cancelled, pending and "
                 "processing orders too), as on the Overview")
    _chart(charts.weekly_revenue(frame))
    with st.expander("The numbers"):
        st.dataframe(frame, hide_index=True)


def products() -> None:
    st.title("Products by rating")
    _build_time()
    summary = load("rating_summary")
    if not shown(summary, "product ratings"):
        return
    row = summary.frame.iloc[0]
    _metrics({"Products": count(row["products"]), "Rated": count(row["rated"]), "Unrated": count(row["unrated"]),
              "Reviews": count(row["reviews"]),
              "Mean product rating": "–" if row["average_rating"] is None else f"{row['average_rating']:.2f}"},
             hints={"Mean product rating": "The mean of the rated products' average ratings, each product counted "
                                           "once whatever its number of reviews"})
    if not row["rated"]:
        st.info("No product has a review yet: nothing to rank.", icon=":material/inbox:")
        return
    limit = st.slider("Products per list", min_value=5, max_value=25, value=10)
    best, worst = st.columns(2)
    for column, is_best, title in ((best, True, "Best rated"), (worst, False, "Worst rated")):
        with column:
            st.subheader(title)
            ranked = load("ranked_products", is_best, limit)
            if shown(ranked, "rated products"):
                _chart(charts.ranked_products(ranked.frame, best=is_best))
    _charted(load("rating_distribution"), "rated products", "Rated products per half-star band",
             charts.rating_distribution)


def loyalty() -> None:
    st.title("Loyalty tiers and points")
    _build_time()
    tiers = load("loyalty_tiers")
    if not shown(tiers, "loyalty data"):
        return
    users, points = st.columns(2)
    with users:
        st.subheader("Users per tier")
        _chart(charts.loyalty_tiers(tiers.frame, "users", "Users"))
    with points:
        st.subheader("Loyalty points per tier")
        _chart(charts.loyalty_tiers(tiers.frame, "total_points", "Points"))
    frame = tiers.frame.set_index("loyalty_status")  # in tier order (Gold, Silver, Bronze), as the charts
    st.dataframe(frame.reindex(charts.ordered(frame.index, LOYALTY_STATUSES)).reset_index(), hide_index=True)
    top = load("top_loyalty_users", 10)
    if shown(top, "users with points"):
        st.subheader("Top 10 users by points")
        st.dataframe(top.frame, hide_index=True)


def average_check() -> None:
    st.title("Average check by order status and loyalty tier")
    _build_time()
    checks = load("average_check")
    if not shown(checks, "average checks"):
        return
    _chart(charts.average_check_heatmap(checks.frame))
    table = (checks.frame.assign(average_check=checks.frame["average_check"].map(money))
             .pivot(index="status", columns="loyalty_status", values="average_check"))
    table = table.reindex(index=charts.ordered(table.index, ORDER_STATUSES),
                          columns=charts.ordered(table.columns, LOYALTY_STATUSES)).fillna("–")
    st.dataframe(table)


def _freshness_metrics() -> None:
    replicated = load("last_run", queries.REPLICATION_JOB, "ok")
    built = load("last_run", queries.BUILD_MARTS_JOB, "ok")
    rejected, quality, batch = load("rejected_events"), load("quality_runs", 1), load("last_stream_batch")
    replication_age = None if replicated.empty else replicated.frame.iloc[0]["age_seconds"]
    lag = None if batch.empty else batch.frame.iloc[0]["events_behind"]
    _metrics({"Replication freshness": age(replication_age),
              "Last marts build": age(None if built.empty else built.frame.iloc[0]["age_seconds"]),
              "Last stream batch": age(None if batch.empty else batch.frame.iloc[0]["age_seconds"]),
              "Rejected events": count(0 if rejected.empty else rejected.frame.iloc[0]["rejected"]),
              "Failed checks, latest gate": "–" if quality.empty else count(quality.frame.iloc[0]["failed"])},
             {"Last stream batch": "The streaming job writes a batch only when the topic holds new events. "
                                   + ("After this one the topic held " + count(lag) + " event(s) not yet applied."
                                      if pd.notna(lag) else "")})
    stale_s = replication_stale_s(get_settings().REPLICATION_SCHEDULE)
    if replication_age is None or (stale_s is not None and replication_age > stale_s):
        since = "yet" if replication_age is None else f"for over {age(stale_s).removesuffix(' ago')}"
        st.warning(f"Replication has not succeeded {since} (two of its schedule's intervals, at least "
                   f"{age(REPLICATION_STALE_S).removesuffix(' ago')}): the replica and the marts may be stale.")


def pipeline_health() -> None:
    st.title("Pipeline health")
    _freshness_metrics()
    st.subheader("Last run of each job")
    runs = load("last_runs")
    if shown(runs, "pipeline runs"):
        st.dataframe(runs.frame, hide_index=True)
        for run in runs.frame[runs.frame["running_s"].fillna(0) > RUN_TIMEOUT_S].itertuples():
            st.warning(f"{run.job} has shown `running` for {age(run.running_s).removesuffix(' ago')}, longer than "
                       "Airflow lets its task run (1 hour): its process most likely ended without writing its end "
                       "(killed, or MySQL unreachable then). Its next run writes it as failed.")
        st.subheader("Run durations")
        _chart(charts.run_history(load("run_history", 200).frame))
    st.subheader("Quality gates")
    gates = load("quality_runs", 10)
    if shown(gates, "quality gate results"):
        st.dataframe(gates.frame, hide_index=True)
        failed = load("failed_checks", 10, 50)
        if failed.empty:
            st.success("No failed quality check in these gates.")
        else:
            st.markdown("**Failed checks** of these gates (at most 50)")
            st.dataframe(failed.frame, hide_index=True)


PAGES = (  # (url path, title, page function)
    ("overview", "Overview", overview),
    ("weekly", "Weekly activity", weekly_activity),
    ("products", "Products by rating", products),
    ("loyalty", "Loyalty tiers and points", loyalty),
    ("average-check", "Average check by order status and loyalty tier", average_check),
    ("pipeline", "Pipeline health", pipeline_health),
)
