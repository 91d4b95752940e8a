"""RFM scores, the segment grid and its rules, by hand.

The hand table (as of 30 June 2024): ten customers K01..K10 with completed orders
on distinct days, the last one ``recency`` days before 30 June:

    id   orders  recency  revenue     r  f  m   fm  segment
    K01  1       90       50          1  1  3   2   hibernating
    K02  1       80       20          1  1  1   1   lost
    K03  1       70       20          2  1  1   1   hibernating
    K04  1       60       100         2  1  3   2   hibernating
    K05  1       50       30          3  1  2   2   about_to_sleep
    K06  1       40       10          3  1  1   1   about_to_sleep
    K07  2       30       200         4  4  4   4   champions
    K08  2       20       300         4  4  4   4   champions
    K09  3       10       300         5  5  4   5   champions
    K10  5       0        1000        5  5  5   5   champions

score = 1 + floor(5 (rank_min - 1) / 10), ranked worst first with ties sharing the
lowest rank. Recency (distinct): ranks 1..10 -> 1,1,2,2,3,3,4,4,5,5. Frequency: six
one-order customers tie at rank 1 (score 1); two orders rank 7 -> 1 + floor(3) = 4;
three orders rank 9 and five orders rank 10 -> 5. Monetary ascending: 10 (rank 1) -> 1,
20 and 20 (rank 2) -> 1, 30 (rank 4) -> 2, 50 (5) -> 3, 100 (6) -> 3, 200 (7) -> 4,
300 and 300 (rank 8) -> 4, 1000 (10) -> 5. FM = floor((f + m + 1) / 2).

Besides: K11 has only a cancelled order, K12 orders only after 30 June (neither is
scored); K10's orders are on Shopee, everyone else's on the website; K01..K05 live in
Hà Nội, the others in Huế.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from data.store import Store
from metrics import rfm
from metrics.filters import Filters

AS_OF = date(2024, 6, 30)
HAND = [  # id, orders, recency days, total revenue
    ("K01", 1, 90, 50.0), ("K02", 1, 80, 20.0), ("K03", 1, 70, 20.0), ("K04", 1, 60, 100.0),
    ("K05", 1, 50, 30.0), ("K06", 1, 40, 10.0), ("K07", 2, 30, 200.0), ("K08", 2, 20, 300.0),
    ("K09", 3, 10, 300.0), ("K10", 5, 0, 1000.0),
]
WANT = {  # id -> (r, f, m, fm, segment)
    "K01": (1, 1, 3, 2, "hibernating"), "K02": (1, 1, 1, 1, "lost"), "K03": (2, 1, 1, 1, "hibernating"),
    "K04": (2, 1, 3, 2, "hibernating"), "K05": (3, 1, 2, 2, "about_to_sleep"),
    "K06": (3, 1, 1, 1, "about_to_sleep"), "K07": (4, 4, 4, 4, "champions"), "K08": (4, 4, 4, 4, "champions"),
    "K09": (5, 5, 4, 5, "champions"), "K10": (5, 5, 5, 5, "champions"),
}


def f(**kw) -> Filters:
    return Filters(start=date(2024, 1, 1), end=AS_OF, **kw)


@pytest.fixture(scope="module")
def rfm_store() -> Store:
    rows = []
    for cid, n, rec, rev in HAND:
        last = datetime.combine(AS_OF - timedelta(days=rec), datetime.min.time()) + timedelta(hours=20)
        for i in range(n):
            rows.append({"order_id": f"{cid}-{i}", "customer_id": cid, "ordered_at": last - timedelta(days=3 * i),
                         "revenue": rev / n, "gross_margin": None if cid == "K01" else rev / n / 2,
                         "channel": "shopee" if cid == "K10" else "website", "status": "completed"})
    rows.append({"order_id": "K11-0", "customer_id": "K11", "ordered_at": datetime(2024, 6, 1, 9),
                 "revenue": 70.0, "gross_margin": 7.0, "channel": "website", "status": "cancelled"})
    rows.append({"order_id": "K12-0", "customer_id": "K12", "ordered_at": datetime(2024, 7, 1, 0),
                 "revenue": 70.0, "gross_margin": 7.0, "channel": "website", "status": "completed"})
    customers = pl.DataFrame({"customer_id": [f"K{i:02d}" for i in range(1, 13)],
                              "region": ["Hà Nội"] * 5 + ["Huế"] * 7})
    store = Store(":memory:")
    store.load_frames({"customers": customers, "orders": pl.DataFrame(rows)}, kind="test", keep_undo=False)
    yield store
    store.close()


def by_id(store: Store, frame: pl.DataFrame) -> dict[str, dict]:
    ids = store.query("SELECT customer_key, customer_id FROM customers")
    return {r["customer_id"]: r for r in frame.join(ids, on="customer_key").to_dicts()}


def test_scores_by_hand(rfm_store):
    s = rfm.rfm_scores(rfm_store, f(), as_of=AS_OF, margin_rate=0.4)
    assert s.columns == list(rfm.RFM_COLUMNS)
    got = by_id(rfm_store, s)
    assert sorted(got) == [c for c, *_ in HAND]  # K11 (cancelled) and K12 (after as_of) are not scored
    for cid, n, rec, rev in HAND:
        g = got[cid]
        assert (g["recency_days"], g["frequency"], g["monetary"]) == (rec, n, pytest.approx(rev)), cid
        assert g["last_order"] == AS_OF - timedelta(days=rec)
        assert (g["r"], g["f"], g["m"]) == WANT[cid][:3], cid
    # Margin: K01's order has none, so 50 x 0.4; the others carry half the revenue.
    assert got["K01"]["margin"] == pytest.approx(20.0)
    assert got["K10"]["margin"] == pytest.approx(500.0)


def test_segments_by_hand(rfm_store):
    seg = by_id(rfm_store, rfm.rfm_segments(rfm_store, f(), as_of=AS_OF))
    for cid, (r, f_, m, fm, name) in WANT.items():
        assert (seg[cid]["fm"], seg[cid]["segment"]) == (fm, name), cid


def test_filters_and_as_of_apply(rfm_store):
    # Shopee alone: K10 is the only customer, so every score is 1 (rank 1 of 1).
    shop = rfm.rfm_scores(rfm_store, f(channels=("shopee",)), as_of=AS_OF)
    assert shop.height == 1 and shop.select("r", "f", "m").row(0) == (1, 1, 1)
    # Hà Nội: K01..K05, five customers, so ranks map straight to scores.
    hn = by_id(rfm_store, rfm.rfm_scores(rfm_store, f(regions=("Hà Nội",)), as_of=AS_OF))
    assert sorted(hn) == ["K01", "K02", "K03", "K04", "K05"]
    assert [hn[c]["r"] for c in sorted(hn)] == [1, 2, 3, 4, 5]
    assert [hn[c]["m"] for c in sorted(hn)] == [4, 1, 1, 5, 3]  # 20, 20 tie at rank 1; 30 rank 3; 50; 100
    # One day later K12's order (00:00 on 1 July) counts and everyone is a day older.
    later = by_id(rfm_store, rfm.rfm_scores(rfm_store, f(), as_of=AS_OF + timedelta(days=1)))
    assert "K12" in later and later["K12"]["recency_days"] == 0 and later["K10"]["recency_days"] == 1
    # Before any order: an empty frame with the schema.
    empty = rfm.rfm_scores(rfm_store, f(), as_of=date(2023, 1, 1))
    assert empty.height == 0 and empty.schema == pl.Schema(rfm.RFM_COLUMNS)


def test_the_rank_rule_against_polars_on_heavy_ties():
    """The SQL rule equals 1 + floor(5 (rank_min - 1) / n) computed in Polars, on 400
    customers where most have one or two orders and spend in round amounts."""
    rng = np.random.default_rng(3)
    n = 400
    counts = rng.choice([1, 1, 1, 1, 1, 1, 2, 2, 3, 7], n)
    rows = []
    for i, k in enumerate(counts):
        last = rng.integers(0, 40)
        for j in range(k):
            rows.append({"order_id": f"O{i}-{j}", "customer_id": f"C{i:04d}",
                         "ordered_at": datetime(2024, 6, 30, 12) - timedelta(days=int(last) + 50 * j),
                         "revenue": float(rng.choice([10, 20, 50])), "status": "completed"})
    store = Store(":memory:")
    try:
        store.load_frames({"orders": pl.DataFrame(rows)}, kind="test", keep_undo=False)
        s = rfm.rfm_scores(store, f(), as_of=AS_OF)
    finally:
        store.close()
    assert s.height == n

    def rule(col: pl.Expr) -> pl.Expr:
        return (1 + (5 * (col.rank("min") - 1) // n)).cast(pl.Int64)

    want = s.select(rule(-pl.col("recency_days")).alias("r"), rule(pl.col("frequency")).alias("f"),
                    rule(pl.col("monetary")).alias("m"))
    assert s.select("r", "f", "m").equals(want)
    # 60% one-order customers all score 1 and the next value jumps past the empty scores.
    share_one = float((s["frequency"] == 1).mean())
    assert 0.5 < share_one < 0.7
    assert set(s.filter(pl.col("frequency") == 1)["f"]) == {1}
    assert set(s.filter(pl.col("frequency") == 2)["f"]) == {1 + int(5 * share_one)}
    # Ties always share a score.
    for col, score in (("recency_days", "r"), ("frequency", "f"), ("monetary", "m")):
        assert s.group_by(col).agg(pl.col(score).n_unique())[score].max() == 1


def test_default_grid_covers_all_25_cells():
    assert rfm.validate_rules(rfm.DEFAULT_SEGMENT_RULES) == []
    grid = rfm.segment_grid()
    assert grid.height == 25 and grid["segment"].null_count() == 0
    picture = {fm: [grid.filter((pl.col("r") == r) & (pl.col("fm") == fm))["segment"].item() for r in range(1, 6)]
               for fm in range(5, 0, -1)}
    assert picture == {
        5: ["cant_lose", "cant_lose", "loyal", "champions", "champions"],
        4: ["at_risk", "at_risk", "loyal", "champions", "champions"],
        3: ["at_risk", "at_risk", "need_attention", "potential_loyalist", "potential_loyalist"],
        2: ["hibernating", "hibernating", "about_to_sleep", "potential_loyalist", "potential_loyalist"],
        1: ["lost", "hibernating", "about_to_sleep", "promising", "new"],
    }
    # All eleven standard segments are reachable, each with labels and actions in both languages.
    assert set(grid["segment"]) == set(rfm.SEGMENTS) and len(rfm.SEGMENTS) == 11
    for code, s in rfm.SEGMENTS.items():
        assert set(s) == {"label_en", "label_vi", "action_en", "action_vi"} and all(v.strip() for v in s.values())
    assert rfm.SEGMENTS["champions"]["label_en"] == "Champions"
    assert "đại sứ thương hiệu" in rfm.SEGMENTS["champions"]["action_vi"]
    assert rfm.SEGMENTS["cant_lose"]["label_en"] == "Can't Lose Them"


def test_validate_rules_reports_problems():
    assert rfm.validate_rules([]) == ["The segment rules must be a non-empty list of rules."]
    assert rfm.validate_rules("champions")[0].startswith("The segment rules must")
    # Without the catch-all, the cells it would take are gaps.
    gaps = rfm.validate_rules(rfm.DEFAULT_SEGMENT_RULES[:-1])
    assert gaps == [
        "The cell R = 2, FM = 1 is not assigned to any segment.",
        "The cell R = 1, FM = 2 is not assigned to any segment.",
        "The cell R = 2, FM = 2 is not assigned to any segment.",
    ]
    bad = rfm.validate_rules([
        {"name": "vip", "r": (4, 5)},
        {"name": "lost", "r": (0, 3)},
        {"name": "new", "fm": (3, 2)},
        {"name": "loyal", "fm": (1.5, 2)},
        {"name": "at_risk", "r": 3},
        {"name": "promising", "colour": "red"},
        "champions",
        {"name": "hibernating"},
        {"name": "lost", "r": (1, 1)},
    ])
    assert any("Rule 1 (vip): unknown segment name" in p for p in bad)
    assert any("Rule 2 (lost): the r range (0, 3) must satisfy 1 <= low <= high <= 5" in p for p in bad)
    assert any("Rule 3 (new): the fm range (3, 2)" in p for p in bad)
    assert any("Rule 4 (loyal): the fm range must hold whole numbers" in p for p in bad)
    assert any("Rule 5 (at_risk): the r range must be a pair" in p for p in bad)
    assert any("Rule 6 (promising): unknown keys colour" in p for p in bad)
    assert any(p.startswith("Rule 7 is not a mapping") for p in bad)
    assert any("Rule 9 (lost) never applies" in p for p in bad)
    with pytest.raises(ValueError, match="not usable"):
        rfm.assign_segments(pl.DataFrame({"r": [1], "f": [1], "m": [1]}), rfm.DEFAULT_SEGMENT_RULES[:-1])


def test_assign_segments_rounds_fm_half_up_and_keeps_rows():
    scores = pl.DataFrame({"customer_key": [1, 2, 3, 4, 5], "r": [5, 5, 3, 1, 2], "f": [2, 1, 4, 5, 1],
                           "m": [3, 2, 5, 4, 1]})
    out = rfm.assign_segments(scores)
    # (2 + 3) / 2 = 2.5 -> 3 (Python's round would give 2); 1.5 -> 2; 4.5 -> 5.
    assert out["fm"].to_list() == [3, 2, 5, 5, 1]
    assert out["segment"].to_list() == ["potential_loyalist", "potential_loyalist", "loyal", "cant_lose",
                                        "hibernating"]
    assert out["customer_key"].to_list() == [1, 2, 3, 4, 5] and out.columns[:4] == scores.columns[:4]
    assert rfm.fm_score(2, 3) == 3 and rfm.fm_score(1, 1) == 1
    # Custom rules: first match wins, the catch-all takes the rest.
    custom = [{"name": "champions", "r": (5, 5)}, {"name": "at_risk", "fm": (4, 5)}, {"name": "lost"}]
    assert rfm.validate_rules(custom) == []
    assert rfm.assign_segments(scores, custom)["segment"].to_list() == [
        "champions", "champions", "at_risk", "at_risk", "lost"]


def test_segment_summary_by_hand(rfm_store):
    scored = rfm.rfm_segments(rfm_store, f(), as_of=AS_OF)
    s = rfm.segment_summary(scored)
    assert s["segment"].to_list() == list(rfm.SEGMENTS)
    row = {r["segment"]: r for r in s.to_dicts()}
    # Champions: K07..K10, revenue 200 + 300 + 300 + 1000 = 1800 of 2030.
    ch = row["champions"]
    assert (ch["customers"], ch["share"], ch["revenue"]) == (4, 0.4, pytest.approx(1800.0))
    assert ch["revenue_share"] == pytest.approx(1800 / 2030)
    assert (ch["mean_recency_days"], ch["mean_frequency"], ch["mean_monetary"]) == (15.0, 3.0, 450.0)
    hib = row["hibernating"]  # K01, K03, K04
    assert (hib["customers"], hib["revenue"], hib["mean_recency_days"]) == (3, pytest.approx(170.0), 220 / 3)
    assert row["lost"]["customers"] == 1 and row["about_to_sleep"]["customers"] == 2
    assert row["loyal"]["customers"] == 0 and row["loyal"]["mean_monetary"] is None
    assert s["customers"].sum() == 10 and s["share"].sum() == pytest.approx(1.0)
    assert s["revenue_share"].sum() == pytest.approx(1.0)
    assert row["new"]["label_vi"] == "Khách hàng mới"
    empty = rfm.segment_summary(rfm.assign_segments(pl.DataFrame(schema=rfm.RFM_COLUMNS)))
    assert empty["customers"].sum() == 0 and empty["revenue_share"].null_count() == 11


def test_grid_summary_by_hand(rfm_store):
    grid = rfm.grid_summary(rfm.rfm_segments(rfm_store, f(), as_of=AS_OF))
    assert grid.height == 25 and int(grid["customers"].sum()) == 10
    cell = {(r["r"], r["fm"]): r for r in grid.iter_rows(named=True)}
    assert (cell[(4, 4)]["customers"], cell[(4, 4)]["revenue"], cell[(4, 4)]["segment"]) == (2, 500.0, "champions")
    assert (cell[(1, 2)]["customers"], cell[(1, 2)]["revenue"]) == (1, 50.0)  # K01
    assert cell[(3, 5)]["customers"] == 0 and cell[(3, 5)]["segment"] is None


def test_movement_flows_sum_to_the_segment_sizes(rfm_store):
    """From 26 May: K01..K06 had ordered (scored then), K07..K10 had not (K07's first
    order is on 28 May). Every customer scored on 30 June appears once."""
    d1 = AS_OF - timedelta(days=35)
    mv = rfm.segment_movement(rfm_store, f(), d1, AS_OF)
    now = rfm.rfm_segments(rfm_store, f(), as_of=AS_OF)
    sizes = dict(now.group_by("segment").len().rows())
    into = dict(mv.group_by("to_segment").agg(pl.col("customers").sum()).rows())
    assert into == sizes
    assert int(mv.filter(pl.col("from_segment") == rfm.NOT_YET)["customers"].sum()) == 4
    before = rfm.rfm_segments(rfm_store, f(), as_of=d1)
    assert before.height == 6
    out_of = dict(mv.filter(pl.col("from_segment") != rfm.NOT_YET).group_by("from_segment")
                  .agg(pl.col("customers").sum()).rows())
    assert out_of == dict(before.group_by("segment").len().rows())
    mix = rfm.segment_mix(rfm_store, f(), [d1, AS_OF])
    assert mix.group_by("date").agg(pl.col("share").sum())["share"].to_list() == [pytest.approx(1.0)] * 2
    assert dict(mix.filter(pl.col("date") == AS_OF).select("segment", "customers").rows()) == sizes


def test_member_list_is_masked_and_sorted(rfm_store):
    scored = rfm.rfm_segments(rfm_store, f(), as_of=AS_OF)
    keys = scored.filter(pl.col("segment") == "champions").select("customer_key")
    lst = rfm.members(rfm_store, scored, keys)
    assert lst.height == 4 and lst["monetary"].to_list() == [1000.0, 300.0, 300.0, 200.0]
    assert lst["customer_id"][0] == "K10"  # mask_id keeps ids of 4 characters or fewer whole
    assert all(s == "champions" for s in lst["segment"])
