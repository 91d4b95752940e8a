"""AppTest: every page renders on the demo database and on an empty one, and the URL
state comes back as the selected filters."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from data.store import Store
from metrics import kpis
from metrics.filters import Filters, ViewState, comparison_period
from tests.conftest import tiny_frames

PAGES = ["pages/overview_page.py", "pages/retention_page.py", "pages/clv_page.py", "pages/churn_page.py",
         "pages/loyalty_page.py", "pages/segments_page.py",
         "pages/surveys_page.py", "pages/data_page.py", "pages/team_page.py"]
ROOT = Path(__file__).resolve().parent.parent


def make_db(path: Path, frames=None) -> Path:
    s = Store(path)
    if frames:
        s.load_frames(frames, kind="test")
    s.close()
    return path


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> Path:
    from data import demo

    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    s = Store(path)
    demo.build(s, customers=2_000, seed=11, end=date(2026, 6, 30))
    s.close()
    return path


@pytest.fixture()
def tiny_db(tmp_path) -> Path:
    return make_db(tmp_path / "tiny.duckdb", tiny_frames())


@pytest.fixture()
def empty_db(tmp_path) -> Path:
    return make_db(tmp_path / "empty.duckdb")


def app(db: Path, monkeypatch, **params) -> AppTest:
    monkeypatch.setenv("CM_DB_PATH", str(db))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("lang", ["vi", "en"])
def test_every_page_renders_on_demo_data(demo_db, monkeypatch, page, lang):
    at = app(demo_db, monkeypatch, lang=lang)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    if page.endswith("overview_page.py"):
        assert len(at.metric) == 15
        assert all(m.value != "—" for m in at.metric[:5])


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_empty_database(empty_db, monkeypatch, page):
    at = app(empty_db, monkeypatch, lang="en")
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    if page.endswith(("overview_page.py", "retention_page.py", "clv_page.py", "churn_page.py", "loyalty_page.py",
                      "segments_page.py", "surveys_page.py")):
        assert "No data yet" in texts(at)
        assert len(at.metric) == 0
    elif page.endswith("team_page.py"):
        assert "Local mode: one user on this machine" in texts(at)
    else:
        assert "No imports yet." in texts(at)


def test_empty_database_in_vietnamese(empty_db, monkeypatch):
    at = app(empty_db, monkeypatch)
    at.run()
    assert not at.exception
    assert "Chưa có dữ liệu" in texts(at)


def test_query_params_come_back_as_the_selected_filters(tiny_db, monkeypatch):
    at = app(tiny_db, monkeypatch, period="ytd", cmp="yoy", channel="shopee,website", region="Hà Nội",
             loyalty="member", lang="en", cur="USD", fx="25000", window="60")
    at.run()
    assert not at.exception
    assert at.selectbox(key="period").value == "ytd"
    assert at.selectbox(key="cmp").value == "yoy"
    assert at.multiselect(key="channel").value == ["shopee", "website"]
    assert at.multiselect(key="region").value == ["Hà Nội"]
    assert at.selectbox(key="loyalty").value == "member"
    assert at.number_input(key="window").value == 60
    assert at.number_input(key="fx").value == 25000
    # The URL still carries exactly the view (stable codes, not translated labels).
    qp = {k: at.query_params[k] for k in at.query_params}
    flat = {k: v[-1] if isinstance(v, list) else v for k, v in qp.items()}
    assert ViewState.from_query_params(flat) == ViewState(
        period="ytd", comparison="yoy", channels=("shopee", "website"), regions=("Hà Nội",),
        loyalty="member", lang="en", currency="USD", fx=25000.0, inactivity_days=60,
    )
    assert "Filters: Shopee, Website, Hà Nội, Members" in texts(at)


def test_custom_period_from_the_url(tiny_db, monkeypatch):
    at = app(tiny_db, monkeypatch, period="custom", **{"from": "2024-03-01", "to": "2024-03-31"}, cmp="none", lang="en")
    at.run()
    assert not at.exception
    assert at.date_input(key="range").value == (date(2024, 3, 1), date(2024, 3, 31))
    revenue = next(m for m in at.metric if m.label == "Revenue")
    assert revenue.value == "570 ₫"


def test_screen_values_equal_the_metrics(tiny_db, monkeypatch):
    at = app(tiny_db, monkeypatch, period="custom", **{"from": "2024-03-01", "to": "2024-03-31"}, lang="en")
    at.run()
    s = Store(":memory:")
    s.load_frames(tiny_frames(), kind="t")
    f = Filters(start=date(2024, 3, 1), end=date(2024, 3, 31))
    t = kpis.period_kpis(s, f, comparison=comparison_period(f.start, f.end, "prev"))
    shown = {m.label: m.value for m in at.metric}
    assert shown["Orders"] == f"{t.filter(t['kpi'] == 'orders')['value'][0]:.0f}"
    assert shown["Churn rate"] == f"{100 * t.filter(t['kpi'] == 'churn_rate')['value'][0]:.1f}%"


def test_changing_a_filter_updates_the_url_and_numbers(tiny_db, monkeypatch):
    at = app(tiny_db, monkeypatch, period="all", lang="en")
    at.run()
    before = {m.label: m.value for m in at.metric}["Revenue"]
    at.selectbox(key="loyalty").set_value("non_member").run()
    assert not at.exception
    assert at.query_params["loyalty"] in ("non_member", ["non_member"])
    after = {m.label: m.value for m in at.metric}["Revenue"]
    assert before != after


def test_language_switch_translates_the_page(tiny_db, monkeypatch):
    at = app(tiny_db, monkeypatch, period="all")
    at.run()
    assert at.title[0].value == "Tổng quan"
    at.segmented_control(key="lang").set_value("en").run()
    assert at.title[0].value == "Overview"
    assert "lang" in at.query_params


@pytest.mark.parametrize(
    "hostile",
    ["x' OR 1=1--", "<img src=x onerror=alert(1)>", "read_csv('/etc/passwd')", "2024-02-31", "9" * 400],
)
def test_hostile_query_params_are_refused_or_shown_as_text(tiny_db, monkeypatch, hostile):
    at = app(tiny_db, monkeypatch, period=hostile, cmp=hostile, channel=hostile, region=hostile,
             loyalty=hostile, lang=hostile, fx=hostile, window=hostile, **{"from": hostile, "to": hostile})
    at.run()
    assert not at.exception
    assert at.selectbox(key="period").value == "365d"
    assert at.multiselect(key="channel").value == []
    assert at.multiselect(key="region").value == []  # not a region in the data


def test_data_page_lists_tables_and_imports(tiny_db, monkeypatch):
    at = app(tiny_db, monkeypatch, lang="en")
    at.run()
    at.switch_page("pages/data_page.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table.shape[0] == 7
    assert "Last import: test" in texts(at)


def test_data_page_builds_demo_data_into_an_empty_database(empty_db, monkeypatch):
    at = app(empty_db, monkeypatch, lang="en")
    at.run()
    at.switch_page("pages/data_page.py").run()
    at.number_input(key="demo_customers").set_value(300)
    _button(at, "Rebuild demo data").click().run()
    assert not at.exception, at.exception
    assert any("Built" in s.value for s in at.success)
    at.switch_page("pages/overview_page.py").run()
    assert not at.exception
    assert len(at.metric) == 15


def test_page_files_never_share_a_name_with_their_url_path(tiny_db, monkeypatch):
    at = app(tiny_db, monkeypatch)
    at.run()
    pages = at._registered_pages.values()
    assert {Path(str(p["script_path"])).name for p in pages} == {Path(p).name for p in PAGES}
    for p in pages:
        assert Path(str(p["script_path"])).stem != p["url_pathname"], p


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label.startswith(label))


def _data_page(db: Path, monkeypatch) -> AppTest:
    at = app(db, monkeypatch, lang="en")
    at.run()
    return at.switch_page("pages/data_page.py").run()


def _check(at: AppTest, name: str, content: bytes) -> AppTest:
    """Upload a file on the Data page and press "Check the file"."""
    at.get("file_uploader")[0].upload(name, content, "text/csv")
    _button(at, "Check the file").click().run()
    assert not at.exception, at.exception
    return at


def test_data_page_upload_check_load_and_undo(tiny_db, monkeypatch):
    at = _data_page(tiny_db, monkeypatch)
    good = "Mã đơn hàng,Mã khách hàng,Ngày đặt hàng,Thành tiền,Trạng thái\nW1,A,2024-05-01 10:00,\"1.000\",Đã giao\n"
    _check(at, "orders.csv", good.encode())
    assert "orders.csv: 1 row read, 0 rejected." in texts(at)
    _button(at, "Load 1 row").click().run()
    assert not at.exception, at.exception
    assert any("Loaded 1 row into Orders" in m.value for m in at.success)
    assert "Last import: orders “orders.csv”, 1 row" in texts(at)
    _button(at, "Undo").click().run()
    assert not at.exception, at.exception
    assert any("Undid import #2: removed 1 row, restored 0" in m.value for m in at.success)


def test_data_page_shows_the_report_of_a_rejected_file(tiny_db, monkeypatch):
    at = _data_page(tiny_db, monkeypatch)
    bad = "order_id,customer_id,ordered_at,revenue,status\nW1,A,31/02/2024,1000,completed\nW2,A,2024-05-01,-3,completed\n"
    _check(at, "bad.csv", bad.encode())
    assert "bad.csv: 2 rows read, 2 rejected." in texts(at)
    problems = next(d.value for d in at.dataframe if "Line" in d.value.columns)
    assert list(problems["Line"]) == [2, 3]
    assert list(problems["Reason"]) == ["not a date and time", "must be at least 0"]
    assert _button(at, "Load 0 rows").disabled
    _check(at, "x.csv", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert any("File rejected" in e.value and "PNG" in e.value for e in at.error)


def test_mapping_step_suggests_and_remembers(tiny_db, monkeypatch):
    at = _data_page(tiny_db, monkeypatch)
    odd = "Số HĐ,KH,Lúc,Tiền (VND),TT\nW7,A,2024-05-01 10:00,1000,paid\n"
    _check(at, "odd.csv", odd.encode())
    assert any("No column found for" in w.value for w in at.warning)
    for field, header in {"order_id": "Số HĐ", "customer_id": "KH", "ordered_at": "Lúc", "revenue": "Tiền (VND)", "status": "TT"}.items():
        at.selectbox(key=f"map_{field}").set_value(header)
    _button(at, "Apply and check again").click().run()
    assert not at.exception, at.exception
    assert "odd.csv: 1 row read, 0 rejected." in texts(at)
    # The same layout again maps itself.
    _check(at, "odd2.csv", odd.replace("W7", "W8").encode())
    assert "odd2.csv: 1 row read, 0 rejected." in texts(at)
    assert any("as you confirmed" in i.value for i in at.info)


# -- the Retention page -------------------------------------------------------------
def retention_app(db: Path, monkeypatch, **params) -> AppTest:
    at = app(db, monkeypatch, lang="en", **params)
    at.run()
    at.switch_page("pages/retention_page.py").run()
    assert not at.exception, at.exception
    return at


def by_label(widgets, label: str):
    return next(w for w in widgets if w.label == label)


def test_retention_page_shows_the_cohorts_the_metrics_compute(tiny_db, monkeypatch):
    from metrics import retention as R

    s = Store(":memory:")
    s.load_frames(tiny_frames(), kind="t")
    first, last = kpis.data_bounds(s)
    f = ViewState(period="all").filters(as_of=last, first=first)
    flow, _ = R.base_flow(s, f, as_of=last)
    s.close()
    from pages.ui import retention_charts as rc

    at = retention_app(tiny_db, monkeypatch, period="all")

    assert rc.reading_flow(flow, "en") in texts(at)
    assert "Cohort table" in [h.value for h in at.subheader]
    assert at.get("download_button")  # the cohort table and the cell's customers
    assert " cohort bought in period " in texts(at)
    # the month-N trend has a reading of its own (month 3 by default)
    assert "No cohort has completed month 3 yet" in texts(at)  # the tiny data reach month 2
    at.number_input(key="r_n").set_value(1).run()
    assert "At month 1 (retained (in period k))" in texts(at) or "has completed month 1 so far" in texts(at)


@pytest.mark.parametrize("label,value,param", [
    ("Cohorts by", "week", ("r_grain", "week")),
    ("Cohorts by", "quarter", ("r_grain", "quarter")),
    ("Cohort entry", "recurring", ("r_entry", "recurring")),
    ("Split by", "loyalty", ("r_split", "loyalty")),
    ("Split by", "region", ("r_split", "region")),
    ("Split by", "first_category", ("r_split", "first_category")),
    ("Split by", "acquisition_channel", ("r_split", "acquisition_channel")),
    ("Metric", "unbounded", ("r_metric", "unbounded")),
    ("Metric", "repeat_rate", ("r_metric", "repeat_rate")),
    ("Metric", "cum_revenue_per_customer", ("r_metric", "cum_revenue_per_customer")),
    ("Metric", "cum_margin_per_customer", ("r_metric", "cum_margin_per_customer")),
    ("Metric", "net_revenue_retention", ("r_metric", "net_revenue_retention")),
])
def test_each_retention_control_redraws_the_page_and_lands_in_the_url(demo_db, monkeypatch, label, value, param):
    at = retention_app(demo_db, monkeypatch)
    by_label(at.selectbox, label).set_value(value).run()
    assert not at.exception, at.exception
    assert at.query_params.get(param[0]) in (param[1], [param[1]])
    assert "Cohort table" in [h.value for h in at.subheader]
    assert not [e for e in at.error]
    if param[0] == "r_metric":  # the curves keep a reading for every metric
        assert "in the first month after acquisition" in texts(at)


def test_mean_relative_period_n_and_kept_segments(demo_db, monkeypatch):
    at = retention_app(demo_db, monkeypatch)
    by_label(at.toggle, "Relative to previous period").set_value(True).run()
    by_label(at.number_input, "Period N").set_value(2).run()
    at.segmented_control(key="r_mean").set_value("simple").run()
    assert not at.exception, at.exception
    by_label(at.selectbox, "Split by").set_value("loyalty").run()
    by_label(at.multiselect, "Keep only").set_value(["member"]).run()
    assert not at.exception, at.exception
    qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert qp["r_rel"] == "1" and qp["r_n"] == "2" and qp["r_mean"] == "simple"
    assert qp["r_split"] == "loyalty" and qp["r_vals"] == "member"
    assert "Only customers in: Members." in texts(at) or "Only customers in:" in texts(at)


def test_retention_controls_come_back_from_the_url(demo_db, monkeypatch):
    at = retention_app(demo_db, monkeypatch, r_grain="quarter", r_metric="repeat_rate", r_n="1", r_rel="1")
    assert by_label(at.selectbox, "Cohorts by").value == "quarter"
    assert by_label(at.selectbox, "Metric").value == "repeat_rate"
    assert by_label(at.toggle, "Relative to previous period").value is True
    hostile = retention_app(demo_db, monkeypatch, r_grain="day'; DROP TABLE orders", r_n="10000")
    assert by_label(hostile.selectbox, "Cohorts by").value == "month"
    assert by_label(hostile.number_input, "Period N").value == 104


def test_picking_a_cell_lists_its_customers_masked(tiny_db, monkeypatch):
    at = retention_app(tiny_db, monkeypatch, period="all")
    by_label(at.selectbox, "Cohort").set_value(date(2024, 1, 1)).run()
    by_label(at.number_input, "Period").set_value(1).run()
    assert not at.exception, at.exception
    assert "1 customer of the Jan 2024 cohort bought in period 1." in texts(at)
    by_label(at.toggle, "In this period or later").set_value(True).run()
    assert "bought in period 1 or later." in texts(at)


def test_the_customers_behind_a_cell_are_masked(demo_db, monkeypatch):
    at = retention_app(demo_db, monkeypatch)
    table = at.dataframe[-1].value
    assert len(table) > 0
    assert table["Customer"].str.contains("•").all()
    assert table["Email"].dropna().str.contains(r"\*\*\*@").all()
    assert table["Phone"].dropna().str.fullmatch(r"\d\dxx xxx \d{3}|x*\d{1,3}").all()


def test_use_suggested_window_sets_the_inactivity_window(demo_db, monkeypatch):
    at = retention_app(demo_db, monkeypatch)
    button = next(b for b in at.button if b.label.startswith("Use a "))
    days = int(button.label.split()[2].split("-")[0])
    button.click().run()
    assert not at.exception, at.exception
    assert at.session_state["window"] == days
    assert at.query_params.get("window") in (str(days), [str(days)])


# -- the CLV page ---------------------------------------------------------------------
def clv_app(db: Path, monkeypatch, **params) -> AppTest:
    at = app(db, monkeypatch, lang="en", **params)
    at.run()
    at.switch_page("pages/clv_page.py").run()
    return at


def test_clv_page_shows_the_model_its_check_and_its_uncertainty(demo_db, monkeypatch):
    from metrics import clv_view as CV
    from metrics.filters import ViewState

    s = Store(demo_db)
    first, last = kpis.data_bounds(s)
    f = ViewState().filters(as_of=last, first=first)
    scored = CV.score(s, f, as_of=last)
    s.close()
    at = clv_app(demo_db, monkeypatch)
    assert not at.exception, at.exception
    body = texts(at)
    assert f"{scored.customers.height:,} customers are expected to bring" in body
    assert "95% interval" in body
    assert any(t in body for t in ("The model is good", "The model is fair", "The model is poor"))
    assert "frequency = repeat purchases" in body  # the terms, in plain words
    assert "of all value." in body
    assert [m.label for m in at.metric][:2] == ["Predicted CLV, 12 months", "Predicted CLV per customer"]
    assert at.get("download_button")


def test_clv_settings_redraw_the_page_and_land_in_the_url(demo_db, monkeypatch):
    at = clv_app(demo_db, monkeypatch)
    by_label(at.selectbox, "Horizon").set_value(24).run()
    by_label(at.number_input, "Annual discount rate (%)").set_value(15.0).run()
    by_label(at.selectbox, "Break down by").set_value("tier").run()
    by_label(at.toggle, "Log scale").set_value(True).run()
    assert not at.exception, at.exception
    qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert qp["c_h"] == "24" and qp["c_disc"] == "15.0" and qp["c_group"] == "tier" and qp["c_log"] == "1"
    assert "Over the next 24 months" in texts(at)
    by_label(at.selectbox, "Break down by").set_value("segment").run()
    assert not at.exception, at.exception
    assert "c_group" not in at.query_params  # the default
    # the URL brings the same view back
    again = clv_app(demo_db, monkeypatch, c_h="6", c_group="region", c_disc="not a number")
    assert not again.exception, again.exception
    assert "Over the next 6 months" in texts(again)
    assert by_label(again.selectbox, "Break down by").value == "region"


def test_clv_page_explains_when_there_is_too_little_data(tiny_db, monkeypatch):
    at = clv_app(tiny_db, monkeypatch, period="all")
    assert not at.exception, at.exception
    assert any("not enough data" in w.value for w in at.warning)
    assert not at.metric


# -- the Churn-risk page ----------------------------------------------------------------
def churn_app(db: Path, monkeypatch, **params) -> AppTest:
    at = app(db, monkeypatch, lang="en", **params)
    at.run()
    at.switch_page("pages/churn_page.py").run()
    return at


def test_churn_page_headline_matches_the_risk_list(demo_db, monkeypatch):
    from metrics import churn
    from metrics import clv_view as CV
    from metrics.filters import ViewState

    s = Store(demo_db)
    first, last = kpis.data_bounds(s)
    f = ViewState().filters(as_of=last, first=first)
    sc = CV.score(s, f, as_of=last)
    lst = churn.risk_list(s, f, as_of=last, bgnbd=sc.bgnbd, gg=sc.gg, monthly_discount_rate=CV.monthly_rate(0.10))
    s.close()
    head = churn.risk_summary(lst, 0.5)
    at = churn_app(demo_db, monkeypatch)
    assert not at.exception, at.exception
    assert f"{head['at_risk']:,} customers" in texts(at)
    assert by_label(at.metric, "Customers at risk").value == f"{head['at_risk']:,}"
    assert "Targeting the riskiest 10%" in texts(at)
    assert len(at.get("download_button")) == 2


def test_churn_controls_filter_the_list_and_land_in_the_url(demo_db, monkeypatch):
    at = churn_app(demo_db, monkeypatch)
    before = int(by_label(at.metric, "Customers at risk").value.replace(",", ""))
    by_label(at.slider, "Risk threshold").set_value(80).run()
    by_label(at.slider, "Target the riskiest").set_value(20).run()
    by_label(at.multiselect, "RFM segment").set_value(["at_risk", "cant_lose"]).run()
    assert not at.exception, at.exception
    after = int(by_label(at.metric, "Customers at risk").value.replace(",", ""))
    assert after < before
    qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert qp["k_thr"] == "80" and qp["k_top"] == "20" and qp["k_seg"] == "at_risk|cant_lose"
    assert "Targeting the riskiest 20%" in texts(at)
    # contacts stay masked unless asked for, and the choice is not kept in the URL
    at.toggle(key="k_contacts").set_value(True).run()
    assert not at.exception, at.exception
    assert "with email and phone" in texts(at) and "k_contacts" not in at.query_params
    again = churn_app(demo_db, monkeypatch, k_thr="80", k_seg="at_risk|nonsense", k_top="999")
    assert not again.exception, again.exception
    assert by_label(again.slider, "Risk threshold").value == 80
    assert by_label(again.multiselect, "RFM segment").value == ["at_risk"]
    assert by_label(again.slider, "Target the riskiest").value == 50


def test_churn_page_explains_when_there_is_too_little_data(tiny_db, monkeypatch):
    at = churn_app(tiny_db, monkeypatch, period="all")
    assert not at.exception, at.exception
    assert any("not enough data" in w.value for w in at.warning)


@pytest.fixture()
def short_db(tmp_path) -> Path:
    """150 customers, two orders each, all within 30 days: too short a history."""
    import polars as pl
    from datetime import datetime, timedelta

    n = 150
    orders = pl.DataFrame({
        "order_id": [f"S{i}-{j}" for i in range(n) for j in range(2)],
        "customer_id": [f"C{i}" for i in range(n) for _ in range(2)],
        "ordered_at": [datetime(2026, 6, 1) + timedelta(days=(i % 15) + 15 * j) for i in range(n) for j in range(2)],
        "revenue": [100_000.0] * (2 * n), "status": ["completed"] * (2 * n)})
    return make_db(tmp_path / "short.duckdb", {"orders": orders})


@pytest.mark.parametrize("page", ["pages/clv_page.py", "pages/churn_page.py"])
def test_model_pages_explain_a_short_history_instead_of_failing(short_db, monkeypatch, page):
    at = app(short_db, monkeypatch, lang="en", period="all")
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert at.warning or at.info or at.error  # a plain message: too short, not enough, or why the fit failed


def test_junk_numbers_in_the_url_fall_back_to_the_defaults(demo_db, monkeypatch):
    at = clv_app(demo_db, monkeypatch, c_disc="nan", c_margin="inf", c_cal="not-a-date")
    assert not at.exception, at.exception
    assert by_label(at.number_input, "Annual discount rate (%)").value == 10.0
    assert by_label(at.number_input, "Margin when orders carry none (%)").value == 30.0
    assert "c_disc" not in at.query_params and "c_margin" not in at.query_params


# -- the Loyalty page ------------------------------------------------------------------------
def test_loyalty_page_shows_the_causal_answer_beside_the_naive_one(demo_db, monkeypatch):
    from metrics import loyalty as L

    s = Store(demo_db)
    first, last = kpis.data_bounds(s)
    f = ViewState().filters(as_of=last, first=first)
    v = L.loyalty_view(s, f, as_of=last, value_per_point=100.0, margin_rate=0.3)
    s.close()
    at = app(demo_db, monkeypatch, lang="en")
    at.run()
    at.switch_page("pages/loyalty_page.py").run()
    assert not at.exception, at.exception
    body = texts(at)
    assert f"{v.causal.matched:,} members compared" in body
    assert "is larger than the effect because loyal customers are the ones who join" in body
    assert "of new customers in the period were referred" in body
    verdicts = [m.value for m in [*at.success, *at.error, *at.warning, *at.info]]
    assert any(("pays" in m) or ("loses" in m) or ("cannot be shown" in m) or ("unknown" in m) for m in verdicts)
    by_label(at.number_input, "Extra cost (₫)").set_value(1e9).run()
    assert not at.exception, at.exception
    qp = {k: (x[0] if isinstance(x, list) else x) for k, x in at.query_params.items()}
    assert qp["l_extra"] == "1000000000.0"


def test_loyalty_page_tiers_by_rule_curves_referral_roi_and_downloads(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, lang="en")
    at.run()
    at.switch_page("pages/loyalty_page.py").run()
    assert not at.exception, at.exception
    body = texts(at)
    assert "customers joined between the two dates; 0 members changed tier" in body  # recorded tiers: joins only
    assert "Three months after their first purchase" in body  # the retention curves' reading
    assert any(m.label == "Referral ROI" for m in at.metric)
    headers = list(at.dataframe[0].value.columns)
    assert "Predicted 12-month CLV" in headers and "Historical CLV" in headers
    by_label(at.text_input, "Tier rule by spend (optional)").set_value(
        "silver 2,000,000; gold 6.000.000; platinum 15000000").run()
    assert not at.exception, at.exception
    moved = re.search(r"; ([\d,]+) members changed tier", texts(at))
    assert moved and int(moved.group(1).replace(",", "")) > 0  # members climb tiers as they spend
    assert at.query_params["l_rule"] in ("silver 2,000,000; gold 6.000.000; platinum 15000000",
                                         ["silver 2,000,000; gold 6.000.000; platinum 15000000"])
    by_label(at.text_input, "Tier rule by spend (optional)").set_value("gold lots").run()
    assert not at.exception, at.exception
    assert any("The tier rule cannot be read" in e.value for e in at.error)


def test_segments_page_segments_personas_and_rules_from_the_link(demo_db, monkeypatch):
    at = app(demo_db, monkeypatch, lang="en")
    at.run()
    at.switch_page("pages/segments_page.py").run()
    assert not at.exception, at.exception
    body = texts(at)
    assert "bring in the most revenue" in body and "k-means picked" in body
    seg = next(d.value for d in at.dataframe if "Suggested action" in d.value.columns)
    assert "Champions" in seg["Segment"].to_list()
    assert "Mean predicted 12-month CLV" in seg.columns and "NPS" in seg.columns
    assert any("Favourite channel" in m.value for m in at.markdown)  # persona cards
    # A shared link with edited rules: everything above R 3 is 'champions'.
    code = "champions:4-5:*;hibernating:*:*"
    at2 = app(demo_db, monkeypatch, lang="en", s_rules=code)
    at2.run()
    at2.switch_page("pages/segments_page.py").run()
    assert not at2.exception, at2.exception
    seg2 = next(d.value for d in at2.dataframe if "Suggested action" in d.value.columns)
    counts = dict(zip(seg2["Segment"], seg2["Customers"]))
    assert counts["Champions"] > counts_champions(seg) and counts["Loyal"] == 0
    assert at2.query_params["s_rules"] in (code, [code])


def test_surveys_page_scores_say_do_drivers_and_search(demo_db, monkeypatch):
    from dataclasses import replace as dc_replace

    from metrics import surveys as S

    s = Store(demo_db)
    first, last = kpis.data_bounds(s)
    f = ViewState().filters(as_of=last, first=first)
    nps = {r["metric"]: r for r in S.score_summary(s, f).iter_rows(named=True)}["nps"]
    start, end = S.observed_period(f, as_of=last, horizon_days=90)
    sd = {r["category"]: r for r in S.say_vs_do(s, dc_replace(f, start=start, end=end), as_of=last,
                                                 horizon_days=90).table.iter_rows(named=True)}
    s.close()
    at = app(demo_db, monkeypatch, lang="en", v_by="persona", v_h="90", v_q="giao hang")
    at.run()
    at.switch_page("pages/surveys_page.py").run()
    assert not at.exception, at.exception
    body = texts(at)
    assert f"NPS is {nps['value']:.0f}" in body and f"{nps['n']:,} answers" in body
    assert f"{sd['promoter']['retention']:.0%} of promoters bought again against" in body
    assert "Fix first:" in body or "No touchpoint is both" in body
    assert "anonymous answers cannot be tied to a customer" in body  # the persona breakdown leaves them out
    groups = next(d.value for d in at.dataframe if "Group" in d.value.columns)["Group"].to_list()
    assert groups and not any(g.isdigit() for g in groups)  # personas by name, not number
    found = next(d.value for d in at.dataframe if "Comment" in d.value.columns and "Answered" in d.value.columns
                 and "Score" not in d.value.columns)
    assert len(found) and all("giao hàng" in c.lower() or "giao hang" in c.lower() for c in found["Comment"])
    qp = {k: (x[0] if isinstance(x, list) else x) for k, x in at.query_params.items()}
    assert (qp["v_by"], qp["v_h"], qp["v_q"]) == ("persona", "90", "giao hang")


def counts_champions(frame) -> int:
    return dict(zip(frame["Segment"], frame["Customers"]))["Champions"]


def test_loyalty_page_says_what_it_cannot_estimate(tiny_db, monkeypatch):
    at = app(tiny_db, monkeypatch, lang="en", period="all")
    at.run()
    at.switch_page("pages/loyalty_page.py").run()
    assert not at.exception, at.exception
    infos = [i.value for i in at.info]
    assert any("No member has full windows" in i for i in infos)  # one member, joined weeks before the end
    assert "Members have redeemed" not in texts(at)  # no points: no sentence about them


# -- hosted mode: sign-in, workspaces, roles (the identity provider stubbed) ------------------------
@pytest.fixture()
def hosted(tmp_path, monkeypatch):
    """Two workspaces under a temporary root: alpha (the tiny shop; boss admin, vic
    viewer) and beta (one customer BETA-1; other admin). Sign-in is stubbed: the test
    sets who is signed in with ``as_user``."""
    from data import config
    from data.access import Principal, Registry
    from pages.ui import frame

    root = tmp_path / "workspaces"
    reg = Registry(root, secret=config.audit_secret())
    reg.create_workspace(Principal("boss@team.vn", "alpha", "admin"), "alpha")
    reg.create_workspace(Principal("other@team.vn", "beta", "admin"), "beta")
    reg.set_member(Principal("boss@team.vn", "alpha", "admin"), "vic@team.vn", "viewer")
    a = Store(reg.workspace_path("alpha"))
    a.load_frames(tiny_frames(), kind="test")
    a.close()
    b = Store(reg.workspace_path("beta"))
    b.load_frames({"customers": pl.DataFrame({"customer_id": ["BETA-1"]}),
                   "orders": pl.DataFrame({"order_id": ["BO1"], "customer_id": ["BETA-1"],
                                           "ordered_at": [date(2024, 3, 1)], "revenue": [999.0],
                                           "status": ["completed"]}).with_columns(pl.col("ordered_at").cast(pl.Datetime))},
                  kind="test")
    b.close()
    reg.close()
    monkeypatch.setattr(config, "auth_configured", lambda *a, **k: True)
    monkeypatch.setattr(config, "workspaces_root", lambda *a, **k: root)
    user = {"email": None}
    monkeypatch.setattr(frame, "signed_in_email", lambda: user["email"])

    def as_user(email):
        user["email"] = email
    return root, as_user


def audit_rows(root, sql: str) -> list[tuple]:
    """The app's own registry (one connection per file and process)."""
    from data import config
    from pages.ui import frame

    return frame.get_registry(str(root), None, config.audit_secret())._con.sql(sql).fetchall()


def hosted_app(monkeypatch, **params) -> AppTest:
    monkeypatch.delenv("CM_DB_PATH", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    return at


def test_hosted_mode_shows_only_the_sign_in_screen_until_signed_in(hosted, monkeypatch):
    _, as_user = hosted
    at = hosted_app(monkeypatch, lang="en")
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Sign in to continue"]
    assert len(at.metric) == 0 and len(at.selectbox) == 0 and len(at.dataframe) == 0


def test_hosted_members_see_only_their_workspace(hosted, monkeypatch):
    root, as_user = hosted
    as_user("vic@team.vn")
    at = hosted_app(monkeypatch, lang="en", ws="alpha", period="all")
    at.run()
    assert not at.exception, at.exception
    assert len(at.metric) > 0  # alpha's overview
    assert "vic@team.vn · viewer · alpha" in [c.value for c in at.sidebar.caption]
    qp = {k: (x[0] if isinstance(x, list) else x) for k, x in at.query_params.items()}
    assert qp["ws"] == "alpha"  # the workspace stays in the link
    # The other team's workspace, by URL: refused and logged.
    at2 = hosted_app(monkeypatch, lang="en", ws="beta")
    at2.run()
    assert not at2.exception, at2.exception
    assert [t.value for t in at2.title] == ["You have no access to this workspace"]
    assert len(at2.metric) == 0
    for hostile in ("x' OR 1=1--", "<img src=x onerror=alert(1)>", "../beta"):
        at3 = hosted_app(monkeypatch, lang="en", ws=hostile)
        at3.run()
        assert not at3.exception and [t.value for t in at3.title] == ["You have no access to this workspace"]
    log = audit_rows(root, "SELECT actor, action, outcome FROM audit_log WHERE outcome = 'denied'")
    assert ("vic@team.vn", "browse", "denied") in log


def test_a_viewer_cannot_rebuild_or_export_unmasked(hosted, monkeypatch):
    root, as_user = hosted
    as_user("vic@team.vn")
    at = hosted_app(monkeypatch, lang="en", ws="alpha")
    at.run()
    at.switch_page("pages/data_page.py").run()
    assert not at.exception, at.exception
    at.checkbox(key="demo_confirm").check()
    next(b for b in at.button if b.label == "Rebuild demo data").click().run()
    assert not at.exception, at.exception
    assert any("A viewer cannot do this" in e.value for e in at.error)
    from pages.ui import frame

    assert frame.get_store(str(root / "alpha.duckdb")).scalar("SELECT count(*) FROM customers") == 6  # unchanged
    # Contacts in clear are an admin's: the switch is off and locked for a viewer.
    at.switch_page("pages/churn_page.py").run()
    assert not at.exception, at.exception
    toggles = [t for t in at.toggle if t.key == "k_contacts"]
    assert all(t.disabled and not t.value for t in toggles)
    log = audit_rows(root, "SELECT actor, action, outcome FROM audit_log")
    assert ("vic@team.vn", "rebuild_demo", "denied") in log and ("vic@team.vn", "sign_in", "ok") in log


def test_pages_hand_tables_to_streamlit_as_arrow():
    """Streamlit converts a Polars frame with DataFrame.to_pandas(), which can deadlock
    the server against a map_elements in another session (Polars 2.1.0); every page
    table goes through frame.dataframe (Arrow), and the rules editor gets pandas made
    from Arrow."""
    for page in (ROOT / "pages").glob("*_page.py"):
        text = page.read_text(encoding="utf-8")
        direct = [m.group(0) for m in re.finditer(r"\b(\w+)\.dataframe\(", text) if m.group(1) != "frame"]
        assert not direct, (page.name, direct)
        for m in re.finditer(r"data_editor\(\s*([^,]+),", text):
            assert "to_arrow().to_pandas()" in m.group(1), page.name


def test_the_warm_up_session_is_a_viewer_of_the_workspace_in_its_link_and_nothing_more(hosted, monkeypatch):
    """Hosted, the server's own warm-up (pages.ui.warmup, recognised by its token) runs
    a workspace's pages as a viewer without signing in; without the token, or for a
    workspace that does not exist, nothing is shown."""
    from pages.ui import warmup

    root, _ = hosted
    monkeypatch.setattr(warmup, "is_warmup_session", lambda headers, ip: True)
    at = hosted_app(monkeypatch, lang="en", ws="alpha", period="all")
    at.run()
    assert not at.exception, at.exception
    assert len(at.metric) > 0  # alpha's overview
    assert f"{warmup.USER} · viewer · alpha" in [c.value for c in at.sidebar.caption]
    signed_in = audit_rows(root, "SELECT count(*) FROM audit_log WHERE action = 'sign_in'")[0][0]
    assert signed_in == 0  # not a sign-in
    for ws in ("gamma", "../alpha", ""):
        at = hosted_app(monkeypatch, lang="en", ws=ws)
        at.run()
        assert not at.exception and len(at.metric) == 0 and len(at.title) == 0, ws
    monkeypatch.setattr(warmup, "is_warmup_session", lambda headers, ip: False)
    at = hosted_app(monkeypatch, lang="en", ws="alpha")
    at.run()
    assert [t.value for t in at.title] == ["Sign in to continue"]
