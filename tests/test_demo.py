"""The demo-data generator: determinism, sizes, the truth file, and invariants."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta

import polars as pl
import pytest

from data import demo
from data.config import truth_path
from data.store import ORDER_STATUSES, TABLES, Store

END = date(2025, 6, 30)
END_TS = datetime(END.year, END.month, END.day) + timedelta(days=1)  # exclusive
N = 2_000


@pytest.fixture(scope="module")
def sample() -> demo.Demo:
    return demo.generate(N, seed=5, end=END)


def test_same_seed_same_tables_other_seed_different(sample):
    again = demo.generate(N, seed=5, end=END)
    for name in TABLES:
        assert sample.tables[name].equals(again.tables[name]), name
    assert sample.truth == again.truth
    other = demo.generate(N, seed=6, end=END)
    assert not other.tables["orders"].equals(sample.tables["orders"])
    assert not other.tables["customers"].equals(sample.tables["customers"])


def test_tables_columns_and_types(sample):
    assert list(sample.tables) == list(TABLES)
    for name, frame in sample.tables.items():
        assert frame.columns == list(TABLES[name]), name
        assert frame.schema == demo.schema(name), name
        assert "import_id" not in frame.columns
        key = frame.columns[0]
        assert frame[key].n_unique() == frame.height, f"{name}.{key} not unique"
    json.dumps(sample.truth)  # serialisable


def test_sizes(sample):
    t = sample.tables
    assert t["customers"].height == N
    assert 10_000 <= t["orders"].height <= 20_000  # about 7.5 orders per customer
    assert sample.truth["counts"] == {name: f.height for name, f in t.items()}
    assert len(sample.truth["customer_persona"]["ids"]) == N
    assert set(sample.truth["customer_persona"]["persona"]) == set(sample.truth["personas"])
    assert demo.generate(37, seed=1, end=END).tables["customers"].height == 37


def test_ids_names_contacts(sample):
    c = sample.tables["customers"]
    assert c["customer_id"].str.contains(r"^KH\d{6}$").all()
    assert sample.tables["orders"]["order_id"].str.contains(r"^DH\d{7}$").all()
    assert sample.tables["loyalty_events"]["event_id"].str.starts_with("LE").all()
    assert c["phone"].str.contains(r"^0[35789]\d{8}$").all()
    assert c["email"].str.contains(r"^[a-z0-9.]+@[a-z.]+$").all()
    assert c["name"].str.split(" ").list.len().min() >= 3
    assert c["name"].str.contains("[ăâđêôơưáàảãạếềểễệốồổỗộớờởỡợứừửữựíìỉĩịýỳỷỹỵ]").any()
    assert set(c["region"].unique()) <= set(demo.REGIONS)
    assert set(c["acquisition_channel"].unique()) <= set(demo.CHANNELS) | {"referral"}
    assert (c["acquisition_cost"] > 0).all()


def test_orders_invariants(sample):
    o = sample.tables["orders"]
    c = sample.tables["customers"]
    assert o["customer_id"].is_in(c["customer_id"].implode()).all()
    assert set(o["status"].unique()) <= set(ORDER_STATUSES)
    assert set(o["channel"].unique()) <= set(demo.CHANNELS)
    assert set(o["category"].unique()) <= set(demo.CATEGORIES)
    assert o["ordered_at"].max() < END_TS
    assert o["ordered_at"].min() >= datetime.fromisoformat(sample.truth["start"])
    shares = o["status"].value_counts(normalize=True).to_dict(as_series=False)
    share = dict(zip(shares["status"], shares["proportion"]))
    assert 0.88 <= share["completed"] <= 0.96
    assert 0.03 <= share["cancelled"] <= 0.07 and 0.015 <= share["refunded"] <= 0.045
    assert (o["revenue"] >= 1000).all() and (o["revenue"] % 1000 == 0).all()
    assert (o["discount"] >= 0).all()
    assert (o["gross_margin"] < 0).mean() < 0.03
    # about 1% of customers placed only a cancelled order
    per = o.group_by("customer_id").agg(done=(pl.col("status") == "completed").sum(), n=pl.len())
    only_cancelled = per.filter(pl.col("done") == 0)
    assert only_cancelled.height == sample.truth["cancelled_only"]["count"] == round(0.01 * N)
    assert set(only_cancelled["customer_id"]) == set(sample.truth["cancelled_only"]["ids"])
    # every customer has an order; signup on or before the first order
    first = o.group_by("customer_id").agg(first=pl.col("ordered_at").min().dt.date())
    joined = c.join(first, on="customer_id", how="left")
    assert joined["first"].null_count() == 0
    gap = (joined["first"] - joined["signup_date"]).dt.total_days()
    assert gap.min() >= 0 and gap.max() <= 7


def test_no_date_after_end(sample):
    t = sample.tables
    for name, col in (("survey_responses", "responded_at"), ("loyalty_members", "enrolled_at"),
                      ("loyalty_events", "occurred_at"), ("referrals", "referred_at")):
        assert t[name][col].max() < END_TS, name
    assert t["customers"]["signup_date"].max() <= END
    assert t["programme_costs"]["period_end"].max() <= END
    p = t["programme_costs"]
    assert (p["period_start"] <= p["period_end"]).all()
    assert set(p["programme"].unique()) == {"loyalty", "referral", "campaign"}
    assert (p["amount"] > 0).all()


def test_loyalty(sample):
    t, truth = sample.tables, sample.truth
    members, events, orders = t["loyalty_members"], t["loyalty_events"], t["orders"]
    launch = datetime.fromisoformat(truth["loyalty"]["launch"])
    assert members.height == truth["loyalty"]["members"] > 0
    assert members["enrolled_at"].min() >= launch
    assert set(members["tier"].unique()) <= {"member", "silver", "gold", "platinum"}
    # enrolment happens at one of the member's completed orders
    done = orders.filter(pl.col("status") == "completed")
    at_order = members.join(done, left_on=["customer_id", "enrolled_at"],
                            right_on=["customer_id", "ordered_at"], how="semi")
    assert at_order.height == members.height
    assert events["customer_id"].is_in(members["customer_id"].implode()).all()
    assert set(events["kind"].unique()) <= {"earn", "redeem", "expire", "adjust"}
    signs = events.group_by("kind").agg(lo=pl.col("points").min(), hi=pl.col("points").max())
    for kind, lo, hi in signs.iter_rows():
        assert (lo > 0) if kind == "earn" else (hi < 0), kind
    assert (events["value"] == events["points"] * 100.0).all()
    first = events.join(members, on="customer_id")
    assert (first["occurred_at"] >= first["enrolled_at"]).all()
    balance = (
        events.sort("customer_id", "occurred_at", "event_id")
        .with_columns(balance=pl.col("points").cum_sum().over("customer_id"))
    )
    assert balance["balance"].min() >= 0
    # also when the whole table is read in event-id order
    assert events.sort("event_id").select(pl.col("points").cum_sum().over("customer_id").min()).item() >= 0
    assert {"redeem", "expire"} <= set(events["kind"].unique())
    # earn: 1 point per 10,000 VND on each completed order from enrolment on
    member_orders = done.join(members, on="customer_id").filter(pl.col("ordered_at") >= pl.col("enrolled_at"))
    earned = events.filter(pl.col("kind") == "earn")["points"].sum()
    assert earned == (member_orders["revenue"] // 10_000).sum()
    assert truth["loyalty"]["extra_orders"] > 0
    assert truth["loyalty"]["incremental_margin_per_member_month"] > 0


def test_zero_lift_gives_no_extra_orders():
    base = demo.generate(800, seed=9, end=END, loyalty_lift=0.0)
    assert base.truth["loyalty"]["extra_orders"] == 0
    assert base.truth["loyalty"]["incremental_margin_per_member_month"] == 0
    assert base.truth["loyalty"]["members"] > 0
    lifted = demo.generate(800, seed=9, end=END, loyalty_lift=1.0)
    assert lifted.truth["loyalty"]["extra_orders"] > 0
    assert lifted.truth["bgnbd_orders"] == base.truth["bgnbd_orders"]


def test_surveys(sample):
    s, c = sample.tables["survey_responses"], sample.tables["customers"]
    assert s["nps"].null_count() == 0
    assert s["nps"].min() >= 0 and s["nps"].max() <= 10
    assert s["csat"].drop_nulls().is_between(1, 5).all()
    assert s["ces"].drop_nulls().is_between(1, 7).all()
    assert 0.6 <= s["csat"].is_not_null().mean() <= 0.8
    assert 0.25 <= s["ces"].is_not_null().mean() <= 0.5
    assert 0.25 <= s["comment"].is_not_null().mean() <= 0.45
    assert 0.04 <= s["customer_id"].is_null().mean() <= 0.11
    assert s["customer_id"].drop_nulls().is_in(c["customer_id"].implode()).all()
    assert set(s["touchpoint"].unique()) <= set(demo.TOUCHPOINTS)
    assert set(s["channel"].unique()) <= set(demo.CHANNELS)
    assert s["comment"].drop_nulls().str.contains("[ăâđêôơư]").any()
    # scores relate to behaviour: frequent buyers answer higher than one-off buyers
    done = sample.tables["orders"].filter(pl.col("status") == "completed")
    freq = done.group_by("customer_id").agg(n=pl.len())
    by = s.join(freq, on="customer_id").group_by(pl.col("n") >= 5).agg(pl.col("nps").mean())
    nps = dict(by.iter_rows())
    assert nps[True] > nps[False] + 0.3


def test_referrals(sample):
    t, truth = sample.tables, sample.truth
    r, orders, c = t["referrals"], t["orders"], t["customers"]
    assert r.height == truth["referral"]["referred"] > 0
    assert (r["referrer_id"] != r["referred_id"]).all()
    assert r["referred_id"].n_unique() == r.height
    assert r["referred_at"].min() >= datetime.fromisoformat(truth["referral"]["launch"])
    assert (r["reward_cost"] == 50_000).all()
    done = orders.filter(pl.col("status") == "completed")
    first = done.group_by("customer_id").agg(first=pl.col("ordered_at").min())
    j = r.join(first, left_on="referrer_id", right_on="customer_id")
    assert j.height == r.height and (j["first"] < j["referred_at"]).all()
    referred = c.filter(pl.col("customer_id").is_in(r["referred_id"].implode()))
    assert (referred["acquisition_channel"] == "referral").all()
    assert (c["acquisition_channel"] == "referral").sum() == r.height
    # referred_at is the referred customer's first order
    own = orders.group_by("customer_id").agg(first=pl.col("ordered_at").min())
    k = r.join(own, left_on="referred_id", right_on="customer_id")
    assert (k["first"] == k["referred_at"]).all()


def test_seasonality_intensity():
    m = demo.seasonal_intensity(date(2023, 1, 1), 3 * 365)
    assert m.mean() == pytest.approx(1.0)
    assert (m > 0).all()
    tet = (demo.TET[2024] - date(2023, 1, 1)).days
    assert m[tet - 12: tet - 7].mean() > 1.5 * m[tet + 1: tet + 6].mean()
    assert m[(date(2023, 11, 11) - date(2023, 1, 1)).days] > 2
    assert (demo.seasonal_intensity(date(2023, 1, 1), 100, seasonality=False) == 1).all()
    flat = demo.generate(300, seed=2, end=END, seasonality=False)
    assert flat.truth["seasonality"] is False and flat.tables["orders"].height > 300


def test_build_writes_truth_beside_database(tmp_path):
    store = Store(tmp_path / "x.duckdb")
    try:
        truth = demo.build(store, customers=400, seed=3, end=END)
        for name, n in truth["counts"].items():
            assert store.scalar(f"SELECT count(*) FROM {name}") == n
        imports = store.imports()
        assert imports.height == 1 and imports["kind"][0] == "demo"
        assert imports["file_name"][0] == "demo (seed 3, 400 customers)"
        assert store.scalar("SELECT max(ordered_at) FROM orders") < END_TS
        # mode replace: building again does not double the rows
        demo.build(store, customers=400, seed=3, end=END)
        assert store.scalar("SELECT count(*) FROM orders") == truth["counts"]["orders"]
    finally:
        store.close()
    path = truth_path(tmp_path / "x.duckdb")
    assert path == tmp_path / "x.truth.json"
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert loaded == json.loads(json.dumps(truth))
    assert loaded["end"] == END.isoformat() and loaded["customers"] == 400
    assert "Khách quen" in path.read_text(encoding="utf-8")  # ensure_ascii=False
    assert {"r", "alpha", "a", "b"} == set(loaded["personas"]["loyal_regular"]["bgnbd"])


def test_build_in_memory_writes_nothing_unless_asked(tmp_path):
    store = Store(":memory:")
    try:
        truth = demo.build(store, customers=200, seed=1, end=END)
        assert store.scalar("SELECT count(*) FROM customers") == 200
        target = tmp_path / "t.json"
        demo.build(store, customers=200, seed=1, end=END, truth_file=target)
    finally:
        store.close()
    assert json.loads(target.read_text(encoding="utf-8"))["counts"] == truth["counts"]
    assert not list(tmp_path.glob("*.truth.json"))


def test_cli(tmp_path, capsys):
    db = tmp_path / "cli.duckdb"
    args = ["--customers", "300", "--db", str(db), "--end", "2025-06-30", "--years", "1.5",
            "--no-seasonality", "--lift", "0.3", "--seed", "4"]
    assert demo.main(args) == 0
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and "orders" in out and re.search(r"\d+\.\d s", out)
    truth = json.loads(truth_path(db).read_text(encoding="utf-8"))
    assert truth["seasonality"] is False and truth["loyalty"]["true_lift"] == 0.3
    assert truth["end"] == "2025-06-30" and truth["seed"] == 4
    assert demo.main([*args, "--if-missing"]) == 0
    assert "nothing" in capsys.readouterr().out
    store = Store(db)
    try:
        assert store.imports().height == 1
    finally:
        store.close()
    for bad in (["--customers", "x"], ["--customers", "0"], ["--end", "30/06/2025"], ["--lift", "-1"],
                ["--bogus"]):
        with pytest.raises(SystemExit) as exc:
            demo.main(bad)
        assert exc.value.code == 2


def test_if_missing_builds_empty_database(tmp_path):
    db = tmp_path / "empty.duckdb"
    Store(db).close()
    assert demo.main(["--customers", "100", "--db", str(db), "--if-missing", "--end", "2025-06-30"]) == 0
    store = Store(db)
    try:
        assert store.scalar("SELECT count(*) FROM customers") == 100
    finally:
        store.close()


def test_invalid_arguments():
    with pytest.raises(ValueError):
        demo.generate(0)
    with pytest.raises(ValueError):
        demo.generate(10, years=0)
    with pytest.raises(ValueError):
        demo.generate(10, loyalty_lift=-0.1)


def test_repeat_purchases_match_bgnbd_expectation():
    """Without seasonality or lift, repeat purchases follow BG/NBD exactly.

    Per persona, the mean number of repeat purchases equals the mean over customers of
    E[X(T)] = (a+b-1)/(a-1) * (1 - (alpha/(alpha+T))^r * 2F1(r, b; a+b-1; T/(alpha+T)))
    (Fader, Hardie & Lee 2005, eq. 7), T = days from the first purchase to the end.
    """
    hyp2f1 = pytest.importorskip("scipy.special").hyp2f1
    d = demo.generate(6_000, seed=8, end=END, seasonality=False, loyalty_lift=0.0)
    truth = d.truth
    persona = pl.DataFrame({"customer_id": truth["customer_persona"]["ids"],
                            "persona": truth["customer_persona"]["persona"]})
    done = d.tables["orders"].filter(pl.col("status") == "completed").join(persona, on="customer_id")
    per = done.group_by("customer_id", "persona").agg(x=pl.len() - 1, first=pl.col("ordered_at").min())
    assert per.height == 6_000 - truth["cancelled_only"]["count"]
    per = per.with_columns(T=(pl.lit(END_TS) - pl.col("first")).dt.total_seconds() / 86_400)
    for name, params in truth["personas"].items():
        g = per.filter(pl.col("persona") == name)
        r, alpha, a, b = (params["bgnbd"][k] for k in ("r", "alpha", "a", "b"))
        t = g["T"].to_numpy()
        expected = (a + b - 1) / (a - 1) * (
            1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))
        assert g["x"].mean() == pytest.approx(expected.mean(), rel=0.15), name
