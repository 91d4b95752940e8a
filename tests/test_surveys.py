"""metrics/surveys.py: golden tables computed by hand on a tiny shop, Spearman drivers
against scipy, the verbatim pipeline, and the demo's ground truth (promoters retain
better than detractors, as generated)."""

from __future__ import annotations

import math
import unicodedata
from dataclasses import replace
from datetime import date, datetime

import polars as pl
import pytest
from scipy import stats as st

from data.importer import to_excel_csv
from data.store import Store
from metrics import surveys as S
from metrics.filters import Filters
from metrics.stats import Z95, wilson_interval


def dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


MARCH = Filters(start=date(2024, 3, 1), end=date(2024, 3, 31), inactivity_days=30)
FEB = (date(2024, 2, 1), date(2024, 2, 29))


# ---------------------------------------------------------------------------------
# A tiny shop, computed by hand
# ---------------------------------------------------------------------------------
def shop_frames() -> dict[str, pl.DataFrame]:
    """Six customers KH0001..KH0006 = A..F (A, B, C in Hà Nội; D, E, F in HCMC).

    Responses (nps / csat / ces, touchpoint, channel):
      R1 A  2 Mar  10 / 5 / 2   delivery  website  "Giao hàng nhanh, rất hài lòng!"
      R2 B  5 Mar   9 / 4 / -   product   website  "Sản phẩm tốt"
      R3 C  8 Mar   8 / 4 / 3   delivery  shopee
      R4 D 10 Mar   9 / 3 / -   product   shopee   "ok"
      R5 E 12 Mar   6 / 2 / 5   delivery  shopee   "Giao hàng chậm"
      R6 -  15 Mar  3 / 1 / 6   delivery  website  "=HYPERLINK bad"   (anonymous)
      R7 A 20 Mar  10 / - / -   product   website                      (A's latest)
      R8 F 25 Mar   0 / 1 / 7   delivery  store    "-Tệ quá"
      R9 B 10 Feb   2 / - / -   product   website  (February)
      R10 E 2 Apr  10 / - / -   product   website  (April, outside March)
    Completed orders (revenue / margin): A 10 Jan 100/30, 1 Apr 200/60, 15 Jun 50/15;
    B 1 Feb 80/20; D 9 Mar 60/18, 25 Mar 40/12 (+ a cancelled 999 on 1 Apr);
    E 1 Mar 120/36, 1 May 30/- (margin rate); F 24 Mar 500/150; C none.
    """
    ids = {k: f"KH000{i}" for i, k in enumerate("ABCDEF", start=1)}
    customers = pl.DataFrame({
        "customer_id": list(ids.values()),
        "region": ["Hà Nội"] * 3 + ["TP. Hồ Chí Minh"] * 3,
    })
    o = [  # customer, when, revenue, margin, status
        ("A", "2024-01-10 10:00", 100.0, 30.0, "completed"), ("A", "2024-04-01 10:00", 200.0, 60.0, "completed"),
        ("A", "2024-06-15 10:00", 50.0, 15.0, "completed"), ("B", "2024-02-01 10:00", 80.0, 20.0, "completed"),
        ("D", "2024-03-09 10:00", 60.0, 18.0, "completed"), ("D", "2024-03-25 10:00", 40.0, 12.0, "completed"),
        ("D", "2024-04-01 10:00", 999.0, 300.0, "cancelled"), ("E", "2024-03-01 10:00", 120.0, 36.0, "completed"),
        ("E", "2024-05-01 10:00", 30.0, None, "completed"), ("F", "2024-03-24 10:00", 500.0, 150.0, "completed"),
    ]
    orders = pl.DataFrame({
        "order_id": [f"O{i}" for i in range(len(o))], "customer_id": [ids[r[0]] for r in o],
        "ordered_at": [dt(r[1]) for r in o], "revenue": [r[2] for r in o], "gross_margin": [r[3] for r in o],
        "status": [r[4] for r in o], "channel": ["website"] * len(o),
    })
    r = [  # id, customer, when, nps, csat, ces, touchpoint, channel, comment
        ("R1", "A", "2024-03-02 09:00", 10, 5, 2, "delivery", "website", "Giao hàng nhanh, rất hài lòng!"),
        ("R2", "B", "2024-03-05 09:00", 9, 4, None, "product", "website", "Sản phẩm tốt"),
        ("R3", "C", "2024-03-08 09:00", 8, 4, 3, "delivery", "shopee", None),
        ("R4", "D", "2024-03-10 09:00", 9, 3, None, "product", "shopee", "ok"),
        ("R5", "E", "2024-03-12 09:00", 6, 2, 5, "delivery", "shopee", "Giao hàng chậm"),
        ("R6", None, "2024-03-15 09:00", 3, 1, 6, "delivery", "website", "=HYPERLINK bad"),
        ("R7", "A", "2024-03-20 09:00", 10, None, None, "product", "website", None),
        ("R8", "F", "2024-03-25 09:00", 0, 1, 7, "delivery", "store", "-Tệ quá"),
        ("R9", "B", "2024-02-10 09:00", 2, None, None, "product", "website", None),
        ("R10", "E", "2024-04-02 09:00", 10, None, None, "product", "website", None),
    ]
    responses = pl.DataFrame({
        "response_id": [x[0] for x in r], "customer_id": [ids[x[1]] if x[1] else None for x in r],
        "responded_at": [dt(x[2]) for x in r], "nps": [x[3] for x in r], "csat": [x[4] for x in r],
        "ces": [x[5] for x in r], "touchpoint": [x[6] for x in r], "channel": [x[7] for x in r],
        "comment": [x[8] for x in r], "survey": ["S"] * len(r),
    }, schema_overrides={"customer_id": pl.Utf8, "csat": pl.Int64, "ces": pl.Int64, "comment": pl.Utf8})
    return {"customers": customers, "orders": orders, "survey_responses": responses}


@pytest.fixture()
def shop() -> Store:
    store = Store(":memory:")
    store.load_frames(shop_frames(), kind="test")
    yield store
    store.close()


def key_of(store: Store, customer_id: str) -> int:
    return int(store.scalar("SELECT customer_key FROM customers WHERE customer_id = $c", {"c": customer_id}))


def rows(frame: pl.DataFrame, key: str) -> dict:
    return {r[key]: r for r in frame.to_dicts()}


def test_scores_golden(shop):
    """March: NPS answers 10, 9, 8, 9, 6, 3 (anonymous), 10, 0 -> n = 8, promoters 4,
    detractors 3: NPS = (4 - 3) / 8 = 12.5 points; p = 0.5, d = 0.375, Var = (0.5 +
    0.375 - 0.125^2) / 8 = 0.859375 / 8, so the interval is 100 x (0.125 +- 1.96 x
    0.32775) = (-51.74, 76.74). CSAT answers 5, 4, 4, 3, 2, 1, 1 -> 3 of 7 satisfied,
    Wilson. CES 2, 3, 5, 6, 7 -> mean 4.6, sd sqrt(17.2 / 4) = 2.0736, t(0.975, 4) =
    2.7764, half = 2.7764 x 2.0736 / sqrt(5) = 2.5748. February: one 2 -> NPS -100
    (Var 0), so the change 112.5 has half-width 1.96 x 32.775."""
    t = rows(S.score_summary(shop, MARCH, comparison=FEB), "metric")
    nps = t["nps"]
    se = math.sqrt((0.5 + 0.375 - 0.125 ** 2) / 8)
    assert nps["n"] == 8 and nps["value"] == pytest.approx(12.5)
    assert (nps["low"], nps["high"]) == pytest.approx((100 * (0.125 - Z95 * se), 100 * (0.125 + Z95 * se)))
    assert nps["low"] == pytest.approx(-51.74, abs=0.01) and nps["high"] == pytest.approx(76.74, abs=0.01)
    assert (nps["previous"], nps["previous_n"], nps["change"]) == (-100.0, 1, 112.5)
    assert (nps["change_low"], nps["change_high"]) == pytest.approx((112.5 - Z95 * 100 * se, 112.5 + Z95 * 100 * se))
    csat = t["csat"]
    assert csat["n"] == 7 and csat["value"] == pytest.approx(3 / 7)
    assert (csat["low"], csat["high"]) == pytest.approx(wilson_interval(3, 7))
    p, n, z = 3 / 7, 7, Z95  # Wilson by hand
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (csat["low"], csat["high"]) == pytest.approx((centre - half, centre + half))
    ces = t["ces"]
    sd = math.sqrt(17.2 / 4)
    half = st.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert ces["n"] == 5 and ces["value"] == pytest.approx(4.6)
    assert (ces["low"], ces["high"]) == pytest.approx((4.6 - half, 4.6 + half))
    assert half == pytest.approx(2.5748, abs=1e-4)
    assert t["ces"]["previous_n"] == 0 and t["ces"]["previous"] is None and t["ces"]["change"] is None
    # No comparison: the previous columns are null.
    assert S.score_summary(shop, MARCH)["previous"].null_count() == 3


def test_interval_clipped_and_filters(shop):
    """All promoters: NPS 100 with the interval clipped at 100. The region filter drops
    the anonymous answer (it has no region); the channel filter reads the response's
    own channel."""
    hn = replace(MARCH, regions=("Hà Nội",))  # A, B, C: R1, R2, R3, R7 = 10, 9, 8, 10
    nps = rows(S.score_summary(shop, hn), "metric")["nps"]
    assert nps["n"] == 4 and nps["value"] == pytest.approx(75.0)
    promoters_only = Filters(start=date(2024, 3, 20), end=date(2024, 3, 20))  # R7 alone
    nps = rows(S.score_summary(shop, promoters_only), "metric")["nps"]
    assert (nps["value"], nps["low"], nps["high"]) == (100.0, 100.0, 100.0)
    shopee = replace(MARCH, channels=("shopee",))  # R3, R4, R5 = 8, 9, 6
    nps = rows(S.score_summary(shop, shopee), "metric")["nps"]
    assert nps["n"] == 3 and nps["value"] == pytest.approx(0.0)
    # Everyone identified is a non-member; the anonymous answer goes (even though
    # NULL NOT IN an empty set would be TRUE in SQL).
    member = replace(MARCH, loyalty="non_member")
    assert rows(S.score_summary(shop, member), "metric")["nps"]["n"] == 7


def test_monthly_and_distribution(shop):
    q1 = Filters(start=date(2024, 1, 1), end=date(2024, 3, 31))
    m = S.monthly_scores(shop, q1).filter(pl.col("metric") == "nps")
    assert m["month"].to_list() == [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)]
    assert m["n"].to_list() == [0, 1, 8]
    assert m["value"].to_list() == [None, -100.0, 12.5]
    d = S.nps_distribution(shop, MARCH)
    assert d["score"].to_list() == list(range(11))
    assert d["n"].to_list() == [1, 0, 0, 1, 0, 0, 1, 0, 1, 2, 2]
    assert d["category"].to_list() == ["detractor"] * 7 + ["passive"] * 2 + ["promoter"] * 2
    assert d["share"].sum() == pytest.approx(1.0) and d["share"][10] == pytest.approx(2 / 8)


def test_breakdowns(shop):
    """Delivery: 10, 8, 6, 3, 0 -> (1 - 3) / 5 = -40; product: 9, 9, 10 -> 100.
    Customer groups A, B -> g1 (R1, R2, R7: 100), C -> g2 (R3: 0); the anonymous R6
    and the ungrouped D, E, F (R4, R5, R8) are left out and counted."""
    t = S.scores_by(shop, MARCH, "touchpoint").filter(pl.col("metric") == "nps")
    got = rows(t, "group")
    assert (got["delivery"]["n"], got["delivery"]["value"]) == (5, pytest.approx(-40.0))
    assert (got["product"]["n"], got["product"]["value"]) == (3, pytest.approx(100.0))
    assert t["group"].to_list() == ["delivery", "product"]  # largest first
    ch = rows(S.scores_by(shop, MARCH, "channel").filter(pl.col("metric") == "csat"), "group")
    assert ch["website"]["n"] == 3 and ch["website"]["value"] == pytest.approx(2 / 3)  # 5, 4, 1
    with pytest.raises(ValueError):
        S.scores_by(shop, MARCH, "region")
    groups = pl.DataFrame({"customer_key": [key_of(shop, "KH0001"), key_of(shop, "KH0002"), key_of(shop, "KH0003")],
                           "group": ["g1", "g1", "g2"]})
    linked = S.scores_by_customer_group(shop, MARCH, groups)
    assert (linked.anonymous, linked.unmatched) == (1, 3)
    g = rows(linked.table.filter(pl.col("metric") == "nps"), "group")
    assert (g["g1"]["customers"], g["g1"]["responses"], g["g1"]["n"], g["g1"]["value"]) == (2, 3, 3, 100.0)
    assert (g["g2"]["n"], g["g2"]["value"]) == (1, 0.0)


def test_clv_deciles(shop):
    """decile = 1 + floor(10 (rank_min - 1) / n). Six customers with CLV F 50 < E 60 <
    D 70 < C 80 < B 90 < A 100 -> 1, 2, 4, 6, 7, 9; ties share a decile."""
    keys = {c: key_of(shop, f"KH000{i}") for i, c in enumerate("ABCDEF", start=1)}
    clv = pl.DataFrame({"customer_key": list(keys.values()), "clv": [100.0, 90, 80, 70, 60, 50]})
    d = rows(S.clv_deciles(clv), "customer_key")
    assert [d[keys[c]]["decile"] for c in "FEDCBA"] == [1, 2, 4, 6, 7, 9]
    twenty = S.clv_deciles(pl.DataFrame({"customer_key": range(20), "clv": [float(v) for v in range(20)]}))
    assert twenty["decile"].to_list() == [k // 2 + 1 for k in range(20)]  # 1, 1, 2, 2, ..., 10, 10
    ties = S.clv_deciles(pl.DataFrame({"customer_key": range(20), "clv": [0.0] + [1.0] * 5 + [float(v) for v in range(2, 16)]}))
    # the five 1.0s share rank_min 2 -> decile 1 + floor(10 x 1 / 20) = 1; the value 2 has rank 7 -> 4
    assert ties["decile"].to_list()[:7] == [1, 1, 1, 1, 1, 1, 4]
    linked = S.scores_by_clv_decile(shop, MARCH, clv)
    t = rows(linked.table.filter(pl.col("metric") == "nps"), "decile")
    assert sorted(t) == [1, 2, 4, 6, 7, 9]
    assert (t[9]["n"], t[9]["value"], t[9]["clv_mean"]) == (2, 100.0, 100.0)  # A: R1, R7
    assert (t[1]["n"], t[1]["value"]) == (1, -100.0)  # F: R8 = 0
    assert linked.anonymous == 1 and linked.unmatched == 0


def test_say_vs_do_golden(shop):
    """Latest March answers: A 10 (R7, 20 Mar), B 9, D 9 (promoters); C 8 (passive);
    E 6 (R5; R10 is April), F 0 (detractors). H = 30 days, as_of 30 Jun, W = 30 days
    (recent window [1 Jun, 1 Jul)).
    Promoters: retained A (1 Apr, 200) and D (25 Mar, 40), not B -> 2/3; revenue
      (200 + 0 + 40) / 3 = 80; all bought before; churned B, D (A bought 15 Jun) -> 2/3.
    Passive C: no order at all -> retention 0/1, revenue 0, no buyer before -> churn null.
    Detractors E, F: no order within 30 days -> 0/2, revenue 0 (sd 0), both churned -> 1.
    The anonymous R6 is left out."""
    sd = S.say_vs_do(shop, MARCH, as_of=date(2024, 6, 30), horizon_days=30)
    t = rows(sd.table, "category")
    assert list(t) == ["promoter", "passive", "detractor"]
    p = t["promoter"]
    assert (p["respondents"], p["observed"], p["retained"], p["buyers_before"], p["churned"]) == (3, 3, 2, 3, 2)
    assert p["retention"] == pytest.approx(2 / 3) and p["churn_rate"] == pytest.approx(2 / 3)
    assert (p["retention_low"], p["retention_high"]) == pytest.approx(wilson_interval(2, 3))
    assert p["revenue_after"] == pytest.approx(80.0)
    sdev = st.tstd([200.0, 0.0, 40.0])
    half = st.t.ppf(0.975, 2) * sdev / math.sqrt(3)
    assert (p["revenue_low"], p["revenue_high"]) == pytest.approx((80 - half, 80 + half))
    c = t["passive"]
    assert (c["observed"], c["retained"], c["revenue_after"], c["buyers_before"], c["churn_rate"]) == (1, 0, 0.0, 0, None)
    d = t["detractor"]
    assert (d["observed"], d["retained"], d["revenue_after"], d["churned"], d["churn_rate"]) == (2, 0, 0.0, 2, 1.0)
    assert (d["revenue_low"], d["revenue_high"]) == (0.0, 0.0)
    assert (sd.anonymous, sd.unobserved, sd.horizon_days) == (1, 0, 30)
    # H = 110 days: only answers up to 13 Mar 00:00 are observed (A on 20 Mar, F on 25 Mar are not).
    late = S.say_vs_do(shop, MARCH, as_of=date(2024, 6, 30), horizon_days=110)
    lt = rows(late.table, "category")
    assert late.unobserved == 2 and lt["promoter"]["observed"] == 2 and lt["detractor"]["observed"] == 1
    assert lt["promoter"]["retention"] == pytest.approx(1 / 2)  # D (25 Mar), not B
    assert lt["promoter"]["buyers_before"] == 3  # churn needs no horizon
    # observed_period: as long as the period, ending H days before as_of.
    assert S.observed_period(MARCH, as_of=date(2024, 6, 30), horizon_days=30) == (date(2024, 5, 1), date(2024, 5, 31))


def test_detractors_ranking_masking_export(shop):
    """Detractors by their latest answer: E (6) and F (0). Margin to 31 Mar: F 150, E 36
    (E's May order is after the period). With a CLV frame E (1000) outranks F (10)."""
    det = S.detractors_to_call(shop, MARCH)
    t = det.table
    assert t["customer"].to_list() == ["KH••06", "KH••05"]
    assert t["value"].to_list() == [150.0, 36.0] and t["basis"].to_list() == ["margin", "margin"]
    assert t["last_score"].to_list() == [0, 6] and t["rank"].to_list() == [1, 2]
    assert t["last_order"].to_list() == [date(2024, 3, 24), date(2024, 3, 1)]
    assert t["comment"].to_list() == ["-Tệ quá", "Giao hàng chậm"]
    assert t["touchpoint"].to_list() == ["delivery", "delivery"]
    assert (det.anonymous, det.total) == (1, 2)
    keys = {"E": key_of(shop, "KH0005"), "F": key_of(shop, "KH0006")}
    by_clv = S.detractors_to_call(shop, MARCH, clv=pl.DataFrame({"customer_key": [keys["E"], keys["F"]],
                                                                  "clv": [1000.0, 10.0]}))
    assert by_clv.table["customer"].to_list() == ["KH••05", "KH••06"]
    assert by_clv.table["basis"][0] == "clv" and by_clv.table["margin"].to_list() == [36.0, 150.0]
    assert S.detractors_to_call(shop, MARCH, limit=1).table.height == 1
    ex = S.detractors_export(t)
    assert "customer_key" not in ex.columns
    assert ex["comment"].to_list() == ["'-Tệ quá", "Giao hàng chậm"]  # formula-safe
    assert b"KH0005" not in to_excel_csv(ex) and "KH0006" not in str(ex.to_dicts())


# ---------------------------------------------------------------------------------
# Key drivers against scipy
# ---------------------------------------------------------------------------------
X_CSAT = [5, 4, 4, 3, 2, 5, 1, 3]  # delivery CSAT on 1 Mar
Y_NPS = [10, 9, 7, 8, 3, 9, 0, 6]  # NPS of the app survey on 10 Mar (each customer's latest)
C_CES = [1, 2, 2, 3, 5, 1, 7, 4]  # app CES (the app survey has no CSAT)


@pytest.fixture()
def driver_store() -> Store:
    ids = [f"T{i}" for i in range(8)]
    r = pl.DataFrame({
        "response_id": [f"D{i}" for i in range(8)] + [f"A{i}" for i in range(8)] + ["X"],
        "customer_id": ids + ids + [None],
        "responded_at": [dt("2024-03-01 10:00")] * 8 + [dt("2024-03-10 10:00")] * 8 + [dt("2024-03-05 10:00")],
        "touchpoint": ["delivery"] * 8 + ["app"] * 8 + ["delivery"],
        "nps": [5] * 8 + Y_NPS + [10],
        "csat": X_CSAT + [None] * 8 + [5],
        "ces": [None] * 16 + [None],
    }, schema_overrides={"customer_id": pl.Utf8, "csat": pl.Int64, "ces": pl.Int64})
    r = r.with_columns(pl.when(pl.col("touchpoint") == "app").then(
        pl.Series(C_CES * 2 + [0])).otherwise(None).cast(pl.Int64).alias("ces"))
    store = Store(":memory:")
    store.load_frames({"customers": pl.DataFrame({"customer_id": ids}), "survey_responses": r}, kind="test")
    yield store
    store.close()


def test_key_drivers_match_scipy(driver_store):
    """Delivery is measured by CSAT, app (no CSAT) by CES reversed (8 - CES); each
    against the customer's latest NPS (the app answer). rho equals
    scipy.stats.spearmanr (ties averaged); the interval is tanh(atanh(rho) +- 1.96
    sqrt(1.06 / 5)). Performance: delivery 5 of 9 CSAT answers are 4-5 (the anonymous
    5 counts), app 5 of 8 CES answers are 1-3."""
    kd = S.key_drivers(driver_store, MARCH, min_n=3)
    t = rows(kd.table, "touchpoint")
    rho_d = st.spearmanr(X_CSAT, Y_NPS).statistic
    rho_a = st.spearmanr([8 - c for c in C_CES], Y_NPS).statistic
    assert rho_a == pytest.approx(-st.spearmanr(C_CES, Y_NPS).statistic)
    assert (t["delivery"]["measure"], t["app"]["measure"]) == ("csat", "ces")
    assert t["delivery"]["rho"] == pytest.approx(rho_d) and t["app"]["rho"] == pytest.approx(rho_a)
    assert t["delivery"]["n"] == t["app"]["n"] == 8
    half = Z95 * math.sqrt(1.06 / 5)
    for tp, rho in (("delivery", rho_d), ("app", rho_a)):
        assert (t[tp]["low"], t[tp]["high"]) == pytest.approx(
            (math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)))
    assert t["delivery"]["performance"] == pytest.approx(5 / 9) and t["delivery"]["performance_n"] == 9
    assert t["app"]["performance"] == pytest.approx(5 / 8) and t["app"]["performance_n"] == 8
    assert t["delivery"]["mean_score"] == pytest.approx(32 / 9) and t["app"]["mean_score"] == pytest.approx(25 / 8)
    # Two touchpoints: each median is their mean; app performs better (5/8 > 5/9), so
    # app is keep_up or overkill and delivery concentrate or low_priority by their rho.
    app_important = rho_a > rho_d
    assert t["app"]["quadrant"] == ("keep_up" if app_important else "overkill")
    assert t["delivery"]["quadrant"] == ("low_priority" if app_important else "concentrate")
    assert kd.anonymous == 1 and kd.unmatched == 0
    assert kd.table["rho"].to_list() == pytest.approx(sorted([rho_a, rho_d], reverse=True))
    # Below min_n (default 30 customers) nothing is placed in the quadrant.
    assert S.key_drivers(driver_store, MARCH).table["quadrant"].null_count() == 2


def test_quadrant_labels():
    assert [S.quadrant(i, p) for i, p in ((True, False), (True, True), (False, False), (False, True))] == \
        ["concentrate", "keep_up", "low_priority", "overkill"]


def test_spearman_interval_edges():
    assert S.spearman_interval(None, 10) == (None, None)
    assert S.spearman_interval(0.5, 3) == (None, None)
    lo, hi = S.spearman_interval(0.0, 103)
    assert (lo, hi) == pytest.approx((-math.tanh(Z95 * math.sqrt(1.06 / 100)), math.tanh(Z95 * math.sqrt(1.06 / 100))))


# ---------------------------------------------------------------------------------
# Verbatims
# ---------------------------------------------------------------------------------
def test_tokenize_keeps_diacritics_and_drops_stop_words():
    nfd = unicodedata.normalize("NFD", "Giao HÀNG nhanh!")
    assert S.tokenize(nfd) == ["giao", "hàng", "nhanh"]  # NFC, lower case, diacritics kept
    assert S.tokenize("hang") != S.tokenize("hàng")
    uni, bi = S.terms("Shop giao hàng rất nhanh và đóng gói cẩn thận, 100 điểm!")
    assert uni == ["giao", "hàng", "nhanh", "đóng", "gói", "cẩn", "thận", "điểm"]
    # stop words (rất, và), punctuation and numbers break phrases
    assert bi == ["giao hàng", "đóng gói", "gói cẩn", "cẩn thận"]
    uni, bi = S.terms("The delivery was very late, didn't arrive")
    assert uni == ["delivery", "late", "arrive"] and bi == []
    assert S.language("Giao hàng nhanh") == "vi" and S.language("Fast delivery") == "en"


def test_log_odds_by_hand_and_ranking():
    """A: x 10, y 5; B: y 5, z 10. Pooled: 30 tokens, alpha_w = pooled count (10 each).
    x in A: delta = ln(20 / 25) - ln(10 / 35) = 1.02962, var = 1/20 + 1/10, z = 2.6585."""
    counts = pl.DataFrame({"group": ["A", "A", "B", "B"], "term": ["x", "y", "y", "z"], "count": [10, 5, 5, 10]})
    lo = S.log_odds(counts)
    x = lo.filter((pl.col("group") == "A") & (pl.col("term") == "x")).row(0, named=True)
    assert x["delta"] == pytest.approx(math.log(20 / 25) - math.log(10 / 35))
    assert x["z"] == pytest.approx(1.029619 / math.sqrt(0.15), abs=1e-5)
    assert x["z"] == pytest.approx(2.6585, abs=1e-4)
    assert lo.filter(pl.col("group") == "A")["term"].to_list() == ["x", "y"]  # x distinctive, y shared
    y = lo.filter((pl.col("group") == "A") & (pl.col("term") == "y"))["z"].item()
    assert y == pytest.approx(0.0, abs=1e-9)  # y is as frequent in A as in B
    # An obviously distinctive word ranks first among many shared ones.
    texts = (["giao hàng chậm tệ"] * 20 + ["giao hàng nhanh"] * 5, ["giao hàng nhanh tuyệt vời"] * 25)
    frame = pl.DataFrame({"group": ["bad"] * 25 + ["good"] * 25, "comment": texts[0] + texts[1]})
    terms = S.comment_terms(frame).filter(pl.col("kind") == "unigram").group_by("group", "term").agg(
        pl.len().alias("count"))
    top = S.log_odds(terms).filter(pl.col("group") == "bad")["term"].to_list()
    assert top[0] in ("chậm", "tệ") and set(top[:2]) == {"chậm", "tệ"}
    assert S.log_odds(terms).filter(pl.col("group") == "good")["term"].to_list()[:2] in (["tuyệt", "vời"],
                                                                                         ["vời", "tuyệt"])


def test_distinctive_terms_on_the_shop(shop):
    by_cat = S.distinctive_terms(shop, MARCH, min_count=1)
    assert set(by_cat.table["group"]) <= set(S.CATEGORIES)
    assert "tốt" in by_cat.table.filter(pl.col("group") == "promoter")["term"].to_list()
    groups = pl.DataFrame({"customer_key": [key_of(shop, "KH0001")], "group": ["g"]})
    linked = S.distinctive_terms(shop, MARCH, by=groups, min_count=1)
    assert linked.anonymous == 1 and linked.unmatched == 4  # R2, R4, R5, R8
    assert set(linked.table["group"]) <= {"g"}


def test_search_comments(shop):
    hit = S.search_comments(shop, MARCH, "GIAO hang")  # case and diacritics folded
    assert hit.matches == 2
    assert hit.table["comment"].to_list() == ["Giao hàng chậm", "Giao hàng nhanh, rất hài lòng!"]  # newest first
    assert hit.table["customer"].to_list() == ["KH••05", "KH••01"]
    assert S.search_comments(shop, MARCH, "giao hang", fold_diacritics=False).matches == 0
    assert S.search_comments(shop, MARCH, "GIAO HÀNG", fold_diacritics=False).matches == 2
    assert S.search_comments(shop, MARCH, "TE QUA").table["comment"].to_list() == ["-Tệ quá"]
    anon = S.search_comments(shop, MARCH, "hyperlink")
    assert anon.table["customer"].to_list() == [None] and anon.table["category"].to_list() == ["detractor"]
    assert S.search_comments(shop, MARCH, "", category_filter="promoter").matches == 3  # R1, R2, R4
    assert S.search_comments(shop, MARCH, "", limit=2).table.height == 2
    assert S.fold("Đóng GÓI") == "dong goi"


# ---------------------------------------------------------------------------------
# Ground truth: the demo's satisfaction drives its dropout
# ---------------------------------------------------------------------------------
DEMO_END = date(2025, 6, 30)


@pytest.fixture(scope="module")
def demo_store() -> Store:
    from data import demo

    d = demo.generate(15_000, seed=3, end=DEMO_END)
    store = Store(":memory:")
    store.load_frames(d.tables, kind="demo", keep_undo=False)
    yield store
    store.close()


def test_demo_promoters_retain_better(demo_store):
    """The demo derives satisfaction from the dropout probability: promoters must
    retain better than detractors (intervals apart), spend more in the 12 months after
    answering, and churn less. The period ends a year before the data so every answer
    has its 365 days observed."""
    f = Filters(start=date(2023, 7, 1), end=date(2024, 6, 30))
    sd = S.say_vs_do(demo_store, f, as_of=DEMO_END)
    t = rows(sd.table, "category")
    p, m, d = t["promoter"], t["passive"], t["detractor"]
    assert sd.unobserved == 0 and sd.anonymous > 0
    assert min(p["observed"], d["observed"]) > 300
    assert p["retention"] > m["retention"] > d["retention"]
    assert p["retention_low"] > d["retention_high"]
    assert p["revenue_after"] > d["revenue_after"] and p["revenue_low"] > d["revenue_high"]
    assert p["churn_rate"] < d["churn_rate"] and p["churn_high"] < d["churn_low"]


def test_demo_views_are_meaningful(demo_store):
    f = Filters(start=date(2024, 7, 1), end=DEMO_END)
    s = rows(S.score_summary(demo_store, f), "metric")
    assert s["nps"]["n"] > 1000 and -100 < s["nps"]["low"] < s["nps"]["value"] < s["nps"]["high"] < 100
    kd = S.key_drivers(demo_store, f)
    assert kd.table.height == 5 and kd.table["quadrant"].null_count() == 0
    assert (kd.table["low"] > 0).all()  # every touchpoint's CSAT moves with NPS
    terms = S.distinctive_terms(demo_store, f, top=10).table
    det = terms.filter((pl.col("group") == "detractor") & (pl.col("kind") == "unigram"))["term"].to_list()
    pro = terms.filter((pl.col("group") == "promoter") & (pl.col("kind") == "unigram"))["term"].to_list()
    assert "lỗi" in det and "nhanh" in pro
    en = S.distinctive_terms(demo_store, f, lang="en", top=10).table
    assert en.height and not en["term"].str.contains(S.VI_PATTERN).any()


def test_empty_store(empty_store):
    """No responses: every function answers with empty or null results, never an error."""
    t = rows(S.score_summary(empty_store, MARCH, comparison=FEB), "metric")
    assert t["nps"]["n"] == 0 and t["nps"]["value"] is None and t["ces"]["low"] is None
    assert S.monthly_scores(empty_store, MARCH)["n"].to_list() == [0, 0, 0]
    assert S.nps_distribution(empty_store, MARCH)["share"].null_count() == 11
    assert S.scores_by(empty_store, MARCH).height == 0
    sd = S.say_vs_do(empty_store, MARCH)
    assert sd.table["respondents"].to_list() == [0, 0, 0] and sd.table["retention"].null_count() == 3
    assert S.detractors_to_call(empty_store, MARCH).table.height == 0
    assert S.key_drivers(empty_store, MARCH).table.height == 0
    assert S.distinctive_terms(empty_store, MARCH).table.height == 0
    assert S.search_comments(empty_store, MARCH, "x").matches == 0
    groups = pl.DataFrame({"customer_key": [1], "group": ["g"]})
    assert S.scores_by_customer_group(empty_store, MARCH, groups).table.height == 0
    assert S.scores_by_clv_decile(empty_store, MARCH, pl.DataFrame({"customer_key": [1], "clv": [1.0]})).table.height == 3
