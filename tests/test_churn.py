"""Churn risk by hand, the risk bands and summary, holdout precision on simulated
BG/NBD data, the control-group flag and the win-back export.

The hand table (as of 31 March 2024; BG/NBD r = 0.5, alpha = 10, a = 0.7, b = 2 in
days; Gamma-Gamma p = 6, q = 4, gamma = 15; margin rate 0.3):

- A (Hà Nội): 1 Jan 09:00 (100, website, margin 30), 11 Jan (50, website, no margin:
  15), 31 Jan 10:00 (70, Shopee, 20) and 18:00 (30, Zalo OA, 10); a cancelled order
  on 30 March; an order on 5 April (after as_of). Purchase days 1, 11, 31 Jan: x = 2,
  t_x = 30, T = 90, mean repeat spend (50 + 100) / 2 = 75; gaps 10 and 20, usual gap
  15; 60 days since the last purchase, gap ratio 4; last channel Zalo OA (the later
  order that day). NPS 9 on 1 Feb, 3 on 20 March, a CSAT-only answer on 25 March and
  10 on 2 April (after as_of): latest NPS 3.
  P(alive) = 1 / (1 + 0.7 / 3 x (100 / 40)^2.5) = 0.302496.
  Next order: (10 + 90) / (0.5 + 2) = 40 days -> 10 May.
- B (Huế): one order on 1 March (200, store): x = 0, T = 30, P(alive) = 1, no usual
  gap. Next order: (10 + 30) / 0.5 = 80 days -> 19 June.
- C (Hà Nội): 1, 8, 15 Feb and 28 March (40 each, app): x = 3, t_x = 56, T = 59;
  gaps 7, 7, 42, usual gap 7; 3 days since, ratio 3/7.
  P(alive) = 1 / (1 + 0.7 / 4 x (69 / 66)^3.5) = 0.830248. Next order:
  69 / 3.5 = 19.71 -> 20 days -> 20 April.
- D: a cancelled order only; E: an order on 10 April only. Neither is listed.

RFM among A, B, C: recency 60, 30, 3 -> r 1, 2, 4; orders 4, 1, 4 -> f 2, 1, 2; revenue
250, 200, 160 -> m 4, 2, 1; FM 3, 2, 2 -> at_risk, hibernating, potential_loyalist.
"""

from __future__ import annotations

import io
import math
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from openpyxl import load_workbook
from scipy import special

from data.importer import neutralise
from data.store import Store
from metrics import churn
from metrics import clv as C
from metrics.filters import Filters

AS_OF = date(2024, 3, 31)
MODEL = C.BGNBD(r=0.5, alpha=10.0, a=0.7, b=2.0)
SPEND = C.GammaGamma(p=6.0, q=4.0, gamma=15.0)


def dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


def f(**kw) -> Filters:
    return Filters(start=date(2024, 1, 1), end=AS_OF, **kw)


@pytest.fixture(scope="module")
def churn_store() -> Store:
    customers = pl.DataFrame({
        "customer_id": ["A", "B", "C", "D", "E"],
        "name": ["Nguyễn Văn An", "Trần Thị Bình", "Lê Chi", "Phạm Dũng", "Hồ Em"],
        "email": ["an.nguyen@example.vn", "binh@example.vn", "chi@example.vn", None, None],
        "phone": ["0912345678", "0987654321", "0900000003", None, None],
        "region": ["Hà Nội", "Huế", "Hà Nội", "Huế", "Huế"],
        "acquisition_channel": ["facebook", "zalo_oa", "shopee", "website", "website"],
    })
    orders = pl.DataFrame({
        "order_id": [f"O{i:02d}" for i in range(1, 14)],
        "customer_id": ["A"] * 6 + ["B"] + ["C"] * 4 + ["D", "E"],
        "ordered_at": [
            dt("2024-01-01 09:00"), dt("2024-01-11 09:00"), dt("2024-01-31 10:00"), dt("2024-01-31 18:00"),
            dt("2024-03-30 09:00"), dt("2024-04-05 09:00"),
            dt("2024-03-01 12:00"),
            dt("2024-02-01 12:00"), dt("2024-02-08 12:00"), dt("2024-02-15 12:00"), dt("2024-03-28 12:00"),
            dt("2024-02-10 12:00"), dt("2024-04-10 12:00"),
        ],
        "revenue": [100.0, 50, 70, 30, 500, 999, 200, 40, 40, 40, 40, 80, 90],
        "gross_margin": [30.0, None, 20, 10, 150, 300, 60, 12, 12, 12, 12, 24, 27],
        "channel": ["website", "website", "shopee", "zalo_oa", "website", "website", "store",
                    "app", "app", "app", "app", "website", "website"],
        "status": ["completed"] * 4 + ["cancelled", "completed", "completed"] + ["completed"] * 4
                  + ["cancelled", "completed"],
    })
    responses = pl.DataFrame({
        "response_id": ["R1", "R2", "R3", "R4", "R5"],
        "customer_id": ["A", "A", "A", "A", None],
        "responded_at": [dt("2024-02-01 09:00"), dt("2024-03-20 09:00"), dt("2024-03-25 09:00"),
                         dt("2024-04-02 09:00"), dt("2024-03-21 09:00")],
        "nps": [9, 3, None, 10, 0],
        "csat": [5, 2, 4, 5, 1],
    })
    store = Store(":memory:")
    store.load_frames({"customers": customers, "orders": orders, "survey_responses": responses}, kind="test",
                      keep_undo=False)
    yield store
    store.close()


def rows_by_id(lst: pl.DataFrame) -> dict[str, dict]:
    return {r["customer_id"]: r for r in lst.to_dicts()}


def expected_closed_form(t, x, tx, T, r, alpha, a, b):
    """FHL 2005 eq. 10 written out with scipy's hyp2f1 on the untransformed arguments."""
    first = (a + b + x - 1) / (a - 1)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    second = 1 - hyp * ((alpha + T) / (alpha + t + T)) ** (r + x)
    denom = 1 + (x > 0) * (a / (b + x - 1)) * ((alpha + T) / (alpha + tx)) ** (r + x)
    return first * second / denom


def clv_alive_closed_form(x, T, m, *, months=12, d=0.01, margin=0.3):
    """CLV of a customer known to be alive: FHL eq. 9 at (r + x, alpha + T, a, b + x),
    monthly increments discounted at each month's end, times the Gamma-Gamma spend."""
    r, alpha, a, b = MODEL.r + x, MODEL.alpha + T, MODEL.a, MODEL.b + x

    def e(t):
        if t == 0:
            return 0.0
        return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * special.hyp2f1(r, b, a + b - 1, t / (alpha + t)))

    spend = SPEND.p * (SPEND.gamma + x * m) / (SPEND.p * x + SPEND.q - 1)
    total = sum((e(k * C.MONTH_DAYS) - e((k - 1) * C.MONTH_DAYS)) / (1 + d) ** k for k in range(1, months + 1))
    return total * spend * margin


def test_risk_list_by_hand(churn_store):
    lst = churn.risk_list(churn_store, f(), as_of=AS_OF, bgnbd=MODEL, gg=SPEND, margin_rate=0.3)
    assert lst.columns == list(churn.RISK_COLUMNS)
    got = rows_by_id(lst)
    assert sorted(got) == ["A", "B", "C"]
    a, b, c = got["A"], got["B"], got["C"]

    # History.
    assert (a["orders"], a["historical_revenue"], a["historical_margin"]) == (4, 250.0, pytest.approx(75.0))
    assert (b["orders"], b["historical_revenue"], c["orders"], c["historical_revenue"]) == (1, 200.0, 4, 160.0)
    assert (a["last_purchase"], a["days_since_last"], a["usual_gap_days"], a["gap_ratio"]) == (
        date(2024, 1, 31), 60, 15.0, 4.0)
    assert (b["days_since_last"], b["usual_gap_days"], b["gap_ratio"]) == (30, None, None)
    assert (c["days_since_last"], c["usual_gap_days"]) == (3, 7.0) and c["gap_ratio"] == pytest.approx(3 / 7)

    # The model, against the closed forms.
    assert a["p_alive"] == pytest.approx(0.302496126, abs=1e-9)
    assert a["p_alive"] == pytest.approx(1 / (1 + 0.7 / 3 * 2.5 ** 2.5), rel=1e-12)
    assert c["p_alive"] == pytest.approx(1 / (1 + 0.7 / 4 * (69 / 66) ** 3.5), rel=1e-12)
    assert (b["p_alive"], b["churn_risk"]) == (1.0, 0.0)
    assert a["churn_risk"] == pytest.approx(1 - a["p_alive"], abs=1e-15)
    assert (a["risk_band"], b["risk_band"], c["risk_band"]) == ("medium", "low", "low")
    for row, (x, tx, T) in ((a, (2, 30, 90)), (b, (0, 0, 30)), (c, (3, 56, 59))):
        want = expected_closed_form(90.0, x, tx, T, MODEL.r, MODEL.alpha, MODEL.a, MODEL.b)
        assert row["expected_90d"] == pytest.approx(want, rel=1e-10)

    # CLV: the library's, the CLV if alive by the closed form, and value at risk.
    for row, (x, tx, T, m) in ((a, (2, 30, 90, 75.0)), (b, (0, 0, 30, 0.0)), (c, (3, 56, 59, 40.0))):
        assert row["predicted_clv"] == pytest.approx(
            C.clv(MODEL, SPEND, x, tx, T, m, margin=0.3, monthly_discount_rate=0.01), rel=1e-12)
        assert row["clv_if_alive"] == pytest.approx(clv_alive_closed_form(x, T, m), rel=1e-9)
        assert row["predicted_clv"] == pytest.approx(row["p_alive"] * row["clv_if_alive"], rel=1e-10)
        assert row["value_at_risk"] == pytest.approx(row["churn_risk"] * row["clv_if_alive"], rel=1e-12)
        assert row["value_at_risk"] == pytest.approx(row["clv_if_alive"] - row["predicted_clv"], rel=1e-9, abs=1e-12)
    assert b["value_at_risk"] == 0.0 and a["value_at_risk"] > 0

    # Expected next order: as_of + (alpha + T) / (r + x) days.
    assert (a["days_to_next"], a["expected_next_order"]) == (40.0, date(2024, 5, 10))
    assert (b["days_to_next"], b["expected_next_order"]) == (80.0, date(2024, 6, 19))
    assert c["days_to_next"] == pytest.approx(69 / 3.5) and c["expected_next_order"] == date(2024, 4, 20)

    # Context columns.
    assert (a["last_channel"], b["last_channel"], c["last_channel"]) == ("zalo_oa", "store", "app")
    assert (a["latest_nps"], b["latest_nps"], c["latest_nps"]) == (3, None, None)
    assert (a["acquisition_channel"], a["region"], b["region"]) == ("facebook", "Hà Nội", "Huế")
    assert (a["segment"], b["segment"], c["segment"]) == ("at_risk", "hibernating", "potential_loyalist")

    # Masked by default; the caller may ask for the contacts.
    assert (a["name"], a["email"], a["phone"]) == ("Nguyễn V. A.", "a***@example.vn", "09xx xxx 678")
    assert a["customer_id"] == "A"
    plain = rows_by_id(churn.risk_list(churn_store, f(), as_of=AS_OF, bgnbd=MODEL, gg=SPEND, unmasked=True))
    assert (plain["A"]["name"], plain["A"]["email"], plain["A"]["phone"]) == (
        "Nguyễn Văn An", "an.nguyen@example.vn", "0912345678")

    # Largest value at risk first.
    assert lst["value_at_risk"].to_list() == sorted(lst["value_at_risk"].to_list(), reverse=True)
    assert lst["customer_id"][-1] == "B"


def test_risk_list_units_filters_and_empty(churn_store):
    days = churn.risk_list(churn_store, f(), as_of=AS_OF, bgnbd=MODEL, gg=SPEND).sort("customer_key")
    # The same model in weeks (alpha / 7) gives the same answers.
    weekly = C.BGNBD(r=MODEL.r, alpha=MODEL.alpha / 7, a=MODEL.a, b=MODEL.b)
    weeks = churn.risk_list(churn_store, f(), as_of=AS_OF, bgnbd=weekly, gg=SPEND, unit="weeks").sort("customer_key")
    for col in ("p_alive", "expected_90d", "days_to_next", "predicted_clv", "clv_if_alive", "value_at_risk"):
        assert np.allclose(days[col].to_numpy(), weeks[col].to_numpy(), rtol=1e-9), col
    assert days["expected_next_order"].to_list() == weeks["expected_next_order"].to_list()
    # Region and channel filters; an earlier as_of drops later orders.
    assert sorted(churn.risk_list(churn_store, f(regions=("Hà Nội",)), as_of=AS_OF, bgnbd=MODEL, gg=SPEND)
                  ["customer_id"]) == ["A", "C"]
    shop = rows_by_id(churn.risk_list(churn_store, f(channels=("website", "shopee")), as_of=AS_OF,
                                      bgnbd=MODEL, gg=SPEND))
    assert sorted(shop) == ["A"] and shop["A"]["orders"] == 3 and shop["A"]["last_channel"] == "shopee"
    early = rows_by_id(churn.risk_list(churn_store, f(), as_of=date(2024, 2, 10), bgnbd=MODEL, gg=SPEND))
    assert sorted(early) == ["A", "C"] and early["C"]["usual_gap_days"] == 7.0 and early["A"]["latest_nps"] == 9
    none = churn.risk_list(churn_store, f(), as_of=date(2023, 12, 31), bgnbd=MODEL, gg=SPEND)
    assert none.height == 0 and none.columns == list(churn.RISK_COLUMNS)


def test_clv_if_alive_stays_finite_when_p_alive_vanishes():
    # A customer with 60 repeat purchases in the first 30 of 3,000 days: P(alive) ~ 0.
    x, tx, T = 60.0, 30.0, 3000.0
    assert MODEL.p_alive(x, tx, T) < 1e-100
    value = churn.clv_if_alive(MODEL, SPEND, x, T, 50.0)
    assert value.shape == (1,) and np.isfinite(value[0]) and value[0] > 0
    assert value[0] == pytest.approx(clv_alive_closed_form(x, T, 50.0), rel=1e-8)


def test_risk_bands():
    assert [churn.risk_band(v) for v in (0.0, 0.2999, 0.3, 0.6999, 0.7, 1.0)] == [
        "low", "low", "medium", "medium", "high", "high"]
    assert churn.risk_band(None) is None and churn.risk_band(float("nan")) is None
    assert (churn.LOW_RISK_BELOW, churn.HIGH_RISK_FROM) == (0.3, 0.7)
    s = churn.risk_band(pl.Series([0.1, None, 0.5, 0.95]))
    assert s.to_list() == ["low", None, "medium", "high"]


def test_risk_summary_by_hand():
    lst = pl.DataFrame({
        "churn_risk": [0.9, 0.75, 0.5, 0.2, 0.0],
        "value_at_risk": [100.0, 50.0, 30.0, 5.0, 0.0],
        "predicted_clv": [10.0, 20.0, 30.0, 40.0, 50.0],
        "historical_margin": [500.0, 20.0, 300.0, 100.0, 10.0],
        "historical_revenue": [900.0, 90.0, 600.0, 300.0, 40.0],
    })
    s = churn.risk_summary(lst, 0.5, min_value=100)
    # churn >= 0.5 and historical margin >= 100: the first and the third.
    assert (s["customers"], s["at_risk"], s["at_risk_share"]) == (5, 2, 0.4)
    assert (s["value_at_risk"], s["historical"], s["value_at_risk_total"]) == (130.0, 800.0, 185.0)
    assert s["bands"].rows() == [("low", 2, 5.0, 90.0), ("medium", 1, 30.0, 30.0), ("high", 2, 150.0, 30.0)]
    rev = churn.risk_summary(lst, 0.7, min_value=50, value="historical_revenue")
    assert (rev["at_risk"], rev["value_at_risk"], rev["historical"]) == (2, 150.0, 990.0)
    none = churn.risk_summary(lst.head(0), 0.5)
    assert (none["customers"], none["at_risk"], none["at_risk_share"], none["value_at_risk"]) == (0, 0, None, 0.0)
    assert none["bands"]["customers"].to_list() == [0, 0, 0]
    with pytest.raises(ValueError):
        churn.risk_summary(lst, 1.5)


# ---------------------------------------------------------------------------------
# Holdout precision on simulated BG/NBD customers
# ---------------------------------------------------------------------------------
SIM_START = datetime(2023, 1, 1, 12)
TRUTH = {"r": 0.6, "alpha": 30.0, "a": 0.8, "b": 3.0}  # days


def simulate_orders(rng: np.random.Generator, n: int, *, horizon: int = 270, entry: int = 120):
    """BG/NBD customers in continuous time: first purchase on a uniform day in
    [0, entry), then Poisson(lambda) purchases, dropping out after each repeat purchase
    with probability p; lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b). Returns the
    orders (at noon of each purchase day) and each customer's purchase days."""
    rows, days = [], {}
    for i in range(n):
        start = int(rng.integers(0, entry))
        lam, p = rng.gamma(TRUTH["r"], 1 / TRUTH["alpha"]), rng.beta(TRUTH["a"], TRUTH["b"])
        times, t = [float(start)], float(start)
        while True:
            t += rng.exponential(1 / lam)
            if t >= horizon:
                break
            times.append(t)
            if rng.random() < p:
                break
        cid = f"S{i:05d}"
        days[cid] = sorted({int(v) for v in times})
        for j, v in enumerate(times):
            rows.append({"order_id": f"{cid}-{j}", "customer_id": cid,
                         "ordered_at": SIM_START + timedelta(days=int(v)),
                         "revenue": float(rng.gamma(4.0, 10.0)), "status": "completed"})
    return pl.DataFrame(rows), days


@pytest.fixture(scope="module")
def simulated():
    orders, days = simulate_orders(np.random.default_rng(1), 4000)
    store = Store(":memory:")
    store.load_frames({"orders": orders}, kind="test", keep_undo=False)
    yield store, days
    store.close()


def test_targeting_precision_beats_the_base_rate(simulated):
    store, days = simulated
    cal_end, hold_end = SIM_START.date() + timedelta(days=179), SIM_START.date() + timedelta(days=269)
    fl = Filters(start=cal_end, end=cal_end)
    shares = (0.05, 0.1, 0.2)
    out = churn.targeting_precision(store, fl, calibration_end=cal_end, holdout_end=hold_end, shares=shares)
    assert out.columns == list(churn.PRECISION_COLUMNS)
    # The base rate, counted straight from the simulation: customers who had bought by
    # day 179 and made no purchase on days 180..269.
    cal = {c: d for c, d in days.items() if d[0] <= 179}
    lapsed = sum(1 for d in cal.values() if not any(180 <= v <= 269 for v in d))
    n = len(cal)
    assert out["customers"].to_list() == [n] * 3 and out["base_lapsed"].to_list() == [lapsed] * 3
    assert out["base_rate"][0] == pytest.approx(lapsed / n)
    assert out["targeted"].to_list() == [math.ceil(s * n) for s in shares]
    for row in out.to_dicts():
        assert row["precision"] == pytest.approx(row["lapsed"] / row["targeted"])
        assert row["low"] > row["base_rate"], row  # the whole 95% interval is above the base rate
        assert row["lift"] == pytest.approx(row["precision"] / row["base_rate"]) and row["lift"] > 1.15
    assert out["min_churn_risk"].to_list() == sorted(out["min_churn_risk"].to_list(), reverse=True)
    # The caller's model (here the truth) gives the same picture.
    given = churn.targeting_precision(store, fl, calibration_end=cal_end, holdout_end=hold_end, shares=shares,
                                      bgnbd_fit_on_calibration=C.BGNBD(**TRUTH))
    assert np.all(given["low"].to_numpy() > given["base_rate"].to_numpy())
    with pytest.raises(ValueError):
        churn.targeting_precision(store, fl, calibration_end=cal_end, holdout_end=hold_end, shares=(0.0,))


# ---------------------------------------------------------------------------------
# Control group
# ---------------------------------------------------------------------------------
def test_holdout_flag_is_deterministic_and_has_the_share():
    keys = [f"KH{i:05d}" for i in range(20_000)]
    flags = churn.holdout_flag(keys, 0.1, seed=42)
    assert flags.dtype == pl.Boolean and flags.name == "holdout" and flags.len() == len(keys)
    assert abs(flags.mean() - 0.1) < 3 * math.sqrt(0.1 * 0.9 / len(keys))
    # Same customer, same flag: whatever the order, the other keys, or the input type.
    by_key = dict(zip(keys, flags.to_list()))
    shuffled = list(np.random.default_rng(0).permutation(keys))
    assert [by_key[k] for k in shuffled] == churn.holdout_flag(shuffled, 0.1, seed=42).to_list()
    assert churn.holdout_flag(keys[:50], 0.1, seed=42).to_list() == flags.to_list()[:50]
    assert churn.holdout_flag(pl.Series(keys), 0.1, 42).equals(flags)
    assert churn.holdout_flag([1, 2, 3], 0.5, 7).to_list() == churn.holdout_flag(["1", "2", "3"], 0.5, 7).to_list()
    # Another seed draws another group; a larger share contains the smaller one.
    other = churn.holdout_flag(keys, 0.1, seed=43)
    assert (flags & other).sum() < 0.2 * flags.sum()
    assert (flags & ~churn.holdout_flag(keys, 0.3, seed=42)).sum() == 0
    assert not churn.holdout_flag(keys[:100], 0.0, 1).any() and churn.holdout_flag(keys[:100], 1.0, 1).all()
    assert churn.holdout_flag(["A", None], 1.0, 1).to_list() == [True, False]
    with pytest.raises(ValueError):
        churn.holdout_flag(keys, 1.5, 1)


# ---------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------
def test_export_frame_masks_unless_asked(churn_store):
    masked = churn.risk_list(churn_store, f(), as_of=AS_OF, bgnbd=MODEL, gg=SPEND)
    out = churn.export_frame(masked, include_contact=False, lang="en")
    assert out.columns == [h[0] for h in churn.EXPORT_COLUMNS.values()]
    a = {r["Customer ID"]: r for r in out.to_dicts()}["A"]
    assert (a["Name"], a["Email"], a["Phone"]) == ("Nguyễn V. A.", "a***@example.vn", "09xx xxx 678")
    assert (a["RFM segment"], a["Churn risk band"], a["Churn risk"]) == ("At Risk", "Medium", round(1 - 0.302496126, 4))
    assert a["Suggested action"].startswith("Personalised win-back")
    assert (a["Days since last order"], a["Usual gap (days)"], a["Expected next order"]) == (60, 15.0, date(2024, 5, 10))
    with pytest.raises(ValueError, match="unmasked=True"):
        churn.export_frame(masked, include_contact=True, lang="en")
    plain = churn.risk_list(churn_store, f(), as_of=AS_OF, bgnbd=MODEL, gg=SPEND, unmasked=True)
    vi = churn.export_frame(plain, include_contact=True, lang="vi")
    assert vi.columns[:4] == ["Mã khách hàng", "Họ tên", "Email", "Số điện thoại"]
    a = {r["Mã khách hàng"]: r for r in vi.to_dicts()}["A"]
    assert (a["Họ tên"], a["Email"], a["Số điện thoại"]) == ("Nguyễn Văn An", "an.nguyen@example.vn", "0912345678")
    assert (a["Phân khúc RFM"], a["Mức rủi ro rời bỏ"]) == ("Có nguy cơ rời bỏ", "Trung bình")
    # Contacts are masked from an unmasked list when not asked for.
    hidden = churn.export_frame(plain, include_contact=False, lang="vi")
    assert hidden["Họ tên"].to_list() == masked["name"].to_list()
    with pytest.raises(ValueError):
        churn.export_frame(plain, include_contact=False, lang="fr")


def test_to_xlsx_neutralises_formulas_and_keeps_numbers():
    frame = pl.DataFrame({
        "=cmd": ['=HYPERLINK("x")', "+1+1", "@SUM(1)", "\tTAB", "-20", "\rCR", "Nguyễn An", None],
        "amount": [-20.0, 1.5, 0.0, float("nan"), 1e12, -0.25, 3.0, None],
        "count": [-20, 1, 2, 3, 4, 5, 6, None],
        "day": [date(2024, 5, 10)] * 7 + [None],
        "flag": [True, False, True, False, True, False, None, True],
    })
    raw = churn.to_xlsx(frame)
    ws = load_workbook(io.BytesIO(raw)).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == ("'=cmd", "amount", "count", "day", "flag")
    assert [r[0] for r in rows[1:]] == ["'=HYPERLINK(\"x\")", "'+1+1", "'@SUM(1)", "'\tTAB", "'-20", rows[6][0],
                                        "Nguyễn An", None]
    assert rows[6][0] in ("'\rCR", "'\nCR")  # XML reading normalises a carriage return to a line feed
    # Nothing is stored as a formula.
    for row in ws.iter_rows(min_row=2):
        assert all(cell.data_type != "f" for cell in row)
    assert [r[1] for r in rows[1:]] == [-20, 1.5, 0, None, 1e12, -0.25, 3, None]
    assert isinstance(rows[1][1], (int, float)) and rows[1][2] == -20 and isinstance(rows[1][2], int)
    assert rows[1][3] == datetime(2024, 5, 10) and rows[8][3] is None
    assert [r[4] for r in rows[1:]] == [True, False, True, False, True, False, None, True]
    # Other types: categories are text (neutralised too), XML-illegal control characters
    # are dropped, infinities are empty, a time zone is dropped keeping the local time.
    odd = pl.DataFrame({
        "cat": pl.Series(["=a", "b"], dtype=pl.Categorical), "ctl": ["\x01bad", "ok\x1f"],
        "ts": pl.Series([datetime(2024, 1, 1, 9), None]).dt.replace_time_zone("Asia/Ho_Chi_Minh"),
        "inf": [float("inf"), -1.0],
    })
    assert list(load_workbook(io.BytesIO(churn.to_xlsx(odd))).active.iter_rows(values_only=True)) == [
        ("cat", "ctl", "ts", "inf"), ("'=a", "bad", datetime(2024, 1, 1, 9), None), ("b", "ok", None, -1)]
    assert neutralise("-20") == "'-20" and neutralise("20") == "20" and neutralise("") == ""
    # The win-back export goes through unchanged in shape.
    ex = pl.DataFrame({"Customer ID": ["=A1"], "Churn risk": [0.5]})
    back = list(load_workbook(io.BytesIO(churn.to_xlsx(ex))).active.iter_rows(values_only=True))
    assert back == [("Customer ID", "Churn risk"), ("'=A1", 0.5)]
