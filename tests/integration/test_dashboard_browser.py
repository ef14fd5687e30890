"""The dashboard in headless Chromium (Debian `chromium` + `chromium-driver`, driven by selenium), served by our own
streamlit process on a free port over a seeded scratch database: every page shows its title and a chart drawn
from the data, no error box; the overview's figures are the marts'; a new marts publish shows without a restart.
Screenshots are kept in the test's tmp dir (pytest keeps the last three runs; the path is printed)."""
from __future__ import annotations

import re
import shutil
import time
from datetime import datetime, timezone

import pytest
from test_dashboard_support import NOW, OVERVIEW, dashboard_process, execute, scratch_db

from shopflow.dashboard.data import CACHE_TTL_S
from shopflow.dashboard.pages import PAGES

pytestmark = pytest.mark.integration
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
                  "--window-size=1400,1800")
# A data mark (not an axis or legend) whose accessible label shows a value of the seed, per page.
MARK = "svg [role='graphics-symbol']:not([aria-roledescription='axis']):not([aria-roledescription='legend'])"
EXPECTED_MARK = {
    "overview": "status: Completed; orders: 5; revenue: 160.50",
    "weekly": "measure: Orders; value: 4",
    "products": "name: Desk; rating: 4.50; review_count: 5",
    "loyalty": "loyalty_status: Gold; total_points: 495",
    "average-check": "status: Completed; loyalty_status: Gold; average_check: 50.25",
    "pipeline": "job: build_marts; status: ok",
}
PAGE_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dashboard")
    yield directory
    print(f"\ndashboard screenshots: {directory}")


@pytest.fixture(scope="module")
def dashboard(mysql, screenshots):
    """(base URL, scratch settings) of a dashboard over a seeded scratch database."""
    with scratch_db(mysql, "browser") as settings, dashboard_process(settings, screenshots) as url:
        yield url, settings


@pytest.fixture(scope="module")
def browser(screenshots):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    assert not missing, f"{missing} not installed: apt-get install -y chromium chromium-driver (make install)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={screenshots / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def page_url(base: str, path: str) -> str:
    return base + ("/" if path == PAGES[0][0] else f"/{path}")  # the default page lives at the root


def elements(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def settled(driver, title: str, mark: str) -> bool:
    """The script run is over (no running indicator), the title is up and the expected mark is drawn."""
    if elements(driver, "[data-testid='stStatusWidget']"):
        return False
    if [h.text for h in elements(driver, "h1")] != [title]:
        return False
    return any(mark in (m.get_attribute("aria-label") or "") for m in elements(driver, MARK))


def open_page(driver, url: str, title: str, mark: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, PAGE_TIMEOUT_S, poll_frequency=0.5).until(lambda d: settled(d, title, mark),
                                                                     f"{url}: no title {title!r} / mark {mark!r}")


def minutes_ago(text: str) -> int:
    return int(re.fullmatch(r"(\d+) min ago", text)[1])


def elapsed_minutes() -> int:
    """Minutes since the seed's clock (its times are relative to the support module's import), rounded up."""
    return int((datetime.now(timezone.utc).replace(tzinfo=None) - NOW).total_seconds() // 60) + 1


def metrics(driver) -> dict[str, str]:
    labels = [e.text for e in elements(driver, "[data-testid='stMetricLabel']")]
    return dict(zip(labels, [e.text for e in elements(driver, "[data-testid='stMetricValue']")]))


@pytest.mark.parametrize("path, title", [(p, t) for p, t, _ in PAGES])
def test_each_page_renders_its_title_and_a_chart_with_data(dashboard, browser, screenshots, path, title):
    url, _ = dashboard
    try:
        open_page(browser, page_url(url, path), title, EXPECTED_MARK[path])
    finally:
        browser.save_screenshot(str(screenshots / f"{path}.png"))
    assert not elements(browser, "[data-testid='stException']")  # no traceback box
    assert not elements(browser, "[data-testid='stAlertContentError']")
    assert not elements(browser, "[data-testid='stAlertContentInfo']")  # every table is there and seeded
    assert not elements(browser, "[data-testid='stDialog']")  # e.g. "Page not found"
    assert elements(browser, "[data-testid='stVegaLiteChart']")


def test_overview_figures_are_the_marts(dashboard, browser):
    url, _ = dashboard
    open_page(browser, page_url(url, "overview"), "Overview", EXPECTED_MARK["overview"])
    assert metrics(browser) == {"Users": "4", "Customers with orders": "3", "Orders": "7",
                                "Revenue": OVERVIEW["revenue"], "Average check": OVERVIEW["average_check"]}
    captions = " ".join(e.text for e in elements(browser, "[data-testid='stCaptionContainer']"))
    assert 19 <= minutes_ago(re.search(r"Marts built .* UTC \((.*)\)", captions)[1]) <= 19 + elapsed_minutes()


def test_pipeline_health_figures(dashboard, browser):
    url, _ = dashboard
    open_page(browser, page_url(url, "pipeline"), "Pipeline health", EXPECTED_MARK["pipeline"])
    shown = metrics(browser)
    assert shown["Rejected events"] == "7" and shown["Failed checks, latest gate"] == "0"
    assert 29 <= minutes_ago(shown["Replication freshness"]) <= 29 + elapsed_minutes()


def test_a_new_marts_publish_shows_without_a_restart(dashboard, browser, screenshots):
    """The marts build publishes by RENAME; the app picks the new table up once its cache (CACHE_TTL_S) expires."""
    url, settings = dashboard
    open_page(browser, page_url(url, "overview"), "Overview", EXPECTED_MARK["overview"])
    assert metrics(browser)["Orders"] == "7"
    execute(settings, "CREATE TABLE mart_user_activity__staging LIKE mart_user_activity",
            "INSERT INTO mart_user_activity__staging SELECT * FROM mart_user_activity",
            "INSERT INTO mart_user_activity__staging VALUES (4, 'Di', 'Kim', 'Shipped', 3, '9.51')",
            "RENAME TABLE mart_user_activity TO mart_user_activity__old, mart_user_activity__staging TO "
            "mart_user_activity", "DROP TABLE mart_user_activity__old")
    deadline = time.monotonic() + CACHE_TTL_S + PAGE_TIMEOUT_S
    while metrics(browser).get("Orders") != "10" and time.monotonic() < deadline:
        time.sleep(5)
        open_page(browser, page_url(url, "overview"), "Overview", EXPECTED_MARK["overview"])
    browser.save_screenshot(str(screenshots / "overview-after-publish.png"))
    assert metrics(browser) == {"Users": "4", "Customers with orders": "4", "Orders": "10", "Revenue": "200.00",
                                "Average check": "20.00"}


def test_a_missing_mart_shows_a_message_not_a_traceback(mysql, browser, screenshots):
    with scratch_db(mysql, "browser_missing", marts="none") as settings, \
            dashboard_process(settings, screenshots) as url:
        browser.get(page_url(url, "weekly"))
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, PAGE_TIMEOUT_S, poll_frequency=0.5).until(
            lambda d: elements(d, "[data-testid='stAlertContentInfo']") and
            not elements(d, "[data-testid='stStatusWidget']"))
        browser.save_screenshot(str(screenshots / "weekly-missing.png"))
        info = " ".join(e.text for e in elements(browser, "[data-testid='stAlertContentInfo']"))
        assert "mart_weekly_activity" in info and "does not exist" in info
        assert not elements(browser, "[data-testid='stException']")
        assert not elements(browser, MARK)
