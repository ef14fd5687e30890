"""The app layer's access to the queries: cached briefly, and what to say when a table is missing or empty."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import streamlit as st

from shopflow.config import get_settings

from . import queries
from .queries import Result

# Short enough that a new marts build shows within half a minute, without a restart; the sidebar can clear it.
CACHE_TTL_S = 30


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load(query: str, *args) -> Result:
    """`queries.<query>(settings, *args)`, cached per (query, args) for CACHE_TTL_S seconds."""
    return getattr(queries, query)(get_settings(), *args)


def shown(result: Result, what: str) -> bool:
    """True when `result` has rows; otherwise says why there is nothing to show (never a traceback)."""
    if result.missing_table:
        st.info(f"No {what} yet: the table `{result.missing_table}` does not exist. It appears after the first "
                f"successful run of the DAG that builds it (see Pipeline health).", icon=":material/hourglass_empty:")
        return False
    if result.empty:
        st.info(f"No {what} yet: the table is empty.", icon=":material/inbox:")
        return False
    return True


def count(value) -> str:
    return "–" if value is None else f"{int(value):,}"


def money(value) -> str:
    return "–" if value is None else f"{Decimal(value):,.2f}"


def money_short(value) -> str:
    """Money for a metric tile: millions and billions abbreviated (the tile truncates long numbers)."""
    if value is None:
        return "–"
    amount = Decimal(value)
    for unit, size in (("bn", Decimal(10) ** 9), ("M", Decimal(10) ** 6)):
        if abs(amount) >= size:
            return f"{amount / size:,.2f} {unit}"
    return money(amount)


def utc(moment: datetime | None) -> str:
    return "–" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def age(seconds) -> str:
    """`95` -> '1 min ago'; ages below a minute in seconds, above two days in days."""
    if seconds is None:
        return "never"
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= (2 * size if unit == "d" else size):
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"
