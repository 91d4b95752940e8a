"""A real browser: start the app, load it in headless Chromium (Debian's package,
driven by Playwright), wait until the script has finished, and check that the KPI
values on screen equal what the metrics compute for the same filters. Saves
screenshots under tests/artifacts/ (git-ignored).

Skipped when /usr/bin/chromium is missing, unless CM_REQUIRE_BROWSER=1 (as in CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from data.store import Store
from metrics import kpis
from metrics.catalogue import CATALOGUE, OVERVIEW_KPIS
from metrics.filters import ViewState, comparison_period
from pages.ui import fmt
from tests.conftest import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
               "--no-first-run", "--disable-component-update", "--disable-sync"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CM_REQUIRE_BROWSER") == "1":
        raise RuntimeError("CM_REQUIRE_BROWSER=1 but Debian's chromium is not installed")
    pytest.skip("Debian chromium not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    from data import demo

    path = tmp_path_factory.mktemp("browser") / "demo.duckdb"
    s = Store(path)
    demo.build(s, customers=3_000, seed=5, end=date(2026, 6, 30))
    s.close()
    return path


@pytest.fixture(scope="module")
def flow_sentence(demo_db) -> str:
    """What the Retention page should say about the last full month (read before the
    server holds the database)."""
    from metrics import retention as R
    from pages.ui import retention_charts as rc

    s = Store(demo_db, read_only=True)
    first, last = kpis.data_bounds(s)
    f = ViewState(lang="en").filters(as_of=last, first=first)
    flow, _ = R.base_flow(s, f, as_of=last)
    s.close()
    return rc.reading_flow(flow, "en")


@pytest.fixture(scope="module")
def server(demo_db, flow_sentence):
    """The app on the demo database (the expected values are read first: the server
    holds the database file)."""
    port = free_port()
    env = {**os.environ, "CM_DB_PATH": str(demo_db)}
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError("the app did not start: " + proc.stdout.read().decode(errors="replace")[-2000:])
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


READY = "[data-testid='stApp'][data-test-script-state='notRunning']"


def open_page(browser, url: str, *, ready: str, height: int = 2300):
    """Load ``url`` and wait until the script has run and ``ready`` is on screen.

    The app's main area scrolls inside its own container, so the viewport is tall
    enough for the screenshot to show the whole page."""
    page = browser.new_page(viewport={"width": 1500, "height": height})
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(ready, timeout=60_000)
    page.wait_for_selector(READY, timeout=60_000)
    return page, time.perf_counter() - started


def expected_cards(db: Path, view: ViewState) -> dict[str, str]:
    s = Store(db, read_only=True)
    try:
        first, last = kpis.data_bounds(s)
        f = view.filters(as_of=last, first=first)
        t = kpis.period_kpis(s, f, comparison=comparison_period(f.start, f.end, view.comparison))
    finally:
        s.close()
    money = fmt.Money(lang=view.lang, currency=view.currency, fx=view.fx)
    rows = {r["kpi"]: r for r in t.to_dicts()}
    return {k: fmt.kpi_value(CATALOGUE[k].unit, rows[k]["value"], view.lang, money) for k in OVERVIEW_KPIS}


def screen_cards(page) -> dict[str, str]:
    out = {}
    for card in page.locator("[data-testid='stMetric']").all():
        label = card.locator("[data-testid='stMetricLabel']").inner_text().strip()
        value = card.locator("[data-testid='stMetricValue']").inner_text().strip()
        out[label.split(" · ")[0]] = value
    return out


@pytest.fixture(scope="module")
def expected_en(demo_db):
    # Computed before the server holds the database's write lock.
    return expected_cards(demo_db, ViewState(lang="en", period="365d", loyalty="member"))


@pytest.fixture(scope="module")
def expected_vi(demo_db):
    return expected_cards(demo_db, ViewState(lang="vi"))


def test_overview_values_on_screen_equal_the_metrics(expected_en, expected_vi, server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    cards = "[data-testid='stMetric'] >> nth=14"
    page, seconds = open_page(browser, server + "/?lang=en&loyalty=member", ready=cards)
    shown = screen_cards(page)
    page.screenshot(path=str(ARTIFACTS / "overview_en.png"), full_page=True)
    labels = {CATALOGUE[k].label("en"): v for k, v in expected_en.items()}
    assert shown == labels
    assert page.get_by_text("Revenue from new and returning customers").count() >= 1
    print(f"first paint with KPIs: {seconds:.2f} s")
    page.close()

    page, _ = open_page(browser, server + "/", ready=cards)
    shown = screen_cards(page)
    page.screenshot(path=str(ARTIFACTS / "overview_vi.png"), full_page=True)
    assert shown == {CATALOGUE[k].label("vi"): v for k, v in expected_vi.items()}
    assert "₫" in shown["Doanh thu"]
    page.close()


def test_retention_page_in_the_browser(flow_sentence, server, browser):
    """The Retention page draws its charts, its sentences carry the numbers the
    metrics compute, and the customers behind a cell are listed."""
    page, seconds = open_page(browser, server + "/retention?lang=en", ready="text=Cohort table")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 7", timeout=60_000)
    assert page.get_by_text(flow_sentence).count() == 1
    assert page.get_by_text("Customers behind a cell").count() == 1
    assert page.get_by_text("Download the cohort table (CSV)").count() == 1
    page.screenshot(path=str(ARTIFACTS / "retention_en.png"), full_page=True)
    # The customers behind the default cell (period 1 of the second-latest cohort);
    # a click on the heatmap's top-left cell (the latest cohort, period 0) lists its
    # customers instead.
    assert page.get_by_text("cohort bought in period 1.", exact=False).count() == 1
    plot = page.locator(".js-plotly-plot").first.locator(".nsewdrag").first
    box = plot.bounding_box()
    page.mouse.move(box["x"] + 8, box["y"] + 8)
    page.mouse.click(box["x"] + 8, box["y"] + 8)
    page.wait_for_selector("text=cohort bought in period 0.", timeout=30_000)
    page.wait_for_selector(READY, timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "retention_cell_en.png"))
    page.close()


def test_clv_page_in_the_browser(server, browser):
    """The CLV page fits the models on the demo data and says whether to trust them."""
    page, seconds = open_page(browser, server + "/clv?lang=en", ready="text=Can we trust the model?", height=7000)
    # Plotly draws each chart after the script has finished: wait for all of them.
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 9", timeout=60_000)
    assert page.get_by_text("customers are expected to bring", exact=False).count() == 1
    assert page.get_by_text("The top 20% of customers hold", exact=False).count() == 1
    assert page.get_by_text("The model is", exact=False).count() >= 1
    page.screenshot(path=str(ARTIFACTS / "clv_en.png"))
    page.close()


def test_churn_page_in_the_browser(server, browser):
    """The Churn-risk page ranks the customers at risk and offers the campaign export."""
    page, seconds = open_page(browser, server + "/churn?lang=en", ready="text=Who to win back", height=4200)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=60_000)
    assert page.get_by_text("are at risk; they have brought", exact=False).count() == 1
    assert page.get_by_text("Targeting the riskiest 10%", exact=False).count() == 1
    page.wait_for_selector("text=Download XLSX", timeout=30_000)  # the last element, drawn last
    page.screenshot(path=str(ARTIFACTS / "churn_en.png"))
    page.close()


def test_loyalty_page_in_the_browser(server, browser):
    """The Loyalty page gives the causal answer beside the naive gap."""
    page, seconds = open_page(browser, server + "/loyalty?lang=en", ready="text=Referral programme", height=7000)
    # payback, causal vs naive, enrolment, points, tier Sankey, retention curves, referral rate
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 7", timeout=60_000)
    for text in ("members compared", "is larger than the effect because", "Three months after their first purchase"):
        page.wait_for_selector(f"text={text}", timeout=30_000)  # rendered, then counted once
        assert page.get_by_text(text, exact=False).count() == 1, text
    page.wait_for_selector("text=Top advocates", timeout=30_000)
    assert page.get_by_text("Referral ROI", exact=True).count() >= 1
    assert page.get_by_role("button", name="Download everything on this page (Excel)").count() == 1
    page.screenshot(path=str(ARTIFACTS / "loyalty_en.png"))
    page.close()


def test_segments_page_in_the_browser(server, browser):
    """The Segments page: the segment table, the RFM grid, movement, mix and personas."""
    page, _ = open_page(browser, server + "/segments?lang=en", ready="text=Who are your customers?", height=6000)
    page.wait_for_selector("text=k-means picked", timeout=90_000)
    # grid, movement Sankey, mix, silhouette, projection
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=60_000)
    assert page.get_by_text("bring in the most revenue", exact=False).count() == 1
    assert page.get_by_text("Favourite channel", exact=False).count() >= 3
    page.screenshot(path=str(ARTIFACTS / "segments_en.png"))
    page.close()


def test_surveys_page_in_the_browser(server, browser):
    """The Surveys page: scores, trend, distribution, breakdown, say vs do, drivers, verbatims."""
    page, _ = open_page(browser, server + "/surveys?lang=en", ready="text=What customers say, and what they do",
                        height=7000)
    page.wait_for_selector("text=Distinctive words by", timeout=90_000)
    # trend, distribution, breakdown, retention and revenue after, CLV deciles, drivers quadrant
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=60_000)
    assert page.get_by_text("NPS is", exact=False).count() >= 1
    assert page.get_by_text("of promoters bought again against", exact=False).count() == 1
    page.screenshot(path=str(ARTIFACTS / "surveys_en.png"))
    page.close()


def test_team_page_in_the_browser(server, browser):
    """Local mode: one local admin; the personal-data tools and the audit log are there."""
    page, _ = open_page(browser, server + "/team?lang=en", ready="text=Team, roles and personal data")
    page.wait_for_selector("text=Audit log", timeout=30_000)
    page.wait_for_selector("text=Customer ID, email or phone", timeout=30_000)
    page.wait_for_selector("[data-testid='stSidebar'] >> text=Period", timeout=30_000)
    page.wait_for_timeout(1500)  # the audit table's canvas
    assert page.get_by_text("Local mode: one user on this machine", exact=False).count() == 1
    assert page.get_by_role("button", name="Forget permanently").count() == 1
    page.screenshot(path=str(ARTIFACTS / "team_en.png"), full_page=True)
    page.close()


def test_data_page_in_the_browser(server, browser):
    page, _ = open_page(browser, server + "/data?lang=en", ready="text=Rebuild demo data")
    assert page.get_by_text("What is loaded").count() == 1
    assert page.get_by_text("Rebuild demo data").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "data_en.png"), full_page=True)
    page.close()


def test_an_upload_is_checked_reported_and_loaded_in_the_browser(server, browser):
    """A person's path through an import: upload a Vietnamese export with a bad row,
    read the report (the file's own line number), then upload a clean file and load it."""
    page, _ = open_page(browser, server + "/data?lang=en", ready="text=Check the file")
    bad = ("Mã đơn hàng;Mã khách hàng;Ngày đặt hàng;Thành tiền;Trạng thái\n"
           "BX1;KB1;05/03/2026;1.250.000 ₫;Hoàn thành\n"
           "BX2;KB2;31/02/2026;990.000 ₫;Đã giao\n").encode()
    page.locator("input[type='file']").set_input_files(
        files=[{"name": "don_hang.csv", "mimeType": "text/csv", "buffer": bad}])
    page.get_by_role("button", name="Check the file").click()
    page.wait_for_selector("text=don_hang.csv: 2 rows read, 1 rejected.", timeout=60_000)
    page.wait_for_selector(READY, timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "data_report_en.png"), full_page=True)
    problems = page.locator("[data-testid='stDataFrame']").all_inner_texts()
    assert any("31/02/2026" in t for t in problems) or page.get_by_text("31/02/2026").count() >= 1

    good = bad.replace(b"31/02/2026", b"28/02/2026")
    page.locator("input[type='file']").set_input_files(
        files=[{"name": "don_hang.csv", "mimeType": "text/csv", "buffer": good}])
    page.get_by_role("button", name="Check the file").click()
    page.wait_for_selector("text=don_hang.csv: 2 rows read, 0 rejected.", timeout=60_000)
    page.get_by_role("button", name="Load 2 rows").click()
    page.wait_for_selector("text=Loaded 2 rows into Orders", timeout=60_000)
    page.wait_for_selector(READY, timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "data_loaded_en.png"), full_page=True)
    page.close()
