"""shopflow dashboard: `streamlit run code/shopflow/dashboard/app.py` (the stack's `dashboard` service runs it).

Reads only the marts and the run tables in MySQL, as the read-only account MARTS_READER_USER.
"""
import mysql.connector
import streamlit as st

from shopflow.config import get_settings
from shopflow.config_values import address
from shopflow.dashboard.data import CACHE_TTL_S
from shopflow.dashboard.pages import PAGES

st.set_page_config(page_title="shopflow dashboard", page_icon=":material/storefront:", layout="wide")
page = st.navigation([st.Page(run, title=title, url_path=path, default=path == PAGES[0][0])
                      for path, title, run in PAGES])
settings = get_settings()
with st.sidebar:
    st.caption(f"`{settings.MYSQL_DATABASE}` on {address(settings.MYSQL_HOST, settings.MYSQL_PORT)} as "
               f"`{settings.MARTS_READER_USER}`; each query is re-run at most every {CACHE_TTL_S} s (the marts' "
               "build time is on each page).")
    if st.button("Refresh now", icon=":material/refresh:"):
        st.cache_data.clear()
try:
    page.run()
except mysql.connector.Error as error:  # the server is down or refuses the account: say so, no traceback
    st.error(f"MySQL at {address(settings.MYSQL_HOST, settings.MYSQL_PORT)} did not answer the dashboard's query as "
             f"`{settings.MARTS_READER_USER}`: {error}")
