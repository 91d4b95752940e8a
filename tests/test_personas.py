"""Personas: the features by hand, the clustering recovers the demo's latent personas
(adjusted Rand index >= 0.6), the description adds up, names come from traits."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from data.store import Store
from metrics import personas as P
from metrics.filters import Filters

AS_OF = date(2024, 6, 30)


@pytest.fixture(scope="module")
def small() -> Store:
    """A01: 2 website orders (100 on 1 June, 300 on 21 June), answered NPS 9 and 7.
    A02: 1 Shopee order of 50 on 31 March. A03: orders after the date only."""
    rows = [("A01", datetime(2024, 6, 1, 10), 100.0, "website", "Điện tử"),
            ("A01", datetime(2024, 6, 21, 10), 300.0, "website", "Thời trang"),
            ("A02", datetime(2024, 3, 31, 10), 50.0, "shopee", "Thời trang"),
            ("A03", datetime(2024, 7, 2, 10), 80.0, "shopee", "Thời trang")]
    orders = pl.DataFrame({"order_id": [f"O{i}" for i in range(len(rows))], "customer_id": [r[0] for r in rows],
                           "ordered_at": [r[1] for r in rows], "revenue": [r[2] for r in rows],
                           "channel": [r[3] for r in rows], "category": [r[4] for r in rows],
                           "status": ["completed"] * len(rows)})
    surveys = pl.DataFrame({"response_id": ["S1", "S2", "S3"], "customer_id": ["A01", "A01", None],
                            "responded_at": [datetime(2024, 6, 2), datetime(2024, 6, 22), datetime(2024, 6, 5)],
                            "survey": ["nps"] * 3, "nps": [9, 7, 0]})
    customers = pl.DataFrame({"customer_id": ["A01", "A02", "A03"]})
    s = Store(":memory:")
    s.load_frames({"customers": customers, "orders": orders, "survey_responses": surveys}, kind="test",
                  keep_undo=False)
    yield s
    s.close()


def test_features_by_hand(small):
    ft = P.features(small, Filters(start=AS_OF, end=AS_OF), as_of=AS_OF)
    got = {r["customer_id"]: r for r in ft.iter_rows(named=True)}
    assert sorted(got) == ["A01", "A02"]  # A03 has no order by the date
    a, b = got["A01"], got["A02"]
    assert (a["recency_days"], a["frequency"], a["monetary"], a["aov"], a["tenure_days"]) == (9, 2, 400, 200, 29)
    assert (b["recency_days"], b["frequency"], b["monetary"], b["aov"], b["tenure_days"]) == (91, 1, 50, 50, 91)
    assert (a["ch_website"], a["ch_shopee"], b["ch_shopee"]) == (1.0, 0.0, 1.0)
    assert (a["cat_Thời trang"], a["cat_Điện tử"]) == (0.5, 0.5)  # names keep their diacritics
    assert a["nps"] == 8.0 and b["nps"] is None  # the mean answer; the anonymous 0 belongs to nobody
    X = P.design(ft, ["frequency", "nps"])
    assert X[:, 0].tolist() == pytest.approx([np.log1p(2), np.log1p(1)])
    assert X[:, 1].tolist() == pytest.approx([0.8, 0.8])  # the missing answer sits at the mean
    with pytest.raises(P.PersonaError, match="at least"):
        P.fit(ft)


def test_names_come_from_the_most_distinctive_traits():
    cols = ["frequency", "aov", "ch_shopee", "cat_other"]
    assert P.persona_name(np.array([0.2, -1.5, 1.0, 3.0]), cols) == (
        "Small basket · shopee shopper", "Giỏ hàng nhỏ · Mua qua shopee")
    # A low channel share does not name a persona.
    assert P.persona_name(np.array([0.5, 0.1, -2.0, 0.0]), cols)[0] == "Frequent · Big basket"


@pytest.fixture(scope="module")
def demo():
    from data import demo as D
    from metrics import kpis
    from metrics.filters import ViewState

    d = D.generate(20_000, seed=3, end=date(2025, 6, 30))
    s = Store(":memory:")
    s.load_frames(d.tables, kind="demo", keep_undo=False)
    first, last = kpis.data_bounds(s)
    f = ViewState().filters(as_of=last, first=first)
    feats = P.features(s, f, as_of=last)
    yield s, d.truth, feats, P.fit(feats), last
    s.close()


def test_personas_recover_the_generators_personas(demo):
    from sklearn.metrics import adjusted_rand_score

    store, truth, feats, fitted, _ = demo
    tp = pl.DataFrame({"customer_id": truth["customer_persona"]["ids"], "truth": truth["customer_persona"]["persona"]})
    j = feats.select("customer_key", "customer_id").join(fitted.assignments, on="customer_key").join(
        tp, on="customer_id")
    assert j.height == feats.height
    ari = adjusted_rand_score(j["truth"].to_list(), j["persona"].to_list())
    assert ari >= 0.6, ari
    assert 3 <= fitted.k <= 8 and fitted.silhouettes[fitted.k] == max(fitted.silhouettes.values())


def test_description_adds_up(demo):
    store, _, feats, fitted, last = demo
    table = P.describe(feats, fitted, nps=P.nps_answers(store, as_of=last))
    assert table.height == fitted.k
    assert int(table["customers"].sum()) == feats.height
    assert table["revenue_share"].sum() == pytest.approx(1.0)
    assert table["customers"].to_list() == sorted(table["customers"].to_list(), reverse=True)  # largest first
    assert table["nps"].drop_nulls().len() == fitted.k and ((table["nps"] >= -1) & (table["nps"] <= 1)).all()
    assert table["name_en"].n_unique() == fitted.k  # names tell personas apart
    proj = P.projection(feats, fitted, customers=500)
    assert proj.height == 500 and proj["persona"].null_count() == 0
