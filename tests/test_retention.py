"""Retention against the tiny table of tests/conftest.py, computed by hand.

Completed orders (C has only a cancelled one, E's second is refunded):
A 10 Jan, 20 Feb, 5 Mar · B 10 Feb, 31 Mar 23:30 · D 5 Jan · E 15 Mar ·
F 28 Feb, 1 Apr 00:00. The data ends on 1 April 2024 (a Monday), so April and the
week of 1 April are incomplete.

Monthly cohorts: January = A, D; February = B, F; March = E.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import polars as pl
import pytest
from scipy import stats

from data.store import Store
from metrics import retention as R
from metrics.filters import Filters

AS_OF = date(2024, 4, 1)


def f(**kw) -> Filters:
    return Filters(start=date(2024, 1, 1), end=AS_OF, **kw)


def rows(table: pl.DataFrame, *cols: str) -> list[tuple]:
    return table.select(*cols).rows()


def test_monthly_cohort_triangle_both_definitions(tiny_store):
    t = R.cohort_table(tiny_store, f(), R.CohortSpec(), as_of=AS_OF)
    jan, feb, mar = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)
    assert rows(t, "cohort", "k", "size", "active", "retained_later", "repeaters", "complete") == [
        (jan, 0, 2, 2, 2, 0, True),   # A and D
        (jan, 1, 2, 1, 1, 1, True),   # A in February, and now a repeater
        (jan, 2, 2, 1, 1, 1, True),   # A in March (its last month)
        (jan, 3, 2, 0, 0, 1, False),  # April: nobody yet, and April is not over
        (feb, 0, 2, 2, 2, 0, True),   # B and F
        (feb, 1, 2, 1, 2, 1, True),   # B at 23:30 on 31 March is March; F comes back later
        (feb, 2, 2, 1, 1, 2, False),  # F at 00:00 on 1 April is April
        (mar, 0, 1, 1, 1, 0, True),   # E (its refunded order does not count)
        (mar, 1, 1, 0, 0, 0, False),
    ]
    assert rows(t, "revenue")[:3] == [(180.0,), (200.0,), (300.0,)]
    # B's first order has no margin: 50 x the default margin rate 0.3 = 15.
    assert rows(t.filter(pl.col("cohort") == feb), "margin") == [(25.0,), (45.0,), (20.0,)]
    assert rows(t, "orders") == [(2,), (1,), (1,), (0,), (2,), (1,), (1,), (1,), (0,)]


def test_immature_cells_are_missing_not_zero(tiny_store):
    t = R.cohort_table(tiny_store, f(), R.CohortSpec(), as_of=AS_OF)
    # March has reached k = 1 (April) only; k = 2 does not exist yet.
    assert t.filter(pl.col("cohort") == date(2024, 3, 1))["k"].to_list() == [0, 1]
    values = R.cohort_values(t, "retention")
    assert values.filter((pl.col("cohort") == date(2024, 3, 1)) & (pl.col("k") == 2)).height == 0


def test_weekly_cohorts_and_the_month_end_edges(tiny_store):
    t = R.cohort_table(tiny_store, f(), R.CohortSpec(grain="week"), as_of=AS_OF)
    # B: Saturday 10 Feb -> week of Monday 5 Feb; 23:30 on Sunday 31 March -> week of
    # 25 March, seven weeks later. F: Wednesday 28 Feb -> week of 26 Feb; 00:00 on
    # Monday 1 April -> a new week, five weeks later and not over.
    b = t.filter(pl.col("cohort") == date(2024, 2, 5))
    assert b.filter(pl.col("active") > 0)["k"].to_list() == [0, 7]
    assert b["k"].max() == 8 and b.filter(pl.col("k") == 8)["complete"].to_list() == [False]
    fw = t.filter(pl.col("cohort") == date(2024, 2, 26))
    assert rows(fw.filter(pl.col("active") > 0), "k", "complete") == [(0, True), (5, False)]
    assert fw["retained_later"].to_list() == [1, 1, 1, 1, 1, 1]
    assert R.period_index(date(2024, 3, 31), "week") + 1 == R.period_index(date(2024, 4, 1), "week")
    assert R.period_start(R.period_index(date(2024, 2, 28), "week"), "week") == date(2024, 2, 26)


def test_quarterly_and_recurring_cohorts(tiny_store):
    q = R.cohort_table(tiny_store, f(), R.CohortSpec(grain="quarter"), as_of=AS_OF)
    # Q1 holds everyone: A, B, D, E, F; in Q2 (not over) only F has ordered.
    assert rows(q, "cohort", "k", "size", "active", "repeaters") == [
        (date(2024, 1, 1), 0, 5, 5, 2), (date(2024, 1, 1), 1, 5, 1, 3)]
    r = R.cohort_table(tiny_store, f(), R.CohortSpec(entry="recurring"), as_of=AS_OF)
    # Recurring entry: February's cohort is everyone active in February (A, B, F).
    feb = r.filter(pl.col("cohort") == date(2024, 2, 1))
    assert rows(feb, "k", "size", "active", "retained_later", "repeaters") == [
        (0, 3, 3, 3, 0), (1, 3, 2, 3, 2), (2, 3, 1, 1, 3)]


def test_segments_and_segment_filter(tiny_store):
    t = R.cohort_table(tiny_store, f(), R.CohortSpec(split="loyalty"), as_of=AS_OF)
    jan = t.filter((pl.col("cohort") == date(2024, 1, 1)) & (pl.col("k") == 1))
    assert rows(jan.sort("segment"), "segment", "size", "active") == [("member", 2, 1)]  # A and D are members
    only = R.cohort_table(tiny_store, f(), R.CohortSpec(split="region", values=("Hà Nội",)), as_of=AS_OF)
    assert set(only["segment"]) == {"Hà Nội"} and only.filter(pl.col("k") == 0)["size"].sum() == 2  # A, B


def test_metric_switch_values(tiny_store):
    t = R.cohort_table(tiny_store, f(), R.CohortSpec(), as_of=AS_OF)
    jan = pl.col("cohort") == date(2024, 1, 1)

    def vals(metric):
        return R.cohort_values(t, metric).filter(jan)["value"].to_list()

    assert vals("retention") == [1.0, 0.5, 0.5, 0.0]
    assert vals("unbounded") == [1.0, 0.5, 0.5, 0.0]
    assert vals("repeat_rate") == [0.0, 0.5, 0.5, 0.5]
    assert vals("revenue_per_customer") == [90.0, 100.0, 150.0, 0.0]
    assert vals("cum_revenue_per_customer") == [90.0, 190.0, 340.0, 340.0]
    assert vals("cum_margin_per_customer") == [25.0, 55.0, 100.0, 100.0]
    assert vals("net_revenue_retention") == [1.0, 200 / 180, 300 / 180, 0.0]
    rel = R.relative_to_previous(R.cohort_values(t, "retention")).filter(jan)["value"].to_list()
    assert rel == [None, 0.5, 1.0, 0.0]


def test_average_curve_weighted_and_simple(tiny_store):
    t = R.cohort_table(tiny_store, f(), R.CohortSpec(), as_of=AS_OF)
    v = R.cohort_values(t, "retention")
    w = R.average_curve(v)
    # k = 1, complete cells only: January 1 of 2, February 1 of 2 (March's k = 1 is April).
    k1 = w.filter(pl.col("k") == 1).row(0, named=True)
    assert (k1["value"], k1["cohorts"], k1["customers"]) == (0.5, 2, 4)
    assert k1["low"] == pytest.approx(0.15003, abs=1e-4) and k1["high"] == pytest.approx(0.84997, abs=1e-4)
    s = R.average_curve(v, weighted=False)
    assert s.filter(pl.col("k") == 2)["value"].to_list() == [0.5]  # January only: February's k = 2 is April
    trend = R.n_period_trend(v, 1)
    assert rows(trend, "cohort", "value") == [(date(2024, 1, 1), 0.5), (date(2024, 2, 1), 0.5)]


def test_repeat_rates_by_cohort(tiny_store):
    t = R.cohort_table(tiny_store, f(), R.CohortSpec(), as_of=AS_OF)
    r = R.repeat_rates(t)
    assert rows(r, "cohort", "size", "repeaters", "rate") == [
        (date(2024, 1, 1), 2, 1, 0.5), (date(2024, 2, 1), 2, 2, 1.0), (date(2024, 3, 1), 1, 0, 0.0)]


def test_base_flow_and_lifecycle(tiny_store):
    flow, life = R.base_flow(tiny_store, f(inactivity_days=30), as_of=AS_OF)
    # Base at 1 Feb: A, D; at 1 Mar: A, B, F; at 1 Apr: A, B, E (tests/test_kpis.py).
    assert rows(flow, "month", "base_start", "new", "reactivated", "churned", "base_end") == [
        (date(2024, 1, 1), 0, 2, 0, 0, 2),
        (date(2024, 2, 1), 2, 2, 0, 1, 3),  # D churned; B and F new
        (date(2024, 3, 1), 3, 1, 0, 1, 3),  # F churned; E new
    ]
    assert flow["churn_rate"].to_list() == [None, 0.5, 1 / 3]
    assert flow["retention_rate"].to_list()[1:] == pytest.approx(flow["classic_retention"].to_list()[1:])
    assert rows(life, "month", "new", "returning", "resurrected", "dormant", "complete") == [
        (date(2024, 1, 1), 2, 0, 0, 0, True),
        (date(2024, 2, 1), 2, 1, 0, 1, True),
        (date(2024, 3, 1), 1, 2, 0, 1, True),
        (date(2024, 4, 1), 0, 0, 1, 3, False),  # F resurrected; A, B, E dormant
    ]


@pytest.fixture()
def flow_store():
    """W = 10 days. X: 3 Jan (out of the base again by 1 Feb), 25 Mar (back:
    reactivated). Y: 28 Jan (in the base at 1 Feb), 5 Feb (gone again by 1 Mar:
    churned in a month in which it ordered)."""
    store = Store(":memory:")
    orders = pl.DataFrame({
        "order_id": ["1", "2", "3", "4"], "customer_id": ["X", "X", "Y", "Y"],
        "ordered_at": [datetime(2024, 1, 3, 12), datetime(2024, 3, 25, 12), datetime(2024, 1, 28, 12),
                       datetime(2024, 2, 5, 12)],
        "revenue": [1.0, 1.0, 1.0, 1.0], "status": ["completed"] * 4})
    store.load_frames({"orders": orders}, kind="test")
    yield store
    store.close()


def test_base_flow_reactivation_and_churn_within_an_active_month(flow_store):
    flow, _ = R.base_flow(flow_store, Filters(start=date(2024, 1, 1), end=date(2024, 3, 31), inactivity_days=10),
                          as_of=date(2024, 3, 31))
    assert rows(flow, "month", "base_start", "new", "reactivated", "churned", "base_end") == [
        (date(2024, 1, 1), 0, 1, 0, 0, 1),  # Y enters; X came and went within January
        (date(2024, 2, 1), 1, 0, 0, 1, 0),  # Y ordered on 5 Feb but is gone by 1 Mar
        (date(2024, 3, 1), 0, 0, 1, 0, 1),  # X is back: reactivated
    ]


@pytest.fixture(scope="module")
def demo_store():
    from data import demo
    from metrics import kpis

    store = Store(":memory:")
    demo.build(store, customers=1_500, seed=4, end=date(2026, 6, 30))
    first, last = kpis.data_bounds(store)
    yield store, last, first
    store.close()


def test_flow_identity_and_the_kpi_base_on_demo_data(demo_store):
    store, last, first = demo_store
    from metrics import kpis

    f_all = Filters(start=first, end=last, inactivity_days=60)
    flow, _ = R.base_flow(store, f_all, as_of=last)
    assert flow.height >= 12
    assert (flow["base_end"] == flow["base_start"] + flow["new"] + flow["reactivated"] - flow["churned"]).all()
    assert (flow["base_end"].head(-1) == flow["base_start"].tail(-1)).all()
    row = flow.row(-2, named=True)
    month = row["month"]
    w = kpis.window_summary(store, f_all, [(month, R.period_end(R.period_index(month, "month"), "month"))]).row(0, named=True)
    assert (w["base_start"], w["base_end"], w["churned"]) == (row["base_start"], row["base_end"], row["churned"])


def test_time_to_repeat_kaplan_meier_with_censoring(tiny_store):
    km = R.time_to_repeat(tiny_store, f(), as_of=AS_OF)
    # A 41 days, B 50 (23:30), F 32 (00:00): events; D (87 days) and E (17) censored
    # at the end of 1 April.
    assert rows(km, "days", "at_risk", "events", "censored") == [
        (17, 5, 0, 1), (32, 4, 1, 0), (41, 3, 1, 0), (50, 2, 1, 0), (87, 1, 0, 1)]
    assert km["survival"].to_list() == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.25])


def test_kaplan_meier_matches_the_textbook_and_scipy():
    # Freireich et al. (1963), 6-MP arm, as in Kleinbaum & Klein, Survival Analysis,
    # table 2.1: weeks in remission, + = censored.
    events = [6, 6, 6, 7, 10, 13, 16, 22, 23]
    censored = [6, 9, 10, 11, 17, 19, 20, 25, 32, 32, 34, 35]
    count = lambda xs: {t: xs.count(t) for t in set(xs)}  # noqa: E731
    km = R.kaplan_meier(count(events), count(censored))
    at_events = km.filter(pl.col("events") > 0)
    assert at_events["survival"].round(4).to_list() == [0.8571, 0.8067, 0.7529, 0.6902, 0.6275, 0.5378, 0.4482]
    ref = stats.ecdf(stats.CensoredData(uncensored=events, right=censored)).sf
    times = at_events["days"].to_numpy()
    assert np.allclose(at_events["survival"].to_numpy(), ref.evaluate(times))
    ci = ref.confidence_interval(0.95, method="log-log")
    assert np.allclose(at_events["low"].to_numpy(), ci.low.evaluate(times), atol=1e-9)
    assert np.allclose(at_events["high"].to_numpy(), ci.high.evaluate(times), atol=1e-9)


def test_kaplan_meier_agrees_with_scipy_on_generated_data():
    rng = np.random.default_rng(3)
    t = rng.exponential(40, 2000).astype(int)
    c = rng.uniform(0, 120, 2000).astype(int)
    event = t <= c
    obs = np.where(event, t, c)
    ev = {int(k): int(v) for k, v in zip(*np.unique(obs[event], return_counts=True))}
    ce = {int(k): int(v) for k, v in zip(*np.unique(obs[~event], return_counts=True))}
    km = R.kaplan_meier(ev, ce)
    ref = stats.ecdf(stats.CensoredData(uncensored=obs[event], right=obs[~event])).sf
    assert np.allclose(km["survival"].to_numpy(), ref.evaluate(km["days"].to_numpy()))


def test_gaps_and_the_suggested_window(tiny_store):
    g = R.gap_summary(tiny_store, f())
    # A: 41 and 14 days (2024 is a leap year), B: 50, F: 33.
    assert rows(g["bins"], "gap", "n") == [(14, 1), (33, 1), (41, 1), (50, 1)]
    assert (g["p50"], g["p90"]) == (33, 50)
    assert R.suggested_window(g) == 50
    assert R.suggested_window({"p90": 2}) == 7 and R.suggested_window({}) is None


def test_customers_behind_a_cell_are_masked(tiny_store):
    got = R.cell_customers(tiny_store, f(), R.CohortSpec(), cohort=date(2024, 1, 1), k=1)
    assert rows(got, "customer_id", "name", "orders", "revenue") == [("A", "An", 1, 200.0)]
    later = R.cell_customers(tiny_store, f(), R.CohortSpec(), cohort=date(2024, 2, 1), k=1, later=True)
    assert sorted(later["orders"].to_list()) == [1, 1] and later["revenue"].sum() == 220.0
    assert R.mask_id("KH0000052") == "KH•••••52"
    assert R.mask_name("Nguyễn Văn An") == "Nguyễn V. A."
    assert R.mask_email("lan.nguyen@example.vn") == "l***@example.vn"
    assert R.mask_phone("0912345678") == "09xx xxx 678"
    assert R.mask_phone("+84 912 345 678") == "09xx xxx 678" and R.mask_phone("12345") == "xx345"


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="grain"):
        R.CohortSpec(grain="day")
    with pytest.raises(ValueError, match="split"):
        R.CohortSpec(split="name; DROP TABLE orders")
    with pytest.raises(ValueError, match="metric"):
        R.cohort_values(pl.DataFrame(schema=R.COHORT_COLUMNS), "ltv")


@pytest.mark.parametrize("grain,split", [("month", "none"), ("week", "region"), ("quarter", "first_category"),
                                         ("month", "loyalty"), ("week", "acquisition_channel")])
def test_bitset_cohorts_agree_with_the_sql_cohorts_on_demo_data(demo_store, grain, split):
    """The per-customer bit pass (first-time entry) against the plain SQL of
    cohort_sql on the same orders: every cell, every column. Weeks span more than
    64 bits here, so several words per customer are exercised."""
    store, last, first = demo_store
    fl = Filters(start=first, end=last, channels=("shopee", "website", "zalo_oa"))
    spec = R.CohortSpec(grain=grain, split=split)
    fast = R.cohort_table(store, fl, spec, as_of=last)
    slow = R.shape_cohorts(store.query(*R.cohort_sql(fl, spec, margin_rate=0.3)), grain=grain, as_of=last)
    assert R.activity(store, fl, grain=grain).nbits > (64 if grain == "week" else 0)
    assert fast.height > 50
    assert fast.drop("revenue", "margin").equals(slow.drop("revenue", "margin"))
    assert fast["revenue"].to_list() == pytest.approx(slow["revenue"].to_list())
    assert fast["margin"].to_list() == pytest.approx(slow["margin"].to_list())


def test_counts_only_table_leaves_the_skipped_columns_null(demo_store):
    store, last, first = demo_store
    fl = Filters(start=date(2025, 7, 1), end=last)
    t = R.cohort_table(store, fl, R.CohortSpec(), as_of=last, repeaters=False, money=False)
    full = R.cohort_table(store, fl, R.CohortSpec(), as_of=last)
    assert t["repeaters"].null_count() == t["revenue"].null_count() == t.height
    assert t.select("cohort", "k", "size", "active", "retained_later").equals(
        full.select("cohort", "k", "size", "active", "retained_later"))


@pytest.mark.parametrize("window", [7, 45, 400])
def test_flow_from_bits_matches_the_kpi_base_every_month(demo_store, window):
    """Short windows (an order early in a month is out of the base by its end),
    long ones (bits beyond the data), each month against kpis.window_summary."""
    from metrics import kpis

    store, last, first = demo_store
    fl = Filters(start=first, end=last, inactivity_days=window, regions=("Hà Nội", "TP. Hồ Chí Minh"))
    flow, life = R.base_flow(store, fl, as_of=last)
    months = [(m, R.period_end(R.period_index(m, "month"), "month")) for m in flow["month"].to_list()]
    w = kpis.window_summary(store, fl, months)
    assert flow.height >= 12 and flow["base_start"].sum() > 1000
    assert w["base_start"].to_list() == flow["base_start"].to_list()
    assert w["base_end"].to_list() == flow["base_end"].to_list()
    assert w["churned"].to_list() == flow["churned"].to_list()
    assert (flow["base_end"] == flow["base_start"] + flow["new"] + flow["reactivated"] - flow["churned"]).all()
    active = life["new"] + life["returning"] + life["resurrected"]
    assert (active.head(-1) >= 0).all() and life["dormant"].sum() > 0


def test_trend_change_compares_the_earliest_cohorts_with_the_latest_size_weighted():
    d = [date(2024, m, 1) for m in range(1, 8)]
    # seven cohorts (two segments in the first): first three vs last three, size-weighted
    trend = pl.DataFrame({
        "cohort": [d[0], d[0], d[1], d[2], d[3], d[4], d[5], d[6]],
        "segment": ["a", "b", "a", "a", "a", "a", "a", "a"],
        "value": [0.10, 0.40, 0.20, 0.30, 0.90, 0.25, 0.35, 0.50],
        "size": [10, 30, 20, 20, 5, 40, 40, 20],
    })
    ch = R.trend_change(trend)
    # early: (0.1*10 + 0.4*30 + 0.2*20 + 0.3*20) / 80 = 23/80; late: (0.25*40 + 0.35*40 + 0.5*20) / 100
    assert ch["early"] == pytest.approx(23 / 80)
    assert ch["late"] == pytest.approx(34 / 100)
    assert ch["change"] == pytest.approx(34 / 100 - 23 / 80)
    assert ch["first"] == (d[0], d[2]) and ch["last"] == (d[4], d[6]) and ch["cohorts"] == 7
    # fewer than six cohorts: the earliest against the latest
    few = R.trend_change(trend.filter(pl.col("cohort") >= d[4]))
    assert few["early"] == pytest.approx(0.25) and few["late"] == pytest.approx(0.5)
    assert few["first"] == (d[4], d[4]) and few["last"] == (d[6], d[6])
    one = R.trend_change(trend.filter(pl.col("cohort") == d[6]))
    assert one["change"] is None and one["late"] == pytest.approx(0.5)
    assert R.trend_change(trend.head(0)) is None
