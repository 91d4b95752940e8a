"""Churn risk: who is slipping away, what they are worth, and whom to target.

Definitions (shared/DESIGN.md, "Churn risk": 1 - P(alive), with the expected
purchases in the next 90 days, days since last order against the customer's usual
gap, and value at risk). Customers are those with at least one completed order on or
before ``as_of`` after the global channel, region and loyalty filters; all history up
to ``as_of`` counts (the filters' own period is ignored). A **purchase** is a distinct
day with a completed order, as in :mod:`metrics.clv`; ``orders`` counts orders.

- **p_alive**: BG/NBD P(alive | x, t_x, T) (:meth:`metrics.clv.BGNBD.p_alive`) with
  the summary of :func:`metrics.clv.customer_summary` at ``as_of``;
  **churn_risk** = 1 - p_alive. In BG/NBD nobody drops out before a repeat purchase,
  so a one-time buyer has p_alive = 1 and churn_risk = 0 however long ago they
  bought: their lapse shows in days_since_last and in the RFM segment instead.
- **expected_90d**: the expected purchases (purchase days) in the next 90 days,
  E[Y(90 days) | x, t_x, T] (FHL 2005 eq. 10).
- **days_since_last** = ``as_of`` - the last purchase day; **usual_gap_days** = the
  median of the days between consecutive purchase days (the mean of the two middle
  gaps for an even count; null with fewer than 2 purchase days);
  **gap_ratio** = days_since_last / usual_gap_days (null without a usual gap):
  above 1 the customer is later than usual.
- **predicted_clv**: :func:`metrics.clv.clv` over ``horizon_months`` (discounted
  expected gross margin: Gamma-Gamma spend of revenue x the customer's own margin
  share of revenue, :func:`metrics.clv_view.margin_share`, as on the CLV page;
  ``margin_rate`` where orders carry no margin).
- **clv_if_alive**: the same CLV for the customer known to be alive at ``as_of``. In
  BG/NBD, given alive at T, ``lambda ~ Gamma(r + x, alpha + T)`` and
  ``p ~ Beta(a, b + x)``, so the expected purchases in the next t are FHL eq. 9 with
  parameters (r + x, alpha + T, a, b + x); FHL eq. 10 is exactly P(alive) times it,
  hence ``predicted_clv = p_alive x clv_if_alive`` (computed directly, never by
  dividing, so it stays finite when p_alive is ~0).
- **value_at_risk** = churn_risk x clv_if_alive = clv_if_alive - predicted_clv: the
  expected future margin lost because the customer may already be gone (0 for a
  customer certainly alive, the whole clv_if_alive for one certainly gone).
- **days_to_next** = ``(alpha + T) / (r + x)`` periods in days: the reciprocal of the
  posterior mean purchase rate ``E[lambda | x, T, alive] = (r + x) / (alpha + T)``
  (the typical time to the next purchase of a customer who is still active; not
  E[1 / lambda], which is infinite when r + x <= 1). **expected_next_order** =
  ``as_of`` + days_to_next rounded to whole days, half up (null beyond
  :data:`NEXT_ORDER_CAP_DAYS`).
- **Risk bands** of churn_risk: low below :data:`LOW_RISK_BELOW` (0.3), medium below
  :data:`HIGH_RISK_FROM` (0.7), high from 0.7.
- **segment**: the RFM segment (:mod:`metrics.rfm`) at ``as_of``; **last_channel**:
  the channel of the last completed order (the latest timestamp, then the largest
  order_id); **latest_nps**: the NPS of the customer's latest survey response with an
  NPS on or before ``as_of`` (the channel filter applies to responses as to orders).
- Contacts (name, email, phone) are masked with :mod:`metrics.retention`'s masks
  unless the caller asks for them unmasked.

**Targeting precision** (:func:`targeting_precision`): at a calibration end E, with a
BG/NBD model fitted on the history up to E, rank the customers by churn risk (ties:
fewer expected purchases in the holdout window first, then customer_key), target the
top ``ceil(share x n)``, and report the share of them with no purchase in
``(E, holdout end]`` (precision of "will lapse") beside the lapse rate of all
customers (base rate); lift = precision / base rate.

**Control group** (:func:`holdout_flag`): a customer is in the control group when
``blake2b(seed, key)`` read as a number in [0, 1) is below ``share``: deterministic
per customer and seed, independent of row order and of the other customers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from data.importer import to_xlsx  # noqa: F401  (the export's workbook; kept importable from here)
from data.store import Store
from metrics import pymap, rfm
from metrics.clv import (
    BGNBD, MONTH_DAYS, GammaGamma, ModelError, _unit_days, clv, customer_summary, fit_bgnbd, holdout_summary,
    per_distinct,
)
from metrics.clv_view import margin_share
from metrics.filters import Filters, instant
from metrics.kpis import DEFAULT_MARGIN_RATE
from metrics.retention import mask_email, mask_name, mask_phone
from metrics.stats import wilson_interval

LOW_RISK_BELOW = 0.3
HIGH_RISK_FROM = 0.7
BANDS = ("low", "medium", "high")
BAND_LABELS = {"low": ("Low", "Thấp"), "medium": ("Medium", "Trung bình"), "high": ("High", "Cao")}
NEXT_DAYS = 90
NEXT_ORDER_CAP_DAYS = 3650
DEFAULT_SHARES = (0.05, 0.1, 0.2, 0.3, 0.5)
MASK = "•"
# What the masks of metrics.retention leave: ids "KH•••52", emails "l***@x.vn", phones "09xx xxx 678".
MASKED_PATTERN = r"•|\*\*\*@|^\d\dxx xxx \d{3}$"

RISK_COLUMNS: dict[str, Any] = {
    "customer_key": pl.Int32, "customer_id": pl.Utf8, "name": pl.Utf8, "email": pl.Utf8, "phone": pl.Utf8,
    "region": pl.Utf8, "acquisition_channel": pl.Utf8, "segment": pl.Utf8, "last_channel": pl.Utf8,
    "latest_nps": pl.Int64, "orders": pl.Int64, "historical_revenue": pl.Float64,
    "historical_margin": pl.Float64, "last_purchase": pl.Date, "days_since_last": pl.Int64,
    "usual_gap_days": pl.Float64, "gap_ratio": pl.Float64, "p_alive": pl.Float64, "churn_risk": pl.Float64,
    "risk_band": pl.Utf8, "expected_90d": pl.Float64, "days_to_next": pl.Float64,
    "expected_next_order": pl.Date, "predicted_clv": pl.Float64, "clv_if_alive": pl.Float64,
    "value_at_risk": pl.Float64,
}


# ---------------------------------------------------------------------------------
# Model pieces
# ---------------------------------------------------------------------------------
def clv_if_alive(
    bgnbd: BGNBD, gg: GammaGamma, frequency: Any, T: Any, monetary_value: Any, *, horizon_months: int = 12,
    unit: str = "days", margin: Any = DEFAULT_MARGIN_RATE, monthly_discount_rate: float = 0.01,
) -> np.ndarray:
    """CLV of customers known to be alive at the end of their history: the formula of
    :func:`metrics.clv.clv` with the expected purchases of a customer alive at T,
    which is FHL 2005 eq. 9 at the posterior parameters (r + x, alpha + T, a, b + x)
    (given alive, lambda ~ Gamma(r + x, alpha + T) and p ~ Beta(a, b + x)). Equals
    ``clv(...) / p_alive`` wherever p_alive > 0."""
    if horizon_months < 1 or int(horizon_months) != horizon_months:
        raise ModelError("the CLV horizon must be a whole number of months, at least 1")
    x = np.atleast_1d(np.asarray(frequency, dtype=float))
    T_ = np.atleast_1d(np.asarray(T, dtype=float))
    m = np.atleast_1d(np.asarray(monetary_value, dtype=float))
    if x.size == 0:
        return np.zeros(0)
    month = MONTH_DAYS / _unit_days(unit)

    def purchases(x: np.ndarray, T_: np.ndarray) -> np.ndarray:
        posterior = BGNBD(r=bgnbd.r + x, alpha=bgnbd.alpha + T_, a=bgnbd.a, b=bgnbd.b + x)  # type: ignore[arg-type]
        months = np.arange(horizon_months + 1, dtype=float).reshape(-1, 1)
        cum = np.asarray(posterior.expected_purchases_new(months * month), dtype=float).reshape(months.size, -1)
        disc = (1.0 + monthly_discount_rate) ** -months[1:]
        return (np.diff(cum, axis=0) * disc).sum(axis=0)

    spend = np.asarray(gg.expected_average_spend(x, m), dtype=float)
    return per_distinct(purchases, x, T_) * spend * np.asarray(margin, dtype=float)


def risk_band(churn_risk: Any) -> Any:
    """The band of a churn risk: ``"low"`` below :data:`LOW_RISK_BELOW` (0.3),
    ``"medium"`` below :data:`HIGH_RISK_FROM` (0.7), ``"high"`` from 0.7 (None for a
    missing value). Takes a number or a Polars Series (returns a Series)."""
    if isinstance(churn_risk, pl.Series):
        return pl.DataFrame({"r": churn_risk.cast(pl.Float64)}).select(_band_expr("r").alias("risk_band")).to_series()
    if churn_risk is None or (isinstance(churn_risk, float) and math.isnan(churn_risk)):
        return None
    if churn_risk < LOW_RISK_BELOW:
        return "low"
    if churn_risk < HIGH_RISK_FROM:
        return "medium"
    return "high"


def _band_expr(col: str = "churn_risk") -> pl.Expr:
    c = pl.col(col)
    return (pl.when(c.is_null() | c.is_nan()).then(None)
            .when(c < LOW_RISK_BELOW).then(pl.lit("low"))
            .when(c < HIGH_RISK_FROM).then(pl.lit("medium"))
            .otherwise(pl.lit("high")))


# ---------------------------------------------------------------------------------
# The risk list
# ---------------------------------------------------------------------------------
def extras_sql(f: Filters, *, as_of: date) -> tuple[str, dict[str, Any]]:
    """SQL of the per-customer extras of :func:`risk_list` (the caller binds
    ``margin_rate``): customer_key, customer_id, name, email, phone, region,
    acquisition_channel, last_channel, usual_gap_days, latest_nps."""
    base, p1 = f.orders_sql(("order_id", "channel"))
    responses, p2 = f.responses_sql()
    params = {**p1, **p2, "next": instant(as_of + timedelta(days=1))}
    sql = f"""
WITH o AS ({base}),
oo AS (SELECT * FROM o WHERE ordered_at < $next),
d AS (SELECT DISTINCT customer_key, CAST(ordered_at AS DATE) AS day FROM oo),
g AS (
    SELECT customer_key, CAST(day - lag(day) OVER (PARTITION BY customer_key ORDER BY day) AS DOUBLE) AS gap
    FROM d
),
gap AS (
    SELECT customer_key, percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS usual_gap_days
    FROM g WHERE gap IS NOT NULL GROUP BY customer_key
),
lastc AS (
    SELECT customer_key, channel,
           row_number() OVER (PARTITION BY customer_key ORDER BY ordered_at DESC, order_id DESC) AS i
    FROM oo
),
r AS ({responses}),
n AS (
    SELECT customer_key, nps,
           row_number() OVER (PARTITION BY customer_key ORDER BY responded_at DESC, response_id DESC) AS i
    FROM r WHERE customer_key IS NOT NULL AND nps IS NOT NULL AND responded_at < $next
)
SELECT l.customer_key, c.customer_id, c.name, c.email, c.phone, c.region, c.acquisition_channel,
       l.channel AS last_channel, CAST(gap.usual_gap_days AS DOUBLE) AS usual_gap_days,
       CAST(n.nps AS BIGINT) AS latest_nps
FROM lastc l
LEFT JOIN customers c ON c.customer_key = l.customer_key
LEFT JOIN gap ON gap.customer_key = l.customer_key
LEFT JOIN n ON n.customer_key = l.customer_key AND n.i = 1
WHERE l.i = 1
ORDER BY l.customer_key"""
    return sql, params


def risk_list(
    store: Store, f: Filters, *, as_of: date, bgnbd: BGNBD, gg: GammaGamma,
    margin_rate: float = DEFAULT_MARGIN_RATE, horizon_months: int = 12, monthly_discount_rate: float = 0.01,
    unit: str = "days", unmasked: bool = False, rules: Any = rfm.DEFAULT_SEGMENT_RULES,
) -> pl.DataFrame:
    """One row per customer with a completed order on or before ``as_of`` (columns
    :data:`RISK_COLUMNS`), sorted by value_at_risk (largest first), then customer_key.

    customer_key, customer_id; name, email, phone (masked unless ``unmasked``);
    region, acquisition_channel; segment (RFM at ``as_of`` with ``rules``);
    last_channel (of the last completed order); latest_nps (latest response with an
    NPS up to ``as_of``, null if none); orders, historical_revenue, historical_margin
    (completed orders up to ``as_of``); last_purchase, days_since_last, usual_gap_days
    (median days between consecutive purchase days, null with fewer than two),
    gap_ratio = days_since_last / usual_gap_days; p_alive (BG/NBD), churn_risk =
    1 - p_alive, risk_band (:func:`risk_band`); expected_90d (expected purchases in
    the next 90 days); days_to_next = (alpha + T) / (r + x) in days and
    expected_next_order = ``as_of`` + that (see the module docstring); predicted_clv
    (:func:`metrics.clv.clv` with the customer's margin share), clv_if_alive
    (:func:`clv_if_alive`) and value_at_risk =
    churn_risk x clv_if_alive. ``bgnbd`` and ``gg`` must be fitted in ``unit``.
    """
    per_unit = _unit_days(unit)
    summary = customer_summary(store, f, calibration_end=as_of, unit=unit, margin_rate=margin_rate)
    if summary.height == 0:
        return pl.DataFrame(schema=RISK_COLUMNS)
    x = summary["frequency"].to_numpy().astype(float)
    tx = summary["recency"].to_numpy().astype(float)
    T_ = summary["T"].to_numpy().astype(float)
    mv = summary["monetary_value"].to_numpy().astype(float)
    # The customer's own margin share of revenue, as on the CLV page (margin_rate
    # where an order carries no margin or the customer has no revenue).
    share = margin_share(summary, margin_rate).to_numpy()
    alive = np.atleast_1d(np.asarray(bgnbd.p_alive(x, tx, T_), dtype=float))
    nxt = np.atleast_1d(np.asarray(bgnbd.expected_purchases(NEXT_DAYS / per_unit, x, tx, T_), dtype=float))
    value = np.atleast_1d(np.asarray(
        clv(bgnbd, gg, x, tx, T_, mv, horizon_months=horizon_months, unit=unit, margin=share,
            monthly_discount_rate=monthly_discount_rate), dtype=float))
    if_alive = clv_if_alive(bgnbd, gg, x, T_, mv, horizon_months=horizon_months, unit=unit, margin=share,
                            monthly_discount_rate=monthly_discount_rate)
    days_to_next = (bgnbd.alpha + T_) / (bgnbd.r + x) * per_unit
    model = summary.select(
        "customer_key", "orders", pl.col("revenue").alias("historical_revenue"),
        pl.col("margin").alias("historical_margin"), "last_purchase",
    ).with_columns(
        pl.Series("p_alive", alive), pl.Series("churn_risk", 1.0 - alive), pl.Series("expected_90d", nxt),
        pl.Series("days_to_next", days_to_next), pl.Series("predicted_clv", value),
        pl.Series("clv_if_alive", if_alive), pl.Series("value_at_risk", (1.0 - alive) * if_alive),
    )
    step = pl.col("days_to_next").round(0, mode="half_away_from_zero")
    model = model.with_columns(
        (pl.lit(as_of) - pl.col("last_purchase")).dt.total_days().cast(pl.Int64).alias("days_since_last"),
        _band_expr().alias("risk_band"),
        pl.when(step <= NEXT_ORDER_CAP_DAYS)
        .then(pl.lit(as_of) + pl.duration(days=step.clip(upper_bound=NEXT_ORDER_CAP_DAYS).cast(pl.Int64)))
        .otherwise(None).alias("expected_next_order"),
    )
    sql, params = extras_sql(f, as_of=as_of)
    extras = store.query(sql, {**params, "margin_rate": margin_rate})
    seg = rfm.assign_segments(rfm.rfm_scores(store, f, as_of=as_of, margin_rate=margin_rate), rules)
    out = (model.join(extras, on="customer_key", how="left")
           .join(seg.select("customer_key", "segment"), on="customer_key", how="left")
           .with_columns((pl.col("days_since_last") / pl.col("usual_gap_days")).alias("gap_ratio")))
    if not unmasked:
        out = pymap.columns(out, {"name": mask_name, "email": mask_email, "phone": mask_phone})
    out = out.select(list(RISK_COLUMNS)).cast(RISK_COLUMNS)
    return out.sort(["value_at_risk", "customer_key"], descending=[True, False], nulls_last=True)


def risk_summary(lst: pl.DataFrame, threshold: float, min_value: float = 0.0, *,
                 value: str = "historical_margin") -> dict[str, Any]:
    """The headline of a risk list: customers at risk are those with
    ``churn_risk >= threshold`` and ``value >= min_value`` (``value`` is a column of
    the list, by default historical_margin, the historical CLV of DESIGN.md).

    Returns a dict: customers (all rows), at_risk (customers at risk), at_risk_share,
    value_at_risk (sum of value_at_risk over those at risk), value_at_risk_total (over
    all), historical (sum of ``value`` over those at risk), and ``bands``: a frame with
    one row per band (low, medium, high): band, customers, value_at_risk,
    predicted_clv.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("the churn-risk threshold must be between 0 and 1")
    hit = lst.filter((pl.col("churn_risk") >= threshold) & (pl.col(value) >= min_value))
    n = lst.height
    banded = lst.with_columns(_band_expr().alias("_band"))
    agg = banded.group_by("_band").agg(
        pl.len().alias("customers"), pl.col("value_at_risk").sum(), pl.col("predicted_clv").sum())
    bands = (pl.DataFrame({"band": list(BANDS)})
             .join(agg.rename({"_band": "band"}), on="band", how="left", maintain_order="left")
             .with_columns(pl.col("customers").fill_null(0).cast(pl.Int64),
                           pl.col("value_at_risk").fill_null(0.0).cast(pl.Float64),
                           pl.col("predicted_clv").fill_null(0.0).cast(pl.Float64)))
    return {
        "customers": n,
        "at_risk": hit.height,
        "at_risk_share": hit.height / n if n else None,
        "value_at_risk": float(hit["value_at_risk"].sum()) if hit.height else 0.0,
        "value_at_risk_total": float(lst["value_at_risk"].sum()) if n else 0.0,
        "historical": float(hit[value].sum()) if hit.height else 0.0,
        "bands": bands,
    }


# ---------------------------------------------------------------------------------
# Holdout precision of "target the top X%"
# ---------------------------------------------------------------------------------
PRECISION_COLUMNS = {
    "share": pl.Float64, "targeted": pl.Int64, "lapsed": pl.Int64, "precision": pl.Float64,
    "low": pl.Float64, "high": pl.Float64, "min_churn_risk": pl.Float64, "customers": pl.Int64,
    "base_lapsed": pl.Int64, "base_rate": pl.Float64, "lift": pl.Float64,
}


def targeting_precision(
    store: Store, f: Filters, *, calibration_end: date, holdout_end: date,
    bgnbd_fit_on_calibration: BGNBD | None = None, shares: Iterable[float] = DEFAULT_SHARES,
    unit: str = "days", margin_rate: float = DEFAULT_MARGIN_RATE,
) -> pl.DataFrame:
    """How well churn risk picks the customers who will lapse, checked on a holdout.

    The calibration customers (:func:`metrics.clv.customer_summary` at
    ``calibration_end``) are ranked by churn risk = 1 - P(alive) under
    ``bgnbd_fit_on_calibration`` (a BG/NBD fitted on the history up to
    ``calibration_end`` in ``unit``; fitted here with :func:`metrics.clv.fit_bgnbd`
    when None), ties broken by fewer expected purchases in the holdout window, then
    customer_key. For each share, the top ``ceil(share x n)`` customers are
    targeted; a customer **lapsed** when they made no completed purchase in
    ``(calibration_end, holdout_end]``.

    One row per share: share, targeted, lapsed (of the targeted), precision =
    lapsed / targeted with its 95% Wilson interval (low, high), min_churn_risk (the
    lowest churn risk targeted), customers (n), base_lapsed and base_rate (lapse rate
    of all n customers), lift = precision / base_rate.
    """
    shares = [float(s) for s in shares]
    if any(not 0.0 < s <= 1.0 for s in shares):
        raise ValueError("every share must be above 0 and at most 1")
    summary = customer_summary(store, f, calibration_end=calibration_end, unit=unit, margin_rate=margin_rate)
    hold = holdout_summary(store, f, calibration_end, holdout_end, unit, margin_rate=margin_rate)
    if summary.height == 0:
        return pl.DataFrame(schema=PRECISION_COLUMNS)
    model = bgnbd_fit_on_calibration
    if model is None:
        model = fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    x, tx, T_ = summary["frequency"], summary["recency"], summary["T"]
    t = (holdout_end - calibration_end).days / _unit_days(unit)
    ranked = summary.select("customer_key").with_columns(
        pl.Series("churn_risk", 1.0 - np.atleast_1d(np.asarray(model.p_alive(x, tx, T_), dtype=float))),
        pl.Series("expected", np.atleast_1d(np.asarray(model.expected_purchases(t, x, tx, T_), dtype=float))),
    ).join(hold.select("customer_key", "purchases"), on="customer_key", how="left").with_columns(
        (pl.col("purchases").fill_null(0) == 0).alias("lapsed")
    ).sort(["churn_risk", "expected", "customer_key"], descending=[True, False, False])
    n = ranked.height
    lapsed = ranked["lapsed"].to_numpy()
    risk = ranked["churn_risk"].to_numpy()
    cum = np.cumsum(lapsed)
    base_lapsed = int(cum[-1])
    base_rate = base_lapsed / n
    rows = []
    for s in shares:
        k = min(n, max(1, math.ceil(s * n - 1e-9)))
        hit = int(cum[k - 1])
        lo, hi = wilson_interval(hit, k)
        precision = hit / k
        rows.append({"share": s, "targeted": k, "lapsed": hit, "precision": precision, "low": lo, "high": hi,
                     "min_churn_risk": float(risk[k - 1]), "customers": n, "base_lapsed": base_lapsed,
                     "base_rate": base_rate, "lift": precision / base_rate if base_rate else None})
    return pl.DataFrame(rows, schema=PRECISION_COLUMNS)


# ---------------------------------------------------------------------------------
# Control group
# ---------------------------------------------------------------------------------
def _unit_hash(key: Any, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def holdout_flag(keys: Any, share: float, seed: int) -> pl.Series:
    """A reproducible random control group: True for the customers to hold out of a
    campaign. A key is flagged when ``blake2b(f"{seed}\\x1f{key}")`` (8 bytes, read as
    a number in [0, 1)) is below ``share``: the same key gets the same flag for the
    same seed whatever the order or the other keys, and each key is flagged with
    probability ``share`` independently (the realised share varies by about
    ``sqrt(share (1 - share) / n)``). Keys are compared as text (``5`` and ``"5"``
    are the same key); use the stable customer_id. Returns a Boolean Series named
    ``holdout``, aligned with ``keys``; a null key is never held out."""
    if not 0.0 <= share <= 1.0:
        raise ValueError("the control-group share must be between 0 and 1")
    values = keys.to_list() if isinstance(keys, pl.Series) else list(keys)
    flags = [False if k is None else _unit_hash(k, int(seed)) < share for k in values]
    return pl.Series("holdout", flags, dtype=pl.Boolean)


# ---------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------
# Column of the risk list -> (English header, Vietnamese header), in export order.
EXPORT_COLUMNS: dict[str, tuple[str, str]] = {
    "customer_id": ("Customer ID", "Mã khách hàng"),
    "name": ("Name", "Họ tên"),
    "email": ("Email", "Email"),
    "phone": ("Phone", "Số điện thoại"),
    "region": ("Region", "Khu vực"),
    "segment": ("RFM segment", "Phân khúc RFM"),
    "risk_band": ("Churn risk band", "Mức rủi ro rời bỏ"),
    "churn_risk": ("Churn risk", "Rủi ro rời bỏ"),
    "days_since_last": ("Days since last order", "Số ngày từ lần mua gần nhất"),
    "usual_gap_days": ("Usual gap (days)", "Khoảng cách mua thường lệ (ngày)"),
    "expected_next_order": ("Expected next order", "Ngày mua tiếp theo dự kiến"),
    "last_channel": ("Last channel", "Kênh mua gần nhất"),
    "latest_nps": ("Latest NPS", "NPS gần nhất"),
    "historical_revenue": ("Revenue to date (VND)", "Doanh thu đến nay (VND)"),
    "predicted_clv": ("Predicted CLV (VND)", "CLV dự báo (VND)"),
    "value_at_risk": ("Value at risk (VND)", "Giá trị có nguy cơ mất (VND)"),
    "action": ("Suggested action", "Hành động đề xuất"),
}
CONTACT_COLUMNS = ("name", "email", "phone")


def export_frame(lst: pl.DataFrame, *, include_contact: bool, lang: str) -> pl.DataFrame:
    """The win-back campaign export of a risk list (rows kept in their order): the
    columns of :data:`EXPORT_COLUMNS` with headers in ``lang`` ('vi' or 'en'), the
    RFM segment and risk band as labels, the segment's suggested action, churn risk
    as a share (0-1, 4 decimals) and money rounded to 2 decimals.

    Contacts (name, email, phone) are masked unless ``include_contact``; then the
    list must come from :func:`risk_list` with ``unmasked=True`` (ValueError when its
    contacts are already masked)."""
    if lang not in ("vi", "en"):
        raise ValueError(f"lang must be 'vi' or 'en', not {lang!r}")
    i = 0 if lang == "en" else 1
    if include_contact:
        masked = lst.select(pl.any_horizontal(pl.col(c).str.contains(MASKED_PATTERN).fill_null(False)
                                              for c in CONTACT_COLUMNS).any()).item()
        if masked:
            raise ValueError("the contacts in this list are masked; build it with risk_list(..., unmasked=True)")
    else:
        lst = pymap.columns(lst, {"name": mask_name, "email": mask_email, "phone": mask_phone})
    contact = [pl.col(c) for c in CONTACT_COLUMNS]
    seg_label = {k: v["label_en" if i == 0 else "label_vi"] for k, v in rfm.SEGMENTS.items()}
    seg_action = {k: v["action_en" if i == 0 else "action_vi"] for k, v in rfm.SEGMENTS.items()}
    band_label = {k: v[i] for k, v in BAND_LABELS.items()}
    out = lst.with_columns(
        *contact,
        pl.col("segment").replace_strict(seg_action, default=None, return_dtype=pl.Utf8).alias("action"),
        pl.col("segment").replace_strict(seg_label, default=None, return_dtype=pl.Utf8),
        pl.col("risk_band").replace_strict(band_label, default=None, return_dtype=pl.Utf8),
        pl.col("churn_risk").round(4),
        pl.col("usual_gap_days").round(1),
        *(pl.col(c).round(2) for c in ("historical_revenue", "predicted_clv", "value_at_risk")),
    ).select(list(EXPORT_COLUMNS))
    return out.rename({c: h[i] for c, h in EXPORT_COLUMNS.items()})


