"""Personas: customers clustered on how they buy (and, where they answered, what they
say), each described by what sets it apart.

Definitions (shared/DESIGN.md, "Personas"):

- **Customers**: every customer with a completed order on or before ``as_of`` after the
  global channel, region and loyalty filters (all history to ``as_of``, like RFM).
- **Features** (:func:`features`), one row per customer: recency_days (``as_of`` - last
  order date), frequency (completed orders), monetary (their revenue), aov (monetary /
  frequency), tenure_days (``as_of`` - first order date), the share of the customer's
  orders in each channel and in each category (the :data:`TOP_LEVELS` most common; the
  rest pooled as ``other``), and nps (the mean of the customer's 0-10 answers up to
  ``as_of``; null when none).
- **Model inputs** (:func:`design`): log(1 + x) of recency_days, frequency, monetary,
  aov and tenure_days; the channel and category shares as they are; nps / 10 with the
  missing filled by the mean of those who answered (so a non-respondent sits at the
  average, not at 0) when at least :data:`MIN_NPS_SHARE` of customers answered. Every
  column standardised to mean 0, sd 1 (over the customers fitted).
- **Clusters**: scikit-learn k-means (k-means++, ``n_init`` 2, fixed seed) for each k in
  ``k_range`` (3 to 8), fitted on a fixed random sample of at most
  :data:`FIT_CUSTOMERS` customers; the silhouette (Euclidean, on at most
  :data:`SILHOUETTE_CUSTOMERS` of them) picks k (the highest; the smaller k on a tie to
  4 decimals). Every customer is then assigned to the nearest centre.
- **Description** (:func:`describe`): per persona, size, share of customers, revenue and
  its share, mean historical CLV (gross margin to date) and, when a prediction is
  given, mean predicted CLV; NPS of its members' answers (% of 9-10 minus % of 0-6,
  with n); favourite channel and category (the largest mean share); the profile (the
  persona's mean of each standardised input: how many sd it sits from the average
  customer); the name is built from its two most distinctive traits (largest |profile|,
  in both languages, :func:`name_parts`); the suggested action is that of the RFM
  segment most of its members are in (:data:`metrics.rfm.SEGMENTS`).
- **Projection** (:func:`projection`): the first two principal components of the
  standardised inputs of a fixed sample, for a scatter coloured by persona.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from data.store import Store
from metrics import rfm
from metrics.filters import Filters, instant
from metrics.kpis import DEFAULT_MARGIN_RATE

K_RANGE = (3, 8)
FIT_CUSTOMERS = 30_000
SILHOUETTE_CUSTOMERS = 6_000
PROJECTION_CUSTOMERS = 3_000
TOP_LEVELS = 8
MIN_NPS_SHARE = 0.05
MIN_CUSTOMERS = 30  # fewer customers than this: no personas
SEED = 11
NUMERIC = ("recency_days", "frequency", "monetary", "aov", "tenure_days")


class PersonaError(ValueError):
    """Why personas cannot be built (too few customers, no variation)."""


def _levels(store: Store, f: Filters, column: str, as_of: date) -> list[str]:
    base, params = f.orders_sql(extra=(column,))
    got = store.query(
        f"WITH o AS ({base}) SELECT coalesce({column}, 'unknown') AS v, count(*) AS n FROM o "
        "WHERE ordered_at < $next GROUP BY 1 ORDER BY n DESC, v LIMIT $top",
        {**params, "margin_rate": DEFAULT_MARGIN_RATE, "next": instant(as_of + timedelta(days=1)),
         "top": TOP_LEVELS})
    return [str(v) for v in got["v"]]


def _ident(name: str) -> str:
    """A quoted SQL column name."""
    return '"' + name.replace('"', '""') + '"'


def features(store: Store, f: Filters, *, as_of: date, margin_rate: float = DEFAULT_MARGIN_RATE) -> pl.DataFrame:
    """Per customer (see the module docstring): customer_key, customer_id, margin
    (gross margin to date), the :data:`NUMERIC` columns, ``ch_<channel>`` and
    ``cat_<category>`` shares (``ch_other`` / ``cat_other`` pool the rest), nps."""
    channels = _levels(store, f, "channel", as_of)
    categories = _levels(store, f, "category", as_of)
    base, params = f.orders_sql(extra=("channel", "category"))
    ch_cols = ", ".join(f"avg(CASE WHEN coalesce(channel, 'unknown') = $ch{i} THEN 1.0 ELSE 0.0 END) AS {_ident('ch_' + c)}"
                        for i, c in enumerate(channels))
    cat_cols = ", ".join(
        f"avg(CASE WHEN coalesce(category, 'unknown') = $cat{i} THEN 1.0 ELSE 0.0 END) AS {_ident('cat_' + c)}"
        for i, c in enumerate(categories))
    p: dict[str, Any] = {**params, "margin_rate": margin_rate, "as_of": as_of,
                         "next": instant(as_of + timedelta(days=1))}
    p.update({f"ch{i}": c for i, c in enumerate(channels)})
    p.update({f"cat{i}": c for i, c in enumerate(categories)})
    out = store.query(
        f"WITH o AS ({base}), c AS (SELECT customer_key, "
        "  CAST(CAST($as_of AS DATE) - CAST(max(ordered_at) AS DATE) AS DOUBLE) AS recency_days, "
        "  CAST(count(*) AS DOUBLE) AS frequency, CAST(sum(revenue) AS DOUBLE) AS monetary, "
        "  CAST(sum(margin) AS DOUBLE) AS margin, "
        "  CAST(CAST($as_of AS DATE) - CAST(min(ordered_at) AS DATE) AS DOUBLE) AS tenure_days, "
        f"  {ch_cols}, {cat_cols} FROM o WHERE ordered_at < $next GROUP BY 1), "
        "s AS (SELECT customer_key, avg(nps) AS nps FROM survey_responses "
        "  WHERE nps IS NOT NULL AND customer_key IS NOT NULL AND responded_at < $next GROUP BY 1) "
        "SELECT c.*, cu.customer_id, s.nps FROM c LEFT JOIN customers cu USING (customer_key) "
        "LEFT JOIN s USING (customer_key) ORDER BY customer_key", p)
    if out.height == 0:
        return out
    ch = [f"ch_{c}" for c in channels]
    cat = [f"cat_{c}" for c in categories]
    out = out.with_columns((pl.col("monetary") / pl.col("frequency")).alias("aov"),
                           (1.0 - pl.sum_horizontal(ch)).clip(0.0, 1.0).alias("ch_other"),
                           (1.0 - pl.sum_horizontal(cat)).clip(0.0, 1.0).alias("cat_other"))
    return out.select("customer_key", "customer_id", "margin", *NUMERIC, *ch, "ch_other", *cat, "cat_other", "nps")


def input_columns(feats: pl.DataFrame) -> list[str]:
    """The model's input columns of a :func:`features` frame (nps only when enough
    customers answered; constant columns dropped)."""
    cols = [*NUMERIC, *(c for c in feats.columns if c.startswith(("ch_", "cat_")))]
    if feats.height and feats["nps"].is_not_null().mean() >= MIN_NPS_SHARE:
        cols.append("nps")
    return [c for c in cols if feats[c].drop_nulls().n_unique() > 1]


def design(feats: pl.DataFrame, cols: list[str]) -> np.ndarray:
    """The unstandardised model inputs (module docstring): log1p of the numeric
    columns, shares as they are, nps / 10 with the missing at the answered mean."""
    parts = []
    for c in cols:
        v = feats[c].cast(pl.Float64)
        if c in NUMERIC:
            parts.append(np.log1p(np.maximum(v.fill_null(0.0).to_numpy(), 0.0)))
        elif c == "nps":
            mean = v.mean()
            parts.append((v.fill_null(mean if mean is not None else 0.0) / 10.0).to_numpy())
        else:
            parts.append(v.fill_null(0.0).to_numpy())
    return np.column_stack(parts) if parts else np.zeros((feats.height, 0))


@dataclass
class Personas:
    """A fitted clustering: k, silhouettes (k -> score), columns (the inputs), mean and
    sd (standardisation), centres (standardised), assignments (customer_key,
    persona: 0..k-1 ordered by size, largest first), the fitted sample's size."""

    k: int
    silhouettes: dict[int, float]
    columns: list[str]
    mean: np.ndarray
    sd: np.ndarray
    centres: np.ndarray
    assignments: pl.DataFrame
    fitted_on: int
    profiles: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


def fit(feats: pl.DataFrame, *, k_range: tuple[int, int] = K_RANGE, fit_customers: int = FIT_CUSTOMERS,
        silhouette_customers: int = SILHOUETTE_CUSTOMERS, seed: int = SEED) -> Personas:
    """k-means personas of :func:`features` (module docstring); k by silhouette."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = feats.height
    if n < MIN_CUSTOMERS:
        raise PersonaError(f"personas need at least {MIN_CUSTOMERS} customers; there are {n}")
    cols = input_columns(feats)
    if not cols:
        raise PersonaError("the customers do not differ on any feature")
    X = design(feats, cols)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, fit_customers, replace=False)) if n > fit_customers else np.arange(n)
    mean, sd = X[idx].mean(axis=0), X[idx].std(axis=0)
    sd[sd == 0] = 1.0
    Z = (X - mean) / sd
    Zf = Z[idx]
    sil_idx = np.sort(rng.choice(idx.size, silhouette_customers, replace=False)) \
        if idx.size > silhouette_customers else np.arange(idx.size)
    lo, hi = k_range
    hi = min(hi, idx.size - 1)
    scores: dict[int, float] = {}
    models = {}
    for k in range(lo, hi + 1):
        km = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(Zf)
        labels = km.labels_[sil_idx]
        if np.unique(labels).size < 2:
            continue
        scores[k] = float(silhouette_score(Zf[sil_idx], labels))
        models[k] = km
    if not scores:
        raise PersonaError("no number of personas between "
                           f"{lo} and {hi} separates the customers")
    best = max(scores, key=lambda k: (round(scores[k], 4), -k))
    km = models[best]
    labels = km.predict(Z)
    order = np.argsort(-np.bincount(labels, minlength=best), kind="stable")  # largest persona first
    rank = np.empty(best, np.int64)
    rank[order] = np.arange(best)
    assigned = rank[labels]
    centres = km.cluster_centers_[order]
    profiles = np.vstack([Z[assigned == j].mean(axis=0) if (assigned == j).any() else np.zeros(Z.shape[1])
                          for j in range(best)])
    return Personas(k=best, silhouettes=scores, columns=cols, mean=mean, sd=sd, centres=centres,
                    assignments=pl.DataFrame({"customer_key": feats["customer_key"],
                                              "persona": pl.Series(assigned, dtype=pl.Int64)}),
                    fitted_on=int(idx.size), profiles=profiles)


# -- names ----------------------------------------------------------------------------
_TRAITS = {  # column -> ((en, vi) when high, (en, vi) when low)
    "recency_days": (("Lapsed", "Lâu không mua"), ("Recent", "Mới mua gần đây")),
    "frequency": (("Frequent", "Mua thường xuyên"), ("One-off", "Mua một lần")),
    "monetary": (("High spend", "Chi tiêu cao"), ("Low spend", "Chi tiêu thấp")),
    "aov": (("Big basket", "Giỏ hàng lớn"), ("Small basket", "Giỏ hàng nhỏ")),
    "tenure_days": (("Long-standing", "Khách lâu năm"), ("Newcomer", "Khách mới")),
    "nps": (("Promoter", "Hay giới thiệu"), ("Critic", "Hay phàn nàn")),
}


def name_parts(column: str, high: bool, labels: Any = None) -> tuple[str, str]:
    """A trait's words (en, vi): a behaviour column high or low, or a channel /
    category share (``labels(kind, value, lang)`` names them; only high shares name
    a persona)."""
    if column in _TRAITS:
        return _TRAITS[column][0 if high else 1]
    kind, _, value = column.partition("_")
    kind = "channel" if kind == "ch" else "category"
    if labels is not None:
        en, vi = labels(kind, value, "en"), labels(kind, value, "vi")
    else:
        en = vi = value.replace("_", " ")
    if not high:
        return (f"Rarely {en}", f"Ít {vi}")
    return ((f"{en} shopper", f"Mua qua {vi}") if kind == "channel" else (f"{en} lover", f"Thích {vi}"))


def persona_name(profile: np.ndarray, columns: list[str], labels: Any = None) -> tuple[str, str]:
    """The persona's name in (en, vi) from its two most distinctive traits: the inputs
    with the largest |profile|, low channel or category shares skipped (absence does
    not describe a group well), "other" shares skipped."""
    order = np.argsort(-np.abs(profile), kind="stable")
    picked: list[tuple[str, str]] = []
    for i in order:
        c, v = columns[i], float(profile[i])
        if c.endswith("_other") or (c.startswith(("ch_", "cat_")) and v < 0):
            continue
        picked.append(name_parts(c, v > 0, labels))
        if len(picked) == 2:
            break
    if not picked:
        return ("Average customers", "Khách trung bình")
    return (" · ".join(p[0] for p in picked), " · ".join(p[1] for p in picked))


def describe(feats: pl.DataFrame, personas: Personas, *, segments: pl.DataFrame | None = None,
             predicted: pl.DataFrame | None = None, nps: pl.DataFrame | None = None,
             labels: Any = None) -> pl.DataFrame:
    """One row per persona (module docstring): persona, name_en, name_vi, customers,
    share, revenue, revenue_share, historical_clv, predicted_clv (null without
    ``predicted``: customer_key, clv), nps, nps_n (``nps``: customer_key, nps answers
    one row per answer; else from the features' mean answers: null), channel,
    category (favourite), segment (most common RFM segment, ``segments``:
    customer_key, segment), action_en, action_vi, traits (the profile as
    ``column:z`` pairs, most distinctive first)."""
    df = feats.select("customer_key", "monetary", "margin", *(c for c in feats.columns
                                                             if c.startswith(("ch_", "cat_")))).join(
        personas.assignments, on="customer_key")
    if predicted is not None:
        df = df.join(predicted.select("customer_key", "clv"), on="customer_key", how="left")
    if segments is not None:
        df = df.join(segments.select("customer_key", "segment"), on="customer_key", how="left")
    total_n, total_rev = df.height, float(df["monetary"].sum())
    ch_cols = [c for c in df.columns if c.startswith("ch_") and c != "ch_other"]
    cat_cols = [c for c in df.columns if c.startswith("cat_") and c != "cat_other"]
    nps_by: dict[int, tuple[float | None, int]] = {}
    if nps is not None and nps.height:
        got = nps.join(personas.assignments, on="customer_key").group_by("persona").agg(
            pl.len().alias("n"), ((pl.col("nps") >= 9).mean() - (pl.col("nps") <= 6).mean()).alias("v"))
        nps_by = {int(p): (float(v), int(n)) for p, n, v in got.select("persona", "n", "v").iter_rows()}
    rows = []
    for j in range(personas.k):
        part = df.filter(pl.col("persona") == j)
        n = part.height
        en, vi = persona_name(personas.profiles[j], personas.columns, labels)
        means_ch = {c: float(part[c].mean() or 0.0) for c in ch_cols}
        means_cat = {c: float(part[c].mean() or 0.0) for c in cat_cols}
        seg = None
        if "segment" in part.columns and n:
            vc = part["segment"].drop_nulls().value_counts(sort=True)
            seg = str(vc["segment"][0]) if vc.height else None
        action = rfm.SEGMENTS.get(seg or "", {})
        order = np.argsort(-np.abs(personas.profiles[j]), kind="stable")
        rows.append({
            "persona": j, "name_en": en, "name_vi": vi, "customers": n, "share": n / total_n if total_n else None,
            "revenue": float(part["monetary"].sum()),
            "revenue_share": float(part["monetary"].sum()) / total_rev if total_rev else None,
            "historical_clv": float(part["margin"].mean()) if n else None,
            "predicted_clv": float(part["clv"].mean()) if "clv" in part.columns and n and
            part["clv"].null_count() < n else None,
            "nps": nps_by.get(j, (None, 0))[0], "nps_n": nps_by.get(j, (None, 0))[1],
            "channel": max(means_ch, key=means_ch.get)[3:] if means_ch else None,
            "category": max(means_cat, key=means_cat.get)[4:] if means_cat else None,
            "segment": seg, "action_en": action.get("action_en"), "action_vi": action.get("action_vi"),
            "traits": ", ".join(f"{personas.columns[i]}:{personas.profiles[j][i]:+.2f}" for i in order[:6]),
        })
    return pl.DataFrame(rows, schema={
        "persona": pl.Int64, "name_en": pl.Utf8, "name_vi": pl.Utf8, "customers": pl.Int64, "share": pl.Float64,
        "revenue": pl.Float64, "revenue_share": pl.Float64, "historical_clv": pl.Float64,
        "predicted_clv": pl.Float64, "nps": pl.Float64, "nps_n": pl.Int64, "channel": pl.Utf8,
        "category": pl.Utf8, "segment": pl.Utf8, "action_en": pl.Utf8, "action_vi": pl.Utf8, "traits": pl.Utf8})


def projection(feats: pl.DataFrame, personas: Personas, *, customers: int = PROJECTION_CUSTOMERS,
               seed: int = SEED) -> pl.DataFrame:
    """The first two principal components of the standardised inputs of a fixed
    sample of at most ``customers``: customer_key, persona, pc1, pc2."""
    from sklearn.decomposition import PCA

    n = feats.height
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, customers, replace=False)) if n > customers else np.arange(n)
    Z = (design(feats[idx], personas.columns) - personas.mean) / personas.sd
    pcs = PCA(n_components=2, random_state=seed).fit_transform(Z) if Z.shape[1] >= 2 else np.zeros((idx.size, 2))
    keys = feats["customer_key"].gather(idx)
    return pl.DataFrame({"customer_key": keys}).join(personas.assignments, on="customer_key", how="left").with_columns(
        pl.Series("pc1", pcs[:, 0]), pl.Series("pc2", pcs[:, 1]))


def nps_answers(store: Store, *, as_of: date) -> pl.DataFrame:
    """Identified 0-10 answers up to ``as_of``: customer_key, nps (one row per answer)."""
    return store.query("SELECT customer_key, nps FROM survey_responses WHERE nps IS NOT NULL "
                       "AND customer_key IS NOT NULL AND responded_at < $next",
                       {"next": instant(as_of + timedelta(days=1))})
