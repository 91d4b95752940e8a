"""Predictive CLV: the customer summary by hand, BG/NBD and Gamma-Gamma against the
published CDNOW estimates, simulation and demo ground truth, numerical stability and
the refusals.

CDNOW (tests/fixtures/CDNOW_sample.txt, see CDNOW_SOURCE.md): Fader & Hardie's 1/10
sample, 2,357 customers who made their first purchase in the first 12 weeks of 1997,
followed to 30 June 1998. Calibration: 1 January to 30 September 1997 (39 weeks);
time in weeks = days / 7; a purchase = a distinct purchase day (same-day rows summed).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import special

from data.store import Store
from metrics import clv as C
from metrics.filters import Filters

FIXTURE = Path(__file__).parent / "fixtures" / "CDNOW_sample.txt"
CAL_END = date(1997, 9, 30)

# Fader, Hardie & Lee (2005), "Counting your customers the easy way", section 4.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4
# Fader & Hardie (2013), "The Gamma-Gamma model of monetary value", 946 repeat customers.
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def rel(a: float, b: float) -> float:
    return abs(a / b - 1)


# ---------------------------------------------------------------------------------
# CDNOW
# ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cdnow() -> pl.DataFrame:
    """The raw transactions: id (sample id), date, cds, value."""
    rows = [line.split() for line in FIXTURE.read_text().splitlines() if line.strip()]
    return pl.DataFrame(
        {
            "id": [int(r[1]) for r in rows],
            "date": [datetime.strptime(r[2], "%Y%m%d").date() for r in rows],
            "cds": [int(r[3]) for r in rows],
            "value": [float(r[4]) for r in rows],
        }
    )


@pytest.fixture(scope="module")
def cdnow_summary(cdnow) -> pl.DataFrame:
    """x, t_x, T (weeks) and mean repeat spend, built in Polars, not through a Store."""
    days = (
        cdnow.filter(pl.col("date") <= CAL_END)
        .group_by("id", "date").agg(pl.col("value").sum())
        .sort("id", "date")
    )
    return days.group_by("id").agg(
        (pl.len() - 1).cast(pl.Int64).alias("x"),
        ((pl.col("date").max() - pl.col("date").min()).dt.total_days() / 7).alias("t_x"),
        ((pl.lit(CAL_END) - pl.col("date").min()).dt.total_days() / 7).alias("T"),
        pl.col("value").slice(1).mean().fill_null(0.0).alias("m"),
    ).sort("id")


def test_cdnow_summary_matches_the_published_data_set(cdnow, cdnow_summary):
    s = cdnow_summary
    # 6,919 rows; 2,357 customers; 2,457 repeat purchases by 946 repeat customers in
    # the calibration period (1,411 made none), as in both papers. Counting rows
    # instead of distinct days would give 2,603.
    assert cdnow.height == 6919
    assert s.height == 2357
    assert s["x"].sum() == 2457
    assert (s["x"] > 0).sum() == 946
    assert cdnow.filter(pl.col("date") <= CAL_END).height - s.height == 2603
    # Customer 1 of Fader & Hardie's summary: x = 2, t_x = 30.43, T = 38.86, mean
    # repeat spend 22.35 (29.73 and 14.96).
    one = s.row(0, named=True)
    assert (one["x"], round(one["t_x"], 2), round(one["T"], 2)) == (2, 30.43, 38.86)
    assert one["m"] == pytest.approx((29.73 + 14.96) / 2)
    assert s["T"].max() == pytest.approx(272 / 7)


def test_cdnow_bgnbd_reproduces_the_published_estimates(cdnow_summary):
    s = cdnow_summary
    m = C.fit_bgnbd(s["x"], s["t_x"], s["T"])
    assert m.converged and m.n == 2357
    for k, v in PUBLISHED_BGNBD.items():
        assert rel(getattr(m, k), v) < 0.01, (k, getattr(m, k), v)
    assert rel(m.log_likelihood, PUBLISHED_LL) < 0.01
    assert m.log_likelihood == pytest.approx(PUBLISHED_LL, abs=0.05)
    se = m.standard_errors
    assert se is not None and all(0 < se[k] < m.params[k] for k in se)


def test_cdnow_gamma_gamma_reproduces_the_published_estimates(cdnow_summary):
    s = cdnow_summary
    g = C.fit_gamma_gamma(s["x"], s["m"])
    assert g.converged and g.n == 946
    for k, v in PUBLISHED_GG.items():
        assert rel(getattr(g, k), v) < 0.01, (k, getattr(g, k), v)
    # The independence check the note reports: corr(x, mean spend) = 0.11.
    assert round(C.frequency_monetary_correlation(s["x"], s["m"]), 2) == 0.11
    # Population mean spend p gamma / (q - 1) and a customer's shrunk estimate.
    assert g.population_mean == pytest.approx(g.p * g.gamma / (g.q - 1))
    assert g.expected_average_spend(0, 0) == pytest.approx(g.population_mean)
    one = g.expected_average_spend(2, 22.35)
    assert min(22.35, g.population_mean) < one < max(22.35, g.population_mean)


def cdnow_store(cdnow: pl.DataFrame) -> Store:
    store = Store(":memory:")
    orders = cdnow.with_row_index("i").select(
        pl.format("T{}", "i").alias("order_id"),
        pl.col("id").cast(pl.Utf8).alias("customer_id"),
        # Mid-afternoon: a purchase day is the local date whatever the hour.
        (pl.col("date").cast(pl.Datetime("us")) + pl.duration(hours=15)).alias("ordered_at"),
        pl.col("value").alias("revenue"),
        pl.lit("completed").alias("status"),
    )
    store.load_frames({"orders": orders}, kind="test", keep_undo=False)
    return store


def test_the_sql_summary_reproduces_the_cdnow_summary(cdnow, cdnow_summary):
    store = cdnow_store(cdnow)
    try:
        f = Filters(start=date(1997, 1, 1), end=CAL_END)
        got = C.customer_summary(store, f, calibration_end=CAL_END, unit="weeks")
        ids = store.query("SELECT customer_key, CAST(customer_id AS INTEGER) AS id FROM customers")
        got = got.join(ids, on="customer_key").sort("id")
        want = cdnow_summary
        assert got["id"].to_list() == want["id"].to_list()
        assert got["frequency"].to_list() == want["x"].to_list()
        assert np.allclose(got["recency"].to_numpy(), want["t_x"].to_numpy(), rtol=0, atol=1e-12)
        assert np.allclose(got["T"].to_numpy(), want["T"].to_numpy(), rtol=0, atol=1e-12)
        assert np.allclose(got["monetary_value"].to_numpy(), want["m"].to_numpy(), rtol=0, atol=1e-9)
        assert C.sufficiency(got) == []
        # The holdout: weeks 40-78 (to 30 June 1998), distinct purchase days.
        hold = C.holdout_summary(store, f, CAL_END, date(1998, 6, 30), "weeks")
        actual = cdnow.filter(pl.col("date") > CAL_END).unique(["id", "date"]).height
        assert hold.height == 2357 and hold["purchases"].sum() == actual == 1882
        assert hold["t"].to_list() == pytest.approx([273 / 7] * 2357)
    finally:
        store.close()


# ---------------------------------------------------------------------------------
# The summary by hand
# ---------------------------------------------------------------------------------
def dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


@pytest.fixture()
def small_store() -> Store:
    """Four customers with completed orders by 31 March 2024 (D starts later).

    A: 10 Jan 10:00 (100, margin 30) and 18:00 (50, no margin: 15 at 30%) = one
       purchase day; 20 Feb (200, 60); 31 Mar 23:59 (300, 90), the calibration end's
       last minute; 1 Apr 00:00 (80, 20), the holdout; a cancelled order on 1 Mar.
    B: 1 Feb (40, 12) only.
    C: two orders on 5 Mar (60, 18 and 20, 6) = one purchase; a refunded order on
       10 Mar; holdout: two orders on 15 Apr (10, 3 and 5, none: 1.5), one on 2 May
       (after a 30 April holdout end).
    E: 1 Jan (10, 3), 2 Jan (20, 4), 31 Jan (30, none: 9), via Shopee.
    D: first order on 2 Apr: not a calibration customer.
    """
    orders = pl.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(1, 17)],
            "customer_id": ["A"] * 6 + ["B"] + ["C"] * 6 + ["E"] * 3,
            "ordered_at": [
                dt("2024-01-10 10:00"), dt("2024-01-10 18:00"), dt("2024-02-20 09:00"),
                dt("2024-03-31 23:59"), dt("2024-04-01 00:00"), dt("2024-03-01 12:00"),
                dt("2024-02-01 12:00"),
                dt("2024-03-05 09:00"), dt("2024-03-05 20:00"), dt("2024-03-10 10:00"),
                dt("2024-04-15 10:00"), dt("2024-04-15 11:00"), dt("2024-05-02 10:00"),
                dt("2024-01-01 08:00"), dt("2024-01-02 08:00"), dt("2024-01-31 08:00"),
            ],
            "revenue": [100.0, 50, 200, 300, 80, 999, 40, 60, 20, 70, 10, 5, 30, 10, 20, 30],
            "gross_margin": [30.0, None, 60, 90, 20, 300, 12, 18, 6, 21, 3, None, 9, 3, 4, None],
            "channel": ["website"] * 13 + ["shopee"] * 3,
            "status": ["completed"] * 5 + ["cancelled"] + ["completed"] * 3 + ["refunded"] + ["completed"] * 6,
        }
    )
    late = pl.DataFrame({"order_id": ["O99"], "customer_id": ["D"], "ordered_at": [dt("2024-04-02 10:00")],
                         "revenue": [55.0], "gross_margin": [10.0], "channel": ["website"], "status": ["completed"]})
    store = Store(":memory:")
    store.load_frames({"orders": pl.concat([orders, late])}, kind="test")
    yield store
    store.close()


def by_id(store: Store, frame: pl.DataFrame) -> dict[str, dict]:
    ids = store.query("SELECT customer_key, customer_id FROM customers")
    return {r["customer_id"]: r for r in frame.join(ids, on="customer_key").to_dicts()}


MARCH_END = date(2024, 3, 31)


def test_customer_summary_by_hand(small_store):
    f = Filters(start=date(2024, 1, 1), end=MARCH_END)
    s = C.customer_summary(small_store, f, calibration_end=MARCH_END, unit="days", margin_rate=0.3)
    assert s.columns == list(C.SUMMARY_COLUMNS)
    got = by_id(small_store, s)
    assert sorted(got) == ["A", "B", "C", "E"]
    a, b, c, e = got["A"], got["B"], got["C"], got["E"]
    # A: purchase days 10 Jan, 20 Feb, 31 Mar -> 2 repeats; 10 Jan to 31 Mar = 81 days.
    assert (a["frequency"], a["recency"], a["T"]) == (2, 81.0, 81.0)
    assert (a["monetary_value"], a["monetary_margin"]) == (250.0, 75.0)  # (200 + 300) / 2, (60 + 90) / 2
    assert (a["first_purchase"], a["last_purchase"]) == (date(2024, 1, 10), date(2024, 3, 31))
    assert (a["orders"], a["revenue"], a["margin"]) == (4, 650.0, 195.0)  # 30 + 15 + 60 + 90
    # B: one purchase on 1 Feb; 59 days to 31 March.
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"], b["monetary_margin"]) == (0, 0.0, 59.0, 0.0, 0.0)
    # C: two orders on one day are one purchase; the refunded order does not count.
    assert (c["frequency"], c["recency"], c["T"], c["monetary_value"]) == (0, 0.0, 26.0, 0.0)
    assert (c["orders"], c["revenue"], c["margin"]) == (2, 80.0, 24.0)
    # E: 1 Jan, 2 Jan, 31 Jan: 2 repeats, recency 30, T 90; repeat spend (20 + 30) / 2
    # and margin (4 + 9) / 2.
    assert (e["frequency"], e["recency"], e["T"], e["monetary_value"], e["monetary_margin"]) == (2, 30.0, 90.0, 25.0, 6.5)
    assert (e["first_purchase"], e["last_purchase"]) == (date(2024, 1, 1), date(2024, 1, 31))

    w = by_id(small_store, C.customer_summary(small_store, f, calibration_end=MARCH_END, unit="weeks", margin_rate=0.3))
    assert (w["A"]["recency"], w["A"]["T"], w["B"]["T"], w["E"]["recency"]) == pytest.approx((81 / 7, 81 / 7, 59 / 7, 30 / 7))
    assert w["A"]["frequency"] == 2 and w["A"]["monetary_value"] == 250.0

    # Filters apply: Shopee only leaves E; an earlier calibration end drops A's last
    # purchase and gives T from the first purchase to that date.
    shop = C.customer_summary(small_store, Filters(start=date(2024, 1, 1), end=MARCH_END, channels=("shopee",)),
                              calibration_end=MARCH_END)
    assert shop.height == 1 and shop["frequency"].to_list() == [2]
    feb = by_id(small_store, C.customer_summary(small_store, f, calibration_end=date(2024, 2, 29)))
    assert sorted(feb) == ["A", "B", "E"]
    assert (feb["A"]["frequency"], feb["A"]["recency"], feb["A"]["T"], feb["A"]["monetary_value"]) == (1, 41.0, 50.0, 200.0)
    assert feb["B"]["T"] == 28.0


def test_holdout_summary_by_hand(small_store):
    f = Filters(start=date(2024, 1, 1), end=MARCH_END)
    h = by_id(small_store, C.holdout_summary(small_store, f, MARCH_END, date(2024, 4, 30), margin_rate=0.3))
    assert sorted(h) == ["A", "B", "C", "E"]  # D's first purchase is in the holdout
    assert (h["A"]["purchases"], h["A"]["revenue"], h["A"]["margin"]) == (1, 80.0, 20.0)
    assert (h["C"]["purchases"], h["C"]["revenue"], h["C"]["margin"]) == (1, 15.0, 4.5)
    assert (h["B"]["purchases"], h["E"]["purchases"], h["B"]["revenue"]) == (0, 0, 0.0)
    assert h["A"]["t"] == 30.0
    wk = C.holdout_summary(small_store, f, MARCH_END, date(2024, 4, 30), unit="weeks")
    assert wk["t"].to_list() == pytest.approx([30 / 7] * 4)
    with pytest.raises(C.ModelError, match="after"):
        C.holdout_summary(small_store, f, MARCH_END, MARCH_END)


def test_sufficiency_explains_what_is_missing(small_store):
    f = Filters(start=date(2024, 1, 1), end=MARCH_END)
    s = C.customer_summary(small_store, f, calibration_end=MARCH_END)
    missing = C.sufficiency(s)
    assert len(missing) == 3
    assert "Only 4 customers" in missing[0] and "at least 100" in missing[0]
    assert "Only 2 customers bought again" in missing[1]
    assert "spend" in missing[2]
    with pytest.raises(C.ModelError, match="at least 100 customers"):
        C.fit_bgnbd(s["frequency"], s["recency"], s["T"])
    with pytest.raises(C.ModelError, match="at least 20 repeat customers"):
        C.fit_gamma_gamma(s["frequency"], s["monetary_value"])


# ---------------------------------------------------------------------------------
# Simulation
# ---------------------------------------------------------------------------------
def simulate_bgnbd(rng: np.random.Generator, n: int, r: float, alpha: float, a: float, b: float,
                   T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact draws of (x, t_x) over (0, T]: n_events ~ Poisson(lambda T); the customer
    drops out after the K-th repeat purchase, K ~ Geometric(p) on 1, 2, ...; the last
    purchase is the x-th of n_events uniform times: T x Beta(x, n_events - x + 1)."""
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    events = rng.poisson(lam * T)
    x = np.minimum(events, rng.geometric(p))
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), np.maximum(events - x + 1, 1)), 0.0)
    return x, tx


def simulate_gamma_gamma(rng: np.random.Generator, x: np.ndarray, p: float, q: float, gamma: float) -> np.ndarray:
    """Mean spend over x purchases: the sum of x Gamma(p, nu) is Gamma(p x, nu)."""
    nu = rng.gamma(q, 1 / gamma, x.size)
    return rng.gamma(p * x, 1 / nu) / x


def test_bgnbd_recovers_simulated_parameters():
    rng = np.random.default_rng(2024)
    truth = {"r": 0.75, "alpha": 3.0, "a": 0.6, "b": 2.5}  # weeks
    T = rng.uniform(20, 78, 20_000)
    x, tx = simulate_bgnbd(rng, T.size, *truth.values(), T)
    m = C.fit_bgnbd(x, tx, T)
    se = m.standard_errors
    for k, v in truth.items():
        assert rel(getattr(m, k), v) < 0.10, (k, getattr(m, k), v)
        assert abs(getattr(m, k) - v) < 4 * se[k], (k, getattr(m, k), v, se[k])
    # The unconditional expectation against the simulated mean at a fixed horizon.
    T52 = np.full(200_000, 52.0)
    x52, _ = simulate_bgnbd(rng, T52.size, *truth.values(), T52)
    assert C.BGNBD(**truth).expected_purchases_new(52.0) == pytest.approx(x52.mean(), rel=0.02)


def test_gamma_gamma_recovers_simulated_parameters():
    rng = np.random.default_rng(7)
    x = 1 + rng.poisson(2.0, 8_000)
    m = simulate_gamma_gamma(rng, x, 6.0, 4.0, 15.0)
    g = C.fit_gamma_gamma(x, m)
    for k, v in {"p": 6.0, "q": 4.0, "gamma": 15.0}.items():
        assert rel(getattr(g, k), v) < 0.15, (k, getattr(g, k), v)
    assert g.population_mean == pytest.approx(6 * 15 / 3, rel=0.03)
    # Independence holds by construction.
    assert abs(C.frequency_monetary_correlation(x, m)) < 0.05


def test_demo_ground_truth_per_persona():
    """data.demo without seasonality and loyalty lift is BG/NBD and Gamma-Gamma in
    calendar days, per persona. Purchases are counted per day, so same-day purchases
    merge: a small bias for the most frequent personas, allowed for by 15% on top of
    three standard errors."""
    from data import demo

    end = date(2025, 6, 30)
    d = demo.generate(30_000, seed=11, end=end, seasonality=False, loyalty_lift=0.0)
    store = Store(":memory:")
    try:
        store.load_frames({"customers": d.tables["customers"], "orders": d.tables["orders"]},
                          kind="demo", keep_undo=False)
        s = C.customer_summary(store, Filters(start=end, end=end), calibration_end=end)
        ids = store.query("SELECT customer_key, customer_id FROM customers")
    finally:
        store.close()
    persona = pl.DataFrame({"customer_id": d.truth["customer_persona"]["ids"],
                            "persona": d.truth["customer_persona"]["persona"]})
    s = s.join(ids, on="customer_key").join(persona, on="customer_id")
    for truth in demo.PERSONAS:
        g = s.filter(pl.col("persona") == truth.name)
        m = C.fit_bgnbd(g["frequency"], g["recency"], g["T"])
        se = m.standard_errors
        for k in ("r", "alpha", "a", "b"):
            v = getattr(truth, k)
            assert abs(getattr(m, k) - v) < 0.15 * v + 3 * se[k], (truth.name, k, getattr(m, k), v, se[k])
        gg = C.fit_gamma_gamma(g["frequency"], g["monetary_value"])
        mean = truth.p * truth.gamma / (truth.q - 1)
        # Revenue is rounded to 1,000 VND: the mean spend stays within 5%.
        assert rel(gg.population_mean, mean) < 0.05, (truth.name, gg.population_mean, mean)


# ---------------------------------------------------------------------------------
# Formulas and numerics
# ---------------------------------------------------------------------------------
PUB = C.BGNBD(**PUBLISHED_BGNBD)


def lifetimes_expected(t, x, tx, T, r, alpha, a, b):
    """``lifetimes``' conditional_expected_number_of_purchases_up_to_time, written
    out: FHL 2005 eq. 10 with scipy's hyp2f1 on the untransformed arguments."""
    first = (a + b + x - 1) / (a - 1)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    second = 1 - hyp * ((alpha + T) / (alpha + t + T)) ** (r + x)
    denom = 1 + (x > 0) * (a / (b + x - 1)) * ((alpha + T) / (alpha + tx)) ** (r + x)
    return first * second / denom


@pytest.mark.parametrize("t,x,tx,T", [(39, 2, 30.43, 38.86), (2, 10, 35, 39), (10, 0, 0, 38.86),
                                      (39, 0, 0, 0), (78, 20, 38, 39), (1, 1, 0.5, 1)])
def test_expected_purchases_and_p_alive_against_the_closed_forms(t, x, tx, T):
    r, alpha, a, b = PUBLISHED_BGNBD.values()
    got = PUB.expected_purchases(t, x, tx, T)
    assert isinstance(got, float)
    assert got == pytest.approx(lifetimes_expected(t, x, tx, T, r, alpha, a, b), rel=1e-10)
    # P(alive), FHL 2005 eq. 13, by hand.
    want = 1.0 if x == 0 else 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + tx)) ** (r + x))
    assert PUB.p_alive(x, tx, T) == pytest.approx(want, rel=1e-12)


def test_closed_form_values():
    r, alpha, a, b = PUBLISHED_BGNBD.values()
    # Customer 1: P(alive) = 1 / (1 + 0.793/3.426 x (43.274/34.844)^2.243)
    # = 1 / (1 + 0.231465 x 1.625766) = 0.72658.
    assert PUB.p_alive(2, 30.43, 38.86) == pytest.approx(0.72658, abs=1e-5)
    assert PUB.p_alive(0, 0, 38.86) == 1.0
    # E[X(t)], eq. 9, is the conditional expectation of a customer with no history.
    ts = np.array([1.0, 39.0, 78.0])
    new = PUB.expected_purchases_new(ts)
    assert np.allclose(new, lifetimes_expected(ts, 0, 0, 0, r, alpha, a, b), rtol=1e-10)
    assert np.all(np.diff(new) > 0) and PUB.expected_purchases_new(0.0) == 0.0
    # Vectorised over customers, scalar t; lists and Polars Series both work.
    xs, txs, Ts = [0, 2, 5], [0.0, 30.43, 20.0], [38.86, 38.86, 38.86]
    arr = PUB.expected_purchases(39, xs, txs, Ts)
    assert arr.shape == (3,)
    assert np.allclose(arr, PUB.expected_purchases(39, pl.Series(xs), pl.Series(txs), np.array(Ts)))
    # a = 1 is a removable singularity: the limit from both sides.
    near = [C.BGNBD(0.5, 20.0, 1.0 + e, 3.0).expected_purchases(30.0, 3, 50.0, 100.0) for e in (-1e-5, 0.0, 1e-5)]
    assert near[1] == pytest.approx(near[0], rel=1e-4) and near[1] == pytest.approx(near[2], rel=1e-4)


def test_hypergeometric_series_fallback(monkeypatch):
    want = PUB.expected_purchases([1.0, 39.0, 200.0], [0, 2, 40], [0.0, 30.43, 38.0], [38.86, 38.86, 39.0])
    monkeypatch.setattr(C.special, "hyp2f1", lambda *args: np.full(np.broadcast(*args).shape, np.nan))
    got = PUB.expected_purchases([1.0, 39.0, 200.0], [0, 2, 40], [0.0, 30.43, 38.0], [38.86, 38.86, 39.0])
    assert np.allclose(got, want, rtol=1e-10)


def test_extreme_customers_stay_finite():
    rng = np.random.default_rng(5)
    T = rng.uniform(100, 5000, 2000)  # days
    x, tx = simulate_bgnbd(rng, T.size, 0.5, 20.0, 0.8, 3.0, T)
    x = np.append(x, 500)
    tx = np.append(tx, 4990.0)
    T = np.append(T, 5000.0)
    m = C.fit_bgnbd(x, tx, T)
    assert np.isfinite(m.log_likelihood) and m.converged
    alive = m.p_alive(x, tx, T)
    assert np.all((alive >= 0) & (alive <= 1))
    exp = m.expected_purchases(365.0, x, tx, T)
    assert np.all(np.isfinite(exp)) and np.all(exp >= 0)
    # The heavy buyer, still active: about 500 / 5000 x 365 purchases in a year.
    assert 25 < exp[-1] < 45 and alive[-1] > 0.99
    # Far beyond any data: huge counts and long histories, alive or long gone.
    assert np.isfinite(PUB.log_likelihood_of(5000, 1e5, 1e5))
    assert np.isfinite(PUB.expected_purchases(1e5, 5000, 1e5, 1e5))
    assert PUB.p_alive(500, 10, 5000) == pytest.approx(0.0, abs=1e-300)
    assert PUB.expected_purchases(365, 500, 10, 5000) == pytest.approx(0.0, abs=1e-300)
    assert np.isfinite(PUB.expected_purchases_new(1e7))


def test_collapsed_weights_equal_the_expanded_fit():
    rng = np.random.default_rng(11)
    T = rng.integers(10, 21, 3000).astype(float)
    x, tx = simulate_bgnbd(rng, T.size, 0.8, 4.0, 0.7, 2.5, T)
    tx = np.ceil(tx)  # whole periods, so many rows coincide
    tx = np.minimum(tx, T)
    expanded = C.fit_bgnbd(x, tx, T)
    rows, counts = np.unique(np.column_stack([x, tx, T]), axis=0, return_counts=True)
    assert rows.shape[0] < 1000
    weighted = C.fit_bgnbd(rows[:, 0], rows[:, 1], rows[:, 2], weights=counts)
    for k in ("r", "alpha", "a", "b"):
        assert getattr(weighted, k) == pytest.approx(getattr(expanded, k), rel=1e-6)
    assert weighted.log_likelihood == pytest.approx(expanded.log_likelihood, rel=1e-10)
    assert weighted.n == expanded.n == 3000

    xs = 1 + rng.poisson(2.0, 2000)
    ms = np.round(simulate_gamma_gamma(rng, xs, 5.0, 3.0, 20.0))
    ms = np.maximum(ms, 1.0)
    g1 = C.fit_gamma_gamma(xs, ms)
    rows, counts = np.unique(np.column_stack([xs, ms]), axis=0, return_counts=True)
    g2 = C.fit_gamma_gamma(rows[:, 0], rows[:, 1], weights=counts)
    for k in ("p", "q", "gamma"):
        assert getattr(g2, k) == pytest.approx(getattr(g1, k), rel=1e-6)


def test_clv_is_the_discounted_sum_of_monthly_margins(cdnow_summary):
    s = cdnow_summary
    m = C.BGNBD(**PUBLISHED_BGNBD)
    g = C.GammaGamma(**PUBLISHED_GG)
    x, tx, T, mv = s["x"], s["t_x"], s["T"], s["m"]
    got = C.clv(m, g, x, tx, T, mv, horizon_months=6, unit="weeks", margin=0.4, monthly_discount_rate=0.02)
    month = 30.4375 / 7
    cum = [m.expected_purchases(k * month, x, tx, T) for k in range(7)]
    spend = g.expected_average_spend(x, mv)
    want = sum((cum[k] - cum[k - 1]) * spend * 0.4 / 1.02 ** k for k in range(1, 7))
    assert np.allclose(got, want, rtol=1e-12)
    # Without discounting, the sum telescopes to E[Y(6 months)] x spend x margin.
    flat = C.clv(m, g, x, tx, T, mv, horizon_months=6, unit="weeks", margin=1.0, monthly_discount_rate=0.0)
    assert np.allclose(flat, cum[6] * spend, rtol=1e-10)
    # Days and weeks agree when the summary's unit is passed along.
    one = C.clv(m, g, 2, 30.43, 38.86, 22.35, unit="weeks")
    days = C.BGNBD(m.r, m.alpha * 7, m.a, m.b)
    assert C.clv(days, g, 2, 30.43 * 7, 38.86 * 7, 22.35, unit="days") == pytest.approx(one, rel=1e-10)
    # Per-customer margins broadcast.
    per = C.clv(m, g, x, tx, T, mv, horizon_months=6, unit="weeks", margin=np.full(s.height, 0.4),
                monthly_discount_rate=0.02)
    assert np.allclose(per, got)
    scored = C.score_customers(s.rename({"x": "frequency", "t_x": "recency", "m": "monetary_value"}), m, g,
                               unit="weeks", horizon_months=6, margin_rate=0.4, monthly_discount_rate=0.02)
    assert np.allclose(scored["clv"].to_numpy(), got)
    assert np.allclose(scored["churn_risk"].to_numpy(), 1 - m.p_alive(x, tx, T))
    assert np.allclose(scored["expected_purchases"].to_numpy(), m.expected_purchases(90 / 7, x, tx, T))


# ---------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------
def test_invalid_inputs_are_refused():
    ok_T = np.full(200, 30.0)
    with pytest.raises(C.ModelError, match="negative"):
        C.fit_bgnbd([-1] + [0] * 199, np.zeros(200), ok_T)
    with pytest.raises(C.ModelError, match="cannot exceed T"):
        C.fit_bgnbd([1] * 200, np.full(200, 31.0), ok_T)
    with pytest.raises(C.ModelError, match="recency 0"):
        C.fit_bgnbd([0] * 200, np.full(200, 3.0), ok_T)
    with pytest.raises(C.ModelError, match="whole number"):
        C.fit_bgnbd([1.5] * 200, np.full(200, 3.0), ok_T)
    with pytest.raises(C.ModelError, match="missing"):
        PUB.p_alive(np.nan, 0, 1)
    with pytest.raises(C.ModelError, match="bought again"):
        C.fit_bgnbd([1] * 5 + [0] * 195, [2.0] * 5 + [0.0] * 195, ok_T)
    with pytest.raises(C.ModelError, match="negative"):
        C.fit_gamma_gamma([1] * 50, [-5.0] * 50)
    with pytest.raises(C.ModelError, match="unit"):
        C.summary_sql(Filters(start=MARCH_END, end=MARCH_END), calibration_end=MARCH_END, unit="months")
    with pytest.raises(C.ModelError, match="horizon"):
        C.clv(PUB, C.GammaGamma(6.25, 3.74, 15.44), 1, 1, 2, 10, horizon_months=0)
    assert issubclass(C.ModelError, ValueError)


def test_a_spend_model_without_a_finite_mean_is_refused():
    rng = np.random.default_rng(3)
    x = 1 + rng.poisson(3.0, 3000)
    with pytest.raises(C.ModelError, match="undefined"):
        C.fit_gamma_gamma(x, simulate_gamma_gamma(rng, x, 6.0, 0.7, 15.0))


def test_non_convergence_is_refused(monkeypatch):
    rng = np.random.default_rng(1)
    # Every customer always spends the same: no spread within customers to model.
    with pytest.raises(C.ModelError, match="did not converge"):
        C.fit_gamma_gamma(rng.integers(1, 5, 200), np.full(200, 20.0))
    # An optimiser that gives up is reported, not returned.
    T = rng.uniform(20, 78, 500)
    x, tx = simulate_bgnbd(rng, 500, 0.75, 3.0, 0.6, 2.5, T)

    def stuck(fun, x0, **kw):
        from scipy.optimize import OptimizeResult
        return OptimizeResult(x=np.asarray(x0, dtype=float), fun=fun(x0)[0], success=False)

    monkeypatch.setattr(C.optimize, "minimize", stuck)
    with pytest.raises(C.ModelError, match="did not converge"):
        C.fit_bgnbd(x, tx, T)


def test_the_penalizer_shrinks_and_is_checked(cdnow_summary):
    s = cdnow_summary
    plain = C.fit_bgnbd(s["x"], s["t_x"], s["T"])
    shrunk = C.fit_bgnbd(s["x"], s["t_x"], s["T"], penalizer=0.1)
    assert shrunk.converged and shrunk.a + shrunk.b < plain.a + plain.b
    assert shrunk.log_likelihood < plain.log_likelihood
    with pytest.raises(C.ModelError, match="penalizer"):
        C.fit_bgnbd(s["x"], s["t_x"], s["T"], penalizer=-1.0)
    g = C.fit_gamma_gamma(s["x"], s["m"], penalizer=0.01)
    assert g.converged and g.p < C.fit_gamma_gamma(s["x"], s["m"]).p


def test_per_distinct_equals_the_direct_evaluation():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, 50_000).astype(float)
    tx = np.where(x > 0, rng.integers(0, 30, x.size), 0).astype(float)
    T = tx + rng.integers(0, 30, x.size)
    m = C.BGNBD(r=0.6, alpha=20.0, a=0.8, b=3.0)
    direct = np.asarray(m.expected_purchases(90.0, x, tx, T))
    got = C.per_distinct(lambda a, b, c: m.expected_purchases(90.0, a, b, c), x, tx, T, block=7)
    assert got == pytest.approx(direct, rel=1e-12)
    g = C.GammaGamma(p=6.0, q=4.0, gamma=15.0)
    spend = rng.gamma(5, 10, x.size)
    whole = np.asarray(C.clv(m, g, x, tx, T, spend, horizon_months=6))  # per distinct row
    parts = np.concatenate([np.atleast_1d(C.clv(m, g, x[i:i + 10_000], tx[i:i + 10_000], T[i:i + 10_000],
                                                spend[i:i + 10_000], horizon_months=6))
                            for i in range(0, x.size, 10_000)])  # small: evaluated directly
    assert whole == pytest.approx(parts, rel=1e-12)
