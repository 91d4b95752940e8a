"""What the CLV page shows (metrics.clv_view): hand-computed tables for the Lorenz
curve, margin shares, the discount rate, the grade, acquisition costs and CLV : CAC;
known truth for the holdout check and the bootstrap (data simulated from BG/NBD)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from data.store import Store
from metrics import clv as M
from metrics import clv_view as V
from metrics.filters import Filters

ALL = Filters(start=date(2000, 1, 1), end=date(2030, 12, 31))


def test_monthly_rate_compounds_to_the_annual_rate():
    assert V.monthly_rate(0.0) == 0.0
    assert (1 + V.monthly_rate(0.10)) ** 12 == pytest.approx(1.10)
    assert V.monthly_rate(0.1268250301) == pytest.approx(0.01, rel=1e-6)
    with pytest.raises(M.ModelError):
        V.monthly_rate(-1.0)


def test_lorenz_and_top_share_by_hand():
    # values 50, 30, 10, 10, 0 (and a negative, counted as 0): total 100 over 6 customers
    values = [10, 50, 0, 30, -5, 10]
    curve = V.lorenz(values, points=7)  # shares 0, 1/6, ..., 1
    assert curve["share_value"].to_list() == pytest.approx([0, 0.5, 0.8, 0.9, 1.0, 1.0, 1.0])
    # top 20% = 1.2 customers: 50 + 0.2 x 30 = 56
    assert V.top_share(values, 0.2) == pytest.approx(0.56, abs=2e-3)
    assert V.top_share([0, 0, 0], 0.2) == 0.0


def test_margin_share_uses_the_customer_own_margin_within_0_and_1():
    summary = pl.DataFrame({"revenue": [200.0, 0.0, 100.0, 50.0], "margin": [50.0, 0.0, -20.0, 80.0]})
    assert V.margin_share(summary, 0.3).to_list() == pytest.approx([0.25, 0.3, 0.0, 1.0])


def test_grade_from_the_holdout_errors():
    assert V.grade(0.05, 0.10) == "good"
    assert V.grade(-0.09, 0.19) == "good"
    assert V.grade(0.05, 0.30) == "fair"
    assert V.grade(-0.20, 0.10) == "fair"
    assert V.grade(0.30, 0.10) == "poor"
    assert V.grade(0.01, 0.50) == "poor"


def test_default_calibration_end_keeps_a_third_between_8_and_52_weeks():
    assert V.default_calibration_end(date(2024, 1, 1), date(2024, 4, 1)) == date(2024, 4, 1) - timedelta(days=56)
    assert V.default_calibration_end(date(2024, 1, 1), date(2024, 10, 1)) == date(2024, 10, 1) - timedelta(days=91)
    assert V.default_calibration_end(date(2020, 1, 1), date(2026, 1, 1)) == date(2026, 1, 1) - timedelta(days=364)


def _costs_store() -> Store:
    """F1 (cost 1,000) and F2 (cost 3,000) acquired by facebook, F3 by facebook with no
    known cost, Z1 by zalo_oa (cost 0), R1 and R2 referred (no cost of their own;
    rewards 40 and 60) in Hà Nội and Huế."""
    customers = pl.DataFrame({"customer_id": ["F1", "F2", "F3", "Z1", "R1", "R2"],
                              "acquisition_channel": ["facebook", "facebook", "facebook", "zalo_oa", "referral",
                                                      "referral"],
                              "acquisition_cost": [1000.0, 3000.0, None, 0.0, None, None],
                              "region": ["Hà Nội", "Huế", "Hà Nội", "Hà Nội", "Hà Nội", "Huế"]})
    referrals = pl.DataFrame({"referral_id": ["r1", "r2"], "referrer_id": ["F1", "F1"], "referred_id": ["R1", "R2"],
                              "referred_at": [datetime(2024, 2, 1), datetime(2024, 2, 2)], "reward_cost": [40.0, 60.0]})
    s = Store(":memory:")
    s.load_frames({"customers": customers, "referrals": referrals}, kind="test")
    return s


def test_acquisition_costs_and_clv_to_cac_by_hand():
    s = _costs_store()
    keys = dict(s.query("SELECT customer_id, customer_key FROM customers").iter_rows())
    costs = V.acquisition_costs(s, ALL)
    by_key = dict(costs.iter_rows())
    assert by_key == {keys["F1"]: 1000.0, keys["F2"]: 3000.0, keys["Z1"]: 0.0, keys["R1"]: 40.0, keys["R2"]: 60.0}
    customers = pl.DataFrame({
        "customer_key": [keys[c] for c in ("F1", "F2", "F3", "Z1", "R1", "R2")],
        "acquisition_channel": ["facebook", "facebook", "facebook", "zalo_oa", "referral", "referral"],
        "total_value": [3000.0, 1000.0, 99_999.0, 50.0, 100.0, 300.0]}).cast({"customer_key": pl.Int32})
    ratio = {r["channel"]: r for r in V.clv_to_cac(customers, costs).iter_rows(named=True)}
    # facebook: F3 has no known cost, so neither its value nor a cost counts
    assert ratio["facebook"]["customers"] == 2 and ratio["facebook"]["value"] == pytest.approx(2000.0)
    assert ratio["facebook"]["cac"] == pytest.approx(2000.0) and ratio["facebook"]["ratio"] == pytest.approx(1.0)
    assert ratio["referral"]["cac"] == pytest.approx(50.0) and ratio["referral"]["ratio"] == pytest.approx(4.0)
    assert ratio["zalo_oa"]["ratio"] is None  # a cost of 0: no ratio, never infinite
    # a region filter narrows the customers and their costs alike
    hue = V.acquisition_costs(s, Filters(start=date(2000, 1, 1), end=date(2030, 1, 1), regions=("Huế",)))
    assert sorted(hue["cost"].to_list()) == [60.0, 3000.0]
    s.close()


# -- known truth: customers simulated from BG/NBD ------------------------------------
def simulated_store(n: int = 4000, seed: int = 5) -> tuple[Store, date]:
    """Customers whose purchases follow BG/NBD exactly (r 0.6, alpha 40 days, a 0.8,
    b 4), acquired uniformly over two years before 1 Jan 2026, spend Gamma-Gamma
    (p 4, q 5, gamma 400,000) with a gross margin of a fixed share of revenue per
    customer (uniform on 0.1-0.5), observed until 31 Dec 2026."""
    rng = np.random.default_rng(seed)
    start, end = date(2024, 1, 1), date(2026, 12, 31)
    birth = rng.integers(0, 730, n)
    lam, drop = rng.gamma(0.6, 1 / 40, n), rng.beta(0.8, 4, n)
    nu = rng.gamma(5, 1 / 400_000, n)
    share = np.round(rng.uniform(0.1, 0.5, n), 3)  # each customer's margin share of revenue
    cid, when, revenue, margin = [], [], [], []
    for i in range(n):
        t, horizon = float(birth[i]), (end - start).days
        while t <= horizon:
            cid.append(f"S{i:05d}")
            when.append(datetime.combine(start, datetime.min.time()) + timedelta(days=int(t), hours=10))
            revenue.append(float(rng.gamma(4, 1 / nu[i])))
            margin.append(revenue[-1] * share[i])
            if len(cid) > 1 and cid[-2] == cid[-1] and rng.random() < drop[i]:
                break
            t += rng.exponential(1 / lam[i]) + 1.0  # at most one purchase a day
    orders = pl.DataFrame({"order_id": [f"o{k}" for k in range(len(cid))], "customer_id": cid, "ordered_at": when,
                           "revenue": revenue, "gross_margin": margin, "status": ["completed"] * len(cid)})
    s = Store(":memory:")
    s.load_frames({"orders": orders}, kind="test")
    return s, end


@pytest.fixture(scope="module")
def simulated():
    s, end = simulated_store()
    yield s, end
    s.close()


def test_the_holdout_check_grades_a_true_model_good(simulated):
    s, end = simulated
    v = V.validate(s, ALL, calibration_end=date(2026, 3, 31), holdout_end=end)
    assert not v.problems and v.error is None
    assert v.customers > 3000 and v.actual > 1000
    assert abs(v.aggregate_error) < 0.10, (v.predicted, v.actual)
    assert v.grade in ("good", "fair")
    # the week-by-week track ends on the holdout totals
    assert v.tracking["actual"][-1] == pytest.approx(v.actual)
    assert v.tracking["predicted"][-1] == pytest.approx(v.predicted, rel=1e-9)
    assert v.tracking["day"][-1] == (end - date(2026, 3, 31)).days
    assert v.by_frequency["customers"].sum() == v.customers


def test_scoring_and_the_bootstrap_interval(simulated):
    s, end = simulated
    sc = V.score(s, ALL, as_of=end, settings=V.Settings(horizon_months=12, annual_discount_rate=0.1, margin_rate=0.3))
    assert sc.ok and not sc.problems
    c = sc.customers
    # each customer's margin share is the share their orders carry
    by_hand = s.query("SELECT c.customer_key, sum(o.gross_margin) / sum(o.revenue) AS share FROM orders o "
                      "JOIN customers c USING (customer_key) GROUP BY 1")
    got = c.select("customer_key", "margin_share").join(by_hand, on="customer_key")
    assert got.height == c.height and got["margin_share"].to_list() == pytest.approx(got["share"].to_list())
    assert (c["clv"] >= 0).all() and c["p_alive"].is_between(0, 1).all()
    assert c["total_value"].to_list() == pytest.approx((c["historical_clv"] + c["clv"]).to_list())
    # the page's CLV is metrics.clv.clv with the customer's margin share and the monthly rate
    direct = M.clv(sc.bgnbd, sc.gg, c["frequency"], c["recency"], c["T"], c["monetary_value"], horizon_months=12,
                   margin=c["margin_share"].to_numpy(), monthly_discount_rate=V.monthly_rate(0.1))
    assert c["clv"].to_numpy() == pytest.approx(np.asarray(direct))
    boot = V.bootstrap(sc, V.Settings(horizon_months=12, annual_discount_rate=0.1, margin_rate=0.3), draws=60)
    total = boot.filter(pl.col("group") == "all").row(0, named=True)
    assert total["total"] == pytest.approx(float(c["clv"].sum()))
    assert total["low"] < total["total"] < total["high"]
    assert (total["high"] - total["low"]) / total["total"] < 0.5
    groups = boot.filter(pl.col("group") == "cohort")
    assert groups["customers"].sum() == c.height
    assert groups["total"].sum() == pytest.approx(total["total"])


def test_too_little_data_is_explained_not_modelled():
    orders = pl.DataFrame({"order_id": ["a", "b"], "customer_id": ["X", "Y"],
                           "ordered_at": [datetime(2024, 1, 1), datetime(2024, 2, 1)], "revenue": [1.0, 2.0],
                           "status": ["completed"] * 2})
    s = Store(":memory:")
    s.load_frames({"orders": orders}, kind="test")
    sc = V.score(s, ALL, as_of=date(2024, 3, 1))
    assert not sc.ok and sc.problems and "at least 100" in sc.problems[0]
    v = V.validate(s, ALL, calibration_end=date(2024, 1, 15), holdout_end=date(2024, 3, 1))
    assert v.problems and v.grade is None
    assert V.validate(s, ALL, calibration_end=date(2024, 3, 1), holdout_end=date(2024, 3, 1)).error
    s.close()


def test_model_matrices_read_p_alive_over_frequency_and_recency(simulated):
    s, end = simulated
    sc = V.score(s, ALL, as_of=end)
    m = V.model_matrices(sc.bgnbd, sc.customers)
    assert m["p_alive"].shape == (len(m["frequency"]), len(m["recency"]))
    assert np.all(m["p_alive"][0] == 1.0)  # no repeat purchase: alive in BG/NBD
    row = m["p_alive"][-1]
    assert np.all(np.diff(row) >= -1e-12)  # a later last purchase: more likely alive
    assert m["p_alive"][-1][0] < 0.05 < 0.5 < m["p_alive"][-1][-1]


def test_the_churn_list_values_customers_as_the_clv_page_does(simulated):
    from metrics import churn

    s, end = simulated
    settings = V.Settings(horizon_months=12, annual_discount_rate=0.1, margin_rate=0.3)
    sc = V.score(s, ALL, as_of=end, settings=settings)
    lst = churn.risk_list(s, ALL, as_of=end, bgnbd=sc.bgnbd, gg=sc.gg, margin_rate=0.3, horizon_months=12,
                          monthly_discount_rate=V.monthly_rate(0.1))
    both = sc.customers.select("customer_key", "clv", "p_alive").join(lst, on="customer_key")
    assert both.height == sc.customers.height
    assert both["predicted_clv"].to_list() == pytest.approx(both["clv"].to_list())
    assert both["p_alive_right"].to_list() == pytest.approx(both["p_alive"].to_list())


def test_scoring_with_given_models_does_not_refit(simulated, monkeypatch):
    s, end = simulated
    fitted = V.fit(s, ALL, as_of=end)
    assert fitted.ok is False and fitted.bgnbd is not None  # models, no customers yet

    def refit(*a, **k):
        raise AssertionError("refitted")

    monkeypatch.setattr(M, "fit_bgnbd", refit)
    a = V.score(s, ALL, as_of=end, settings=V.Settings(horizon_months=6), fitted=fitted)
    b = V.score(s, ALL, as_of=end, settings=V.Settings(horizon_months=24), fitted=fitted)
    assert a.ok and b.ok and a.bgnbd == b.bgnbd == fitted.bgnbd
    assert float(b.customers["clv"].sum()) > float(a.customers["clv"].sum())


def test_model_filters_drop_the_period_and_window_but_keep_who():
    a = Filters(start=date(2024, 1, 1), end=date(2024, 3, 31), channels=("shopee",), regions=("Huế",),
                loyalty="member", inactivity_days=30)
    b = Filters(start=date(2025, 5, 1), end=date(2025, 6, 30), channels=("shopee",), regions=("Huế",),
                loyalty="member", inactivity_days=120)
    assert V.model_filters(a) == V.model_filters(b)
    assert V.model_filters(a).channels == ("shopee",) and V.model_filters(a).loyalty == "member"
    assert V.model_filters(a) != V.model_filters(Filters(start=date(2024, 1, 1), end=date(2024, 3, 31)))
