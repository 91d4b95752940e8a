"""KPIs against the tiny table of tests/conftest.py, computed by hand.

Inactivity window W = 30 days. March: s = 1 Mar, e = 1 Apr (exclusive); the base at the
start counts orders in [31 Jan, 1 Mar), at the end in [2 Mar, 1 Apr).

Per customer in March: A (orders 10 Jan, 20 Feb, 5 Mar) active, in base at both ends;
B (10 Feb, 31 Mar 23:30) active, both ends; C only a cancelled order: no customer;
D (5 Jan) in neither; E (15 Mar; a refunded order ignored) new, referred, end only;
F (28 Feb, 1 Apr 00:00) start only: churned.
"""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import pytest

from metrics import kpis
from metrics.filters import Filters
from metrics.stats import Z95
from tests.conftest import FEBRUARY, MARCH


def f(**kw) -> Filters:
    return Filters(start=MARCH[0], end=MARCH[1], inactivity_days=30, **kw)


def summary(store, filters, windows):
    return kpis.window_summary(store, filters, windows).drop("start", "end").to_dicts()


def test_window_summary_march_and_february(tiny_store):
    march, feb = summary(tiny_store, f(), [MARCH, FEBRUARY])
    assert march == {
        "revenue": 570.0, "revenue_returning": 450.0, "orders": 3, "active": 3, "new": 1, "referred_new": 1,
        "base_start": 3, "base_end": 3, "churned": 1, "repeaters": 2,
        "customers_to_date": 5, "margin_to_date": 310.0,  # B's first order: 50 x 0.3
    }
    assert feb == {
        "revenue": 290.0, "revenue_returning": 200.0, "orders": 3, "active": 3, "new": 2, "referred_new": 0,
        "base_start": 2, "base_end": 3, "churned": 1, "repeaters": 1,
        "customers_to_date": 4, "margin_to_date": 135.0,
    }


def test_period_kpis_values_and_changes(tiny_store):
    t = kpis.period_kpis(tiny_store, f(), comparison=FEBRUARY)
    got = {r["kpi"]: (r["value"], r["previous"]) for r in t.to_dicts()}
    assert t["kpi"].to_list() == list(got)  # one row per KPI
    expected = {
        "revenue": (570.0, 290.0),
        "orders": (3.0, 3.0),
        "active_customers": (3.0, 3.0),
        "new_customers": (1.0, 2.0),
        "customer_base": (3.0, 3.0),
        "retention_rate": (2 / 3, 1 / 2),
        "churn_rate": (1 / 3, 1 / 2),
        "repeat_rate": (2 / 3, 1 / 3),
        "aov": (190.0, 290 / 3),
        "purchase_frequency": (1.0, 1.0),
        "avg_historical_clv": (62.0, 33.75),
        "nps": (25.0, -100.0),  # March: 10, 6, 8 (anonymous), 9 -> (2 - 1) / 4
        "csat": (2 / 3, 0.0),  # March: 5, 3, 4
        "ces": (4.0, 7.0),  # March: 2, 4, 6
        "referral_rate": (1.0, 0.0),
        "returning_revenue_share": (450 / 570, 200 / 290),
    }
    assert set(got) == set(expected)
    for k, (v, p) in expected.items():
        assert got[k][0] == pytest.approx(v), k
        assert got[k][1] == pytest.approx(p), k
    row = t.filter(pl.col("kpi") == "churn_rate").row(0, named=True)
    assert row["n"] == 3 and row["previous_n"] == 2
    assert row["change"] == pytest.approx(1 / 3 - 1 / 2)


def test_retention_identity_e_minus_n_over_s(tiny_store):
    (m,) = summary(tiny_store, f(), [MARCH])
    entered = m["base_end"] - (m["base_start"] - m["churned"])  # E \ S
    assert (m["base_end"] - entered) / m["base_start"] == pytest.approx(1 - m["churned"] / m["base_start"])


def test_survey_intervals_and_sample_sizes(tiny_store):
    t = kpis.period_kpis(tiny_store, f(), comparison=FEBRUARY)
    nps = t.filter(pl.col("kpi") == "nps").row(0, named=True)
    se = math.sqrt((0.5 + 0.25 - 0.25**2) / 4)
    assert nps["n"] == 4
    assert nps["ci_low"] == pytest.approx(100 * (0.25 - Z95 * se))
    assert nps["ci_high"] == pytest.approx(100.0)  # clipped at the top of the scale
    ces = t.filter(pl.col("kpi") == "ces").row(0, named=True)
    assert ces["n"] == 3
    half = 4.302652729911275 * 2 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert (ces["ci_low"], ces["ci_high"]) == pytest.approx((4 - half, 4 + half))
    csat = t.filter(pl.col("kpi") == "csat").row(0, named=True)
    assert csat["n"] == 3 and 0 < csat["ci_low"] < 2 / 3 < csat["ci_high"] < 1


def test_channel_filter_applies_to_orders_and_responses(tiny_store):
    t = kpis.period_kpis(tiny_store, f(channels=("website",)), comparison=None)
    got = dict(zip(t["kpi"], t["value"]))
    # website orders: A 10 Jan, 20 Feb; B 10 Feb, 31 Mar. A lapses in March.
    assert got["revenue"] == 150.0 and got["active_customers"] == 1
    assert got["churn_rate"] == pytest.approx(1 / 2) and got["customer_base"] == 1
    assert got["nps"] == pytest.approx(-50.0)  # R2 (6) and R3 (8)
    assert t["previous"].is_null().all()


def test_region_filter_drops_anonymous_responses(tiny_store):
    t = kpis.period_kpis(tiny_store, f(regions=("TP. Hồ Chí Minh",)), comparison=None)
    got = {r["kpi"]: r for r in t.to_dicts()}
    assert got["revenue"]["value"] == 120.0
    assert got["churn_rate"]["value"] == 1.0  # F, the only customer in the base at the start
    assert got["nps"]["n"] == 1 and got["nps"]["value"] == 100.0  # only E's 9


def test_loyalty_filters(tiny_store):
    (mem,) = summary(tiny_store, f(loyalty="member"), [MARCH])
    (non,) = summary(tiny_store, f(loyalty="non_member"), [MARCH])
    assert (mem["revenue"], mem["active"], mem["base_start"], mem["churned"], mem["margin_to_date"]) == (300.0, 1, 1, 0, 200.0)
    assert (non["revenue"], non["active"], non["base_start"], non["churned"], non["repeaters"]) == (270.0, 2, 2, 1, 1)
    for c in ("revenue", "orders", "active", "new", "base_start", "base_end", "churned"):
        (every,) = summary(tiny_store, f(), [MARCH])
        assert mem[c] + non[c] == every[c], c


def test_period_without_orders_and_survey_without_answers(tiny_store):
    quiet = (date(2023, 6, 1), date(2023, 6, 30))
    t = kpis.period_kpis(tiny_store, Filters(start=quiet[0], end=quiet[1], inactivity_days=30), comparison=None)
    got = {r["kpi"]: r for r in t.to_dicts()}
    assert got["revenue"]["value"] == 0.0 and got["orders"]["value"] == 0.0
    for k in ("aov", "churn_rate", "retention_rate", "repeat_rate", "purchase_frequency",
              "avg_historical_clv", "nps", "csat", "ces", "referral_rate"):
        assert got[k]["value"] is None, k
    assert got["nps"]["n"] == 0 and got["nps"]["ci_low"] is None


def test_empty_store(empty_store):
    t = kpis.period_kpis(empty_store, f(), comparison=FEBRUARY)
    assert t.height == 16
    assert t.filter(pl.col("kpi") == "revenue")["value"][0] == 0.0
    m = kpis.monthly_kpis(empty_store, f(), first_month=date(2024, 1, 1), last_month=date(2024, 3, 1))
    assert m.height == 3 and m["revenue"].sum() == 0


def test_monthly_golden_table(tiny_store):
    m = kpis.monthly_kpis(tiny_store, f(), first_month=date(2024, 1, 1), last_month=date(2024, 4, 1))
    cols = ["month", "revenue", "revenue_new", "revenue_returning", "orders", "active_customers",
            "new_customers", "base_start", "customer_base", "churned", "churn_rate", "repeat_rate",
            "avg_historical_clv", "referral_rate", "nps", "nps_n", "complete"]
    expected = pl.DataFrame(
        {
            "month": [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1), date(2024, 4, 1)],
            "revenue": [180.0, 290.0, 570.0, 70.0],
            "revenue_new": [180.0, 90.0, 120.0, 0.0],
            "revenue_returning": [0.0, 200.0, 450.0, 70.0],
            "orders": [2, 3, 3, 1],
            "active_customers": [2, 3, 3, 1],
            "new_customers": [2, 2, 1, 0],
            # base at 00:00 on 1 Jan, 1 Feb, 1 Mar, 1 Apr; and at the next month's start
            "base_start": [0, 2, 3, 3],
            "customer_base": [2, 3, 3, 1],
            "churned": [0, 1, 1, 3],
            "churn_rate": [None, 1 / 2, 1 / 3, 1.0],
            "repeat_rate": [0.0, 1 / 3, 2 / 3, 1.0],
            "avg_historical_clv": [25.0, 33.75, 62.0, 66.0],
            "referral_rate": [0.0, 0.0, 1.0, None],
            "nps": [None, -100.0, 25.0, None],
            "nps_n": [0, 1, 4, 0],
            "complete": [True, True, True, False],
        }
    )
    got = m.select(cols)
    for c in cols:
        a, b = got[c].to_list(), expected[c].to_list()
        assert [x is None for x in a] == [y is None for y in b], c
        assert [x for x in a if x is not None] == pytest.approx([y for y in b if y is not None]), c


def test_monthly_agrees_with_window_summary_on_whole_months(tiny_store):
    m = kpis.monthly_kpis(tiny_store, f(), first_month=date(2024, 2, 1), last_month=date(2024, 3, 1))
    (feb, mar) = summary(tiny_store, f(), [FEBRUARY, MARCH])
    for row, w in zip(m.to_dicts(), (feb, mar)):
        assert (row["base_start"], row["customer_base"], row["churned"]) == (w["base_start"], w["base_end"], w["churned"])
        assert (row["revenue"], row["orders"], row["active_customers"], row["new_customers"]) == (w["revenue"], w["orders"], w["active"], w["new"])


def test_sql_binds_values_never_formats_them():
    hostile = "x' OR 1=1--"
    sql, params = f(channels=("website",), regions=(hostile,)).orders_sql()
    assert hostile not in sql and hostile in params.values()
