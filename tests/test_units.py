"""Formatting, translations, URL state, statistics and the layering rules."""

from __future__ import annotations

import ast
import re
from datetime import date
from pathlib import Path

import pytest

from metrics.catalogue import CATALOGUE, OVERVIEW_KPIS
from metrics.filters import ViewState, comparison_period, resolve_period, shift_years
from metrics.stats import mean_interval, nps_interval, nps_score, wilson_interval
from pages.ui import fmt
from pages.ui.i18n import STRINGS, t

ROOT = Path(__file__).resolve().parent.parent


# -- formats -------------------------------------------------------------------------
def test_vietnamese_and_english_numbers_money_and_dates():
    vi, en = fmt.Money("vi"), fmt.Money("en")
    assert vi.full(1234567) == "1.234.567 ₫"
    assert en.full(1234567) == "1,234,567 ₫"
    assert vi.short(12_345_678_900) == "12,35 tỷ ₫"
    assert en.short(12_345_678_900) == "₫12.35B"
    assert vi.short(881_702) == "881.702 ₫"  # below a million: in full
    assert vi.short(850_000_000) == "850,0 tr ₫"
    assert fmt.Money("en", "USD", 25_000).full(2_500_000) == "$100.00"
    assert fmt.Money("vi", "USD", 25_000).full(2_500_000) == "100,00 US$"
    assert fmt.Money("en", "USD", 25_000).short(-50_000_000_000) == "−$2.00M"
    assert fmt.percent(0.1234, "vi") == "12,3%" and fmt.percent(0.1234, "en") == "12.3%"
    assert fmt.points(-0.021, "vi") == "-2,1 đ.p." and fmt.points(0.021, "en") == "+2.1 pts"
    assert fmt.day(date(2026, 11, 3), "vi") == "03/11/2026"
    assert fmt.day(date(2026, 11, 3), "en") == "3 Nov 2026"
    assert fmt.month(date(2026, 1, 1), "vi") == "01/2026"
    assert fmt.number(None, "vi") == "—" and fmt.number(-1234.5, "vi", 1) == "−1.234,5"


def test_kpi_changes_by_unit():
    assert fmt.kpi_change("money", 120.0, 100.0, "en") == "+20.0%"
    assert fmt.kpi_change("count", 80.0, 100.0, "vi") == "-20,0%"
    assert fmt.kpi_change("rate", 0.30, 0.25, "en") == "+5.0 pts"
    assert fmt.kpi_change("score", 40.0, 45.5, "en") == "-5.5"
    assert fmt.kpi_change("money", 10.0, 0.0, "en") is None  # no relative change from zero
    assert fmt.kpi_change("rate", 0.3, None, "en") is None


# -- translations ----------------------------------------------------------------------
def test_every_string_has_both_languages():
    for key, (vi, en) in STRINGS.items():
        assert vi.strip() and en.strip(), key
        assert set(re.findall(r"{(\w+)}", vi)) == set(re.findall(r"{(\w+)}", en)), key


def test_every_key_used_in_the_pages_exists():
    used = set()
    for path in [ROOT / "app.py", *(ROOT / "pages").rglob("*.py")]:
        src = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"""\bt\(\s*["']([\w.]+)["']""", src))
        used |= set(re.findall(r"""ctx\.t\(\s*["']([\w.]+)["']""", src))
    assert used, "no translation keys found"
    assert used <= set(STRINGS), sorted(used - set(STRINGS))


def test_every_metric_on_screen_has_a_glossary_entry_in_both_languages():
    for key in OVERVIEW_KPIS:
        m = CATALOGUE[key]
        assert m.label("vi") and m.label("en") and m.definition("vi") and m.definition("en"), key
    assert len(OVERVIEW_KPIS) == 15


def test_translation_formats():
    assert t("side.as_of", "vi", date="01/02/2026") == "Dữ liệu đến 01/02/2026"


# -- URL state -----------------------------------------------------------------------
def test_view_state_round_trips_through_the_url():
    v = ViewState(period="custom", start=date(2026, 1, 1), end=date(2026, 3, 31), comparison="yoy",
                  channels=("shopee", "zalo_oa"), regions=("Hà Nội",), loyalty="non_member", lang="en",
                  currency="USD", fx=25_500.0, inactivity_days=60)
    qp = v.to_query_params()
    assert qp == {"period": "custom", "from": "2026-01-01", "to": "2026-03-31", "cmp": "yoy",
                  "channel": "shopee,zalo_oa", "region": "Hà Nội", "loyalty": "non_member", "lang": "en",
                  "cur": "USD", "fx": "25500", "window": "60"}
    assert ViewState.from_query_params(qp) == v
    assert ViewState().to_query_params() == {}  # defaults keep the URL clean
    # list-valued parameters (as Streamlit gives them) take the last value
    assert ViewState.from_query_params({"period": ["30d", "90d"]}).period == "90d"


@pytest.mark.parametrize("bad", [{"period": "1y"}, {"period": "custom"}, {"period": "custom", "from": "2026-02-31", "to": "x"},
                                 {"fx": "-3"}, {"fx": "abc"}, {"window": "0"}, {"window": "99999"}, {"channel": "tiktok"},
                                 {"lang": "fr"}, {"cmp": "DROP TABLE orders"}])
def test_invalid_url_values_fall_back_to_defaults(bad):
    v = ViewState.from_query_params(bad)
    d = ViewState()
    assert (v.period, v.fx, v.inactivity_days, v.channels, v.lang, v.comparison) == (
        d.period, d.fx, d.inactivity_days, d.channels, d.lang, d.comparison)


def test_periods_and_comparisons():
    as_of = date(2026, 3, 31)
    assert resolve_period("30d", as_of) == (date(2026, 3, 2), as_of)
    assert resolve_period("ytd", as_of) == (date(2026, 1, 1), as_of)
    assert resolve_period("all", as_of, first=date(2023, 4, 1)) == (date(2023, 4, 1), as_of)
    assert resolve_period("custom", as_of, custom=(date(2026, 2, 1), date(2026, 1, 1))) == (date(2026, 1, 1), date(2026, 2, 1))
    assert comparison_period(date(2026, 3, 1), date(2026, 3, 31), "prev") == (date(2026, 1, 29), date(2026, 2, 28))
    assert comparison_period(date(2024, 2, 29), date(2024, 3, 31), "yoy") == (date(2023, 2, 28), date(2023, 3, 31))
    assert comparison_period(date(2026, 3, 1), date(2026, 3, 31), "none") is None
    assert shift_years(date(2024, 2, 29), 1) == date(2025, 2, 28)


# -- statistics -------------------------------------------------------------------------
def test_intervals_against_known_values():
    lo, hi = wilson_interval(8, 10)  # Wilson (1927); 0.4902 to 0.9433
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (None, None)
    assert nps_score(50, 20, 100) == 30.0
    lo, hi = nps_interval(50, 20, 100)
    assert lo == pytest.approx(30 - 100 * 1.959963984540054 * ((0.7 - 0.09) / 100) ** 0.5)
    assert mean_interval(4.0, 2.0, 1) == (None, None)


# -- layering -------------------------------------------------------------------------
def test_metrics_and_data_never_import_streamlit_or_plotly():
    for folder in ("metrics", "data"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert not names & {"streamlit", "plotly"}, path


def test_chart_builders_never_import_streamlit():
    for name in ("charts.py", "fmt.py", "i18n.py"):
        src = (ROOT / "pages" / "ui" / name).read_text(encoding="utf-8")
        assert "import streamlit" not in src, name


# -- figures as data -------------------------------------------------------------------
def _monthly(shares, revenue=100_000_000.0):
    import polars as pl

    months = [date(2024 + (i // 12), i % 12 + 1, 1) for i in range(len(shares))]
    return pl.DataFrame({
        "month": months,
        "revenue_new": [revenue * (1 - s) for s in shares],
        "revenue_returning": [revenue * s for s in shares],
        "returning_revenue_share": shares,
        "complete": [True] * (len(shares) - 1) + [False],
    })


def test_new_vs_returning_figure_as_data():
    from pages.ui import charts

    m = _monthly([0.5, 0.6, 0.7])
    fig = charts.new_vs_returning(m, "en", fmt.Money("en"))
    returning, new, share = fig.data
    assert returning.name == "Returning customers" and new.name == "New customers"
    assert list(returning.y) == [50.0, 60.0, 70.0]  # ₫ million
    assert list(returning.customdata) == [50_000_000.0, 60_000_000.0, 70_000_000.0]
    assert list(share.y) == [50.0, 60.0, 70.0]
    assert list(returning.marker.opacity) == [1.0, 1.0, 0.45]  # the month in progress is paler
    assert fig.layout.title.text == "Revenue from new and returning customers"
    assert fig.layout.yaxis.title.text == "₫ million" and fig.layout.separators == ".,"
    assert [a.text for a in fig.layout.annotations] == ["month in progress"]
    vi = charts.new_vs_returning(m, "vi", fmt.Money("vi"))
    assert vi.layout.yaxis.title.text == "triệu ₫" and vi.layout.separators == ",."
    usd = charts.new_vs_returning(m, "en", fmt.Money("en", "USD", 25_000))
    assert list(usd.data[0].y) == [2000.0, 2400.0, 2800.0] and usd.layout.yaxis.title.text == "US$"


def test_reading_compares_with_the_same_month_a_year_earlier():
    from pages.ui import charts

    shares = [0.50] + [0.6] * 11 + [0.56, 0.9]  # Jan 2024 ... Jan 2025 (full), Feb 2025 in progress
    assert charts.reading_new_vs_returning(_monthly(shares), "en") == (
        "In Jan 2025, returning customers brought 56.0% of revenue, 6.0 pts more than a year earlier.")
    assert charts.reading_new_vs_returning(_monthly([0.4, 0.5]), "vi") == (
        "Tháng 01/2024, khách quay lại đóng góp 40,0% doanh thu.")


def test_english_nouns_agree_with_a_count_of_one():
    from pages.ui.i18n import t
    assert t("imp.undone", "en", id=3, removed="1", restored="0") == "Undid import #3: removed 1 row, restored 0."
    assert t("imp.undone", "en", id=3, removed="21", restored="1") == "Undid import #3: removed 21 rows, restored 1."
    assert t("imp.summary", "en", file="a.csv", read="1", bad="0") == "a.csv: 1 row read, 0 rejected."
    assert t("imp.summary", "en", file="a.csv", read="1,001", bad="0") == "a.csv: 1,001 rows read, 0 rejected."
    assert "1 dòng" in t("imp.summary", "vi", file="a.csv", read="1", bad="0")


def test_a_heatmap_click_reads_back_as_its_cohort_and_period():
    from datetime import date

    from pages.ui.retention_charts import picked_cell
    event = {"selection": {"points": [{"curve_number": 1, "x": "2", "y": "Mar 2026 · 113",
                                       "customdata": ["38", "113", "", "34%", "2026-03-01", 2]}]}}
    assert picked_cell(event) == (date(2026, 3, 1), 2)
    assert picked_cell({"selection": {"points": []}}) is None
    assert picked_cell(None) is None
    assert picked_cell({"selection": {"points": [{"customdata": ["x"]}]}}) is None  # not a cell
    assert picked_cell({"selection": {"points": [{"customdata": ["", "", "", "", "not a date", 1]}]}}) is None


def test_model_reasons_are_translated_and_unknown_ones_kept():
    from pages.ui.clv_charts import explain
    vi = explain(["Only 5 customers ..."], [("customers", {"n": 5, "need": 100})], None, None, {}, "vi")
    assert vi == ["Mới có 5 khách có đơn hoàn thành trong giai đoạn học; mô hình số lần mua cần ít nhất 100."]
    err = explain([], [], "The spend model found q = 0.9 <= 1 ...", "gg_q", {"q": 0.9}, "vi")
    assert err[0].startswith("Mô hình giá trị mỗi lần mua cho q = 0,9")
    assert explain([], [], "some new reason", "not_a_code", {}, "vi") == ["some new reason"]


def test_group_names_inside_a_title_keep_their_acronyms():
    from pages.ui.clv_charts import _in_sentence
    assert _in_sentence("RFM segment") == "RFM segment"
    assert _in_sentence("Acquisition channel") == "acquisition channel"
    assert _in_sentence("Phân khúc RFM") == "phân khúc RFM"
