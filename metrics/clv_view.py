"""What the CLV page shows, computed from the models of :mod:`metrics.clv`.

Definitions (shared/DESIGN.md, "Historical CLV" and "Predictive CLV"):

- **Historical CLV** of a customer = cumulative gross margin of their completed orders
  to the date (an order without a margin counts ``revenue x margin_rate``).
- **Predictive CLV** over ``H`` months = :func:`metrics.clv.clv`: BG/NBD expected
  purchases per month x Gamma-Gamma expected spend per purchase x the customer's own
  margin share (their margin / their revenue to date; ``margin_rate`` without revenue)
  discounted monthly at ``(1 + annual rate)^(1/12) - 1``.
- **Uncertainty** of a total: a parametric bootstrap. Parameter vectors are drawn from
  the normal approximation of each model's maximum-likelihood estimate in
  log-parameters (covariance from the inverse Hessian); the total is recomputed for
  each draw and the 2.5th and 97.5th percentiles are the 95% interval. Above
  :data:`BOOT_CUSTOMERS` customers, a fixed random sample is scored and scaled up.
- **Validation** (the holdout): the models are fitted on the orders up to a
  calibration end ``E`` and predict each customer's repeat purchases in ``(E, as_of]``;
  the prediction is compared with what they did, overall (the aggregate error
  ``(predicted - actual) / actual``), by number of calibration repeat purchases, and
  week by week (cumulative). The grade: **good** when the aggregate error is within
  10% and the purchase-count groups within 20% on average (weighted by customers);
  **fair** within 25% and 35%; **poor** otherwise.
- **Lorenz curve**: customers sorted by value, highest first; the share of all value
  held by the top x% of customers.
- **CLV : CAC** by acquisition channel = mean value (margin to date + predicted CLV)
  / mean acquisition cost, both over the channel's customers whose acquisition cost is
  known: ``customers.acquisition_cost``, or for a referred customer without one the
  referral reward paid for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from data.store import Store
from metrics import clv as M
from metrics import rfm
from metrics.filters import DEFAULT_INACTIVITY_DAYS, Filters, instant
from metrics.kpis import DEFAULT_MARGIN_RATE

BOOT_DRAWS = 100
BOOT_CUSTOMERS = 5_000
GROUPS = ("segment", "acquisition_channel", "region", "tier", "cohort")
GRADES = (("good", 0.10, 0.20), ("fair", 0.25, 0.35))
NEXT_DAYS = 90


def monthly_rate(annual: float) -> float:
    """The monthly discount rate equivalent to an annual one: ``(1 + a)^(1/12) - 1``."""
    if annual <= -1:
        raise M.ModelError("the annual discount rate must be above -100%")
    return (1.0 + annual) ** (1.0 / 12.0) - 1.0


@dataclass(frozen=True)
class Settings:
    """The page's model settings: horizon (months), annual discount rate, the margin
    for orders that carry none, and the time unit of the summary."""

    horizon_months: int = 12
    annual_discount_rate: float = 0.10
    margin_rate: float = DEFAULT_MARGIN_RATE
    unit: str = "days"


@dataclass
class Scored:
    """The models fitted at ``as_of`` and every customer scored: the summary columns
    plus margin_share, historical_clv, p_alive, expected_purchases (next
    :data:`NEXT_DAYS` days), expected_spend, clv (predicted, over the horizon),
    total_value (historical + predicted) and the attributes segment (RFM at the
    date, :mod:`metrics.rfm`), acquisition_channel, region, tier, cohort (month of
    the first purchase). ``problems`` (what the data
    lack) or ``error`` (why a model failed) instead when the models cannot be used."""

    customers: pl.DataFrame | None = None
    bgnbd: M.BGNBD | None = None
    gg: M.GammaGamma | None = None
    correlation: float = float("nan")
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    shortfalls: list[tuple[str, dict]] = field(default_factory=list)  # the problems as codes, to translate
    error_code: str | None = None
    error_values: dict = field(default_factory=dict)
    summary: pl.DataFrame | None = None  # the fit's customer summary (at DEFAULT_MARGIN_RATE), reused by score
    summary_unit: str | None = None  # its time unit

    @property
    def ok(self) -> bool:
        return self.customers is not None and self.bgnbd is not None and self.gg is not None


def model_filters(f: Filters) -> Filters:
    """The filters as the models read them: channels, regions and loyalty. The models
    use all history to the date, so the period and the inactivity window are fixed
    here, and results cached by filters do not change with them."""
    return replace(f, start=date(2000, 1, 1), end=date(2000, 1, 1), inactivity_days=DEFAULT_INACTIVITY_DAYS)


def attributes(store: Store) -> pl.DataFrame:
    """Per customer key: customer_id, acquisition_channel, region and loyalty tier ("none" for
    non-members); unknown values are "unknown"."""
    return store.query(
        "SELECT c.customer_key, c.customer_id, coalesce(c.acquisition_channel, 'unknown') AS acquisition_channel, "
        "coalesce(c.region, 'unknown') AS region, "
        "CASE WHEN m.customer_key IS NULL THEN 'none' ELSE coalesce(m.tier, 'member') END AS tier "
        "FROM customers c LEFT JOIN (SELECT customer_key, any_value(tier) AS tier FROM loyalty_members "
        "GROUP BY customer_key) m USING (customer_key)"
    )


def fit(store: Store, f: Filters, *, as_of: date, unit: str = "days") -> Scored:
    """Fit BG/NBD and Gamma-Gamma on every customer's history up to ``as_of``: a
    :class:`Scored` with the models and no customers (or with ``problems`` /
    ``error``). The fit depends on the data, the filters, the date and the unit only
    (not on the horizon, discount or margin), so a page refits only when those change."""
    summary = M.customer_summary(store, f, calibration_end=as_of, unit=unit)
    problems = M.sufficiency(summary)
    if problems:
        return Scored(problems=problems, shortfalls=M.shortfalls(summary))
    x = summary["frequency"]
    try:
        bg = M.fit_bgnbd(x, summary["recency"], summary["T"])
        gg = M.fit_gamma_gamma(x, summary["monetary_value"])
    except M.ModelError as e:
        return Scored(error=str(e), error_code=e.code, error_values=e.values)
    return Scored(None, bg, gg, M.frequency_monetary_correlation(x, summary["monetary_value"]), summary=summary,
                  summary_unit=unit)


def score(store: Store, f: Filters, *, as_of: date, settings: Settings = Settings(),
          fitted: Scored | None = None) -> Scored:
    """Score each customer with the models of :func:`fit` (fitted here unless
    ``fitted`` is given; see :class:`Scored` and the module docstring)."""
    fitted = fitted if fitted is not None else fit(store, f, as_of=as_of, unit=settings.unit)
    if fitted.problems or fitted.error:
        return fitted
    bg, gg = fitted.bgnbd, fitted.gg
    if (fitted.summary is not None and settings.margin_rate == DEFAULT_MARGIN_RATE
            and fitted.summary_unit == settings.unit):
        summary = fitted.summary  # the same query: read once
    else:
        summary = M.customer_summary(store, f, calibration_end=as_of, unit=settings.unit,
                                     margin_rate=settings.margin_rate)
    share = margin_share(summary, settings.margin_rate)
    out = M.score_customers(summary, bg, gg, unit=settings.unit, horizon_months=settings.horizon_months,
                            margin_rate=share.to_numpy(), next_days=NEXT_DAYS,
                            monthly_discount_rate=monthly_rate(settings.annual_discount_rate))
    out = out.with_columns(share.alias("margin_share"), pl.col("margin").alias("historical_clv")).with_columns((pl.col("historical_clv") + pl.col("clv")).alias("total_value"),
                   pl.col("first_purchase").dt.truncate("1mo").alias("cohort"))
    segments = rfm.rfm_segments(store, f, as_of=as_of, margin_rate=settings.margin_rate)
    out = (out.join(attributes(store), on="customer_key", how="left")
           .join(segments.select("customer_key", "segment"), on="customer_key", how="left")
           .with_columns(pl.col("acquisition_channel", "region").fill_null("unknown"),
                         pl.col("tier").fill_null("none"), pl.col("segment").fill_null("unknown")))
    return Scored(out, bg, gg, fitted.correlation)


def margin_share(summary: pl.DataFrame, margin_rate: float) -> pl.Series:
    """Each customer's gross margin share of revenue to date (margin / revenue), the
    ``margin_rate`` where revenue is not positive; kept within [0, 1] so that a
    customer's predicted value is never negative."""
    share = pl.when(pl.col("revenue") > 0).then(pl.col("margin") / pl.col("revenue")).otherwise(margin_rate)
    return summary.select(share.clip(0.0, 1.0).alias("margin_share")).to_series()


# ---------------------------------------------------------------------------------
# Uncertainty: a parametric bootstrap of the fitted parameters
# ---------------------------------------------------------------------------------
def _draws(theta: np.ndarray, cov: tuple | None, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` parameter vectors from the normal approximation in log-parameters
    (delta method: cov_log = cov / (theta theta')); the estimate itself without a
    covariance."""
    if cov is None:
        return np.repeat(theta[None, :], n, axis=0)
    cov_log = np.asarray(cov, dtype=float) / np.outer(theta, theta)
    cov_log = (cov_log + cov_log.T) / 2
    return np.exp(rng.multivariate_normal(np.log(theta), cov_log, size=n, method="eigh"))


def bootstrap(scored: Scored, settings: Settings = Settings(), *, groups: tuple[str, ...] = GROUPS,
              draws: int = BOOT_DRAWS, seed: int = 7) -> pl.DataFrame:
    """95% intervals of total and mean predicted CLV, overall and per group value.

    Columns: group ("all" or the attribute), value (the group's value), customers,
    total (the point estimate), low, high (the total's 2.5th and 97.5th percentiles
    over ``draws`` parameter draws), mean, mean_low, mean_high. See the module
    docstring; above :data:`BOOT_CUSTOMERS` customers a fixed sample is scored and
    each group's totals are scaled by its customers / its customers in the sample."""
    if not scored.ok:
        raise M.ModelError("the models are not fitted")
    c = scored.customers
    rng = np.random.default_rng(seed)
    sample = c if c.height <= BOOT_CUSTOMERS else c.sample(BOOT_CUSTOMERS, seed=seed)
    bg, gg = scored.bgnbd, scored.gg
    bgs = _draws(np.array([bg.r, bg.alpha, bg.a, bg.b]), bg.covariance, draws, rng)
    ggs = _draws(np.array([gg.p, gg.q, gg.gamma]), gg.covariance, draws, rng)
    # Expected purchases depend only on (x, t_x, T): each distinct row once per draw.
    (ux, utx, uT), inverse = M.distinct_rows(sample["frequency"].cast(pl.Float64), sample["recency"], sample["T"])
    x, m = sample["frequency"].to_numpy().astype(float), sample["monetary_value"].to_numpy()
    share = sample["margin_share"].to_numpy()
    month = M.MONTH_DAYS / M.UNITS[settings.unit]
    d = monthly_rate(settings.annual_discount_rate)
    months = np.arange(settings.horizon_months + 1, dtype=float)
    disc = (1.0 + d) ** -months[1:]
    per_customer = np.empty((draws, sample.height))
    for i in range(draws):
        b = M.BGNBD(*bgs[i])
        g_i = M.GammaGamma(*ggs[i])
        if g_i.q <= 1:  # the spend model's mean is undefined there: keep the estimate
            g_i = gg
        cum = np.asarray(b.expected_purchases(months[:, None] * month, ux, utx, uT))
        purchases = (np.diff(cum, axis=0) * disc[:, None]).sum(axis=0)
        spend = np.asarray(g_i.expected_average_spend(x, m), dtype=float)
        per_customer[i] = purchases[inverse] * spend * share
    point = sample["clv"].to_numpy()
    out = []

    def add(group: str, value: str, mask: np.ndarray, n_all: int) -> None:
        # Each group's sampled customers stand for all of that group's customers.
        scale = n_all / int(mask.sum())
        totals = per_customer[:, mask].sum(axis=1) * scale
        est = float(c.filter(pl.lit(True) if group == "all" else pl.col(group).cast(pl.Utf8) == value)["clv"].sum())
        lo, hi = (float(v) for v in np.percentile(totals, [2.5, 97.5]))
        # The interval is centred on the full estimate (the sample's spread, scaled).
        shift = est - float(point[mask].sum() * scale)
        out.append({"group": group, "value": value, "customers": n_all, "total": est, "low": lo + shift,
                    "high": hi + shift, "mean": est / n_all, "mean_low": (lo + shift) / n_all,
                    "mean_high": (hi + shift) / n_all})

    add("all", "all", np.ones(sample.height, dtype=bool), c.height)
    for group in groups:
        col = sample[group].cast(pl.Utf8).to_numpy()
        counts = dict(c.group_by(pl.col(group).cast(pl.Utf8)).len().iter_rows())
        for value in sorted(counts):
            mask = col == value
            if mask.any():
                add(group, value, mask, counts[value])
    return pl.DataFrame(out)


# ---------------------------------------------------------------------------------
# Reading the value: Lorenz curve, groups, CLV : CAC
# ---------------------------------------------------------------------------------
def lorenz(values: Any, points: int = 101) -> pl.DataFrame:
    """The Lorenz curve of value held by customers sorted from highest to lowest:
    share_customers (0..1) against share_value (0..1), at ``points`` evenly spaced
    customer shares. Negative values count as 0."""
    v = np.sort(np.clip(np.asarray(values, dtype=float), 0, None))[::-1]
    total = v.sum()
    xs = np.linspace(0, 1, points)
    if v.size == 0 or total <= 0:
        return pl.DataFrame({"share_customers": xs, "share_value": np.zeros_like(xs)})
    cum = np.concatenate([[0.0], np.cumsum(v)]) / total
    return pl.DataFrame({"share_customers": xs, "share_value": np.interp(xs * v.size, np.arange(v.size + 1), cum)})


def top_share(values: Any, top: float = 0.2) -> float:
    """Share of all value held by the top ``top`` share of customers (by value; a
    fractional customer counts in proportion)."""
    return float(lorenz(values, 1001).filter(pl.col("share_customers") <= top + 1e-12)["share_value"][-1])


def acquisition_costs(store: Store, f: Filters) -> pl.DataFrame:
    """Each customer's acquisition cost, where known: customer_key, cost. The
    customer's own ``acquisition_cost``; for a referred customer without one, the
    referral reward paid for them. Only customers passing the filters' region and
    loyalty conditions."""
    cust, params = f.customer_condition("c.customer_key")
    return store.query(
        "SELECT c.customer_key, CAST(coalesce(c.acquisition_cost, r.reward) AS DOUBLE) AS cost FROM customers c "
        "LEFT JOIN (SELECT referred_key, sum(coalesce(reward_cost, 0)) AS reward FROM referrals "
        "GROUP BY referred_key) r ON r.referred_key = c.customer_key "
        f"WHERE coalesce(c.acquisition_cost, r.reward) IS NOT NULL AND {cust} ORDER BY c.customer_key", params)


def clv_to_cac(customers: pl.DataFrame, costs: pl.DataFrame) -> pl.DataFrame:
    """CLV : CAC per acquisition channel, over the channel's customers whose
    acquisition cost is known: channel, customers, value (their mean margin to date +
    predicted CLV), cac (their mean acquisition cost), ratio = value / cac (null when
    the cost is 0)."""
    joined = customers.join(costs, on="customer_key", how="inner")
    if joined.height == 0:
        return pl.DataFrame(schema={"channel": pl.Utf8, "customers": pl.UInt32, "value": pl.Float64,
                                    "cac": pl.Float64, "ratio": pl.Float64})
    by = joined.group_by(pl.col("acquisition_channel").alias("channel")).agg(
        pl.len().alias("customers"), pl.col("total_value").mean().alias("value"), pl.col("cost").mean().alias("cac"))
    return by.with_columns(pl.when(pl.col("cac") > 0).then(pl.col("value") / pl.col("cac")).alias("ratio")).sort(
        "ratio", descending=True, nulls_last=True)


# ---------------------------------------------------------------------------------
# Reading the model: P(alive) and expected purchases over frequency and recency
# ---------------------------------------------------------------------------------
def model_matrices(bg: M.BGNBD, customers: pl.DataFrame, *, unit: str = "days", cells: int = 24) -> dict[str, Any]:
    """P(alive) and expected purchases in the next :data:`NEXT_DAYS` days for a
    customer with tenure ``T`` = the 90th percentile of the customers' T, over
    frequency 0..F (F = the 99th percentile, at least 5) and recency 0..T in ``cells``
    steps. Returns T, frequencies, recencies (in the unit) and the two matrices
    (rows = frequency, columns = recency)."""
    T = float(np.percentile(customers["T"].to_numpy(), 90))
    top = int(max(5, min(60, np.percentile(customers["frequency"].to_numpy(), 99))))
    freq = np.arange(top + 1, dtype=float)
    rec = np.linspace(0, T, cells)
    X, R = np.meshgrid(freq, rec, indexing="ij")
    R = np.where(X == 0, 0.0, R)  # one purchase: recency is 0 by definition
    TT = np.full_like(X, T)
    alive = np.asarray(bg.p_alive(X, R, TT), dtype=float)
    nxt = np.asarray(bg.expected_purchases(NEXT_DAYS / M.UNITS[unit], X, R, TT), dtype=float)
    return {"T": T, "frequency": freq, "recency": rec, "p_alive": alive, "expected": nxt}


# ---------------------------------------------------------------------------------
# Validation on a holdout
# ---------------------------------------------------------------------------------
@dataclass
class Validation:
    """The holdout check (module docstring): by_frequency (calibration repeat
    purchases 0..6 and "7+": customers, predicted, actual mean purchases), tracking
    (week, predicted and actual cumulative repeat purchases), predicted, actual,
    aggregate_error, group_error, grade, the calibration model, and the dates."""

    calibration_end: date
    holdout_end: date
    customers: int = 0
    predicted: float = 0.0
    actual: float = 0.0
    aggregate_error: float | None = None
    group_error: float | None = None
    grade: str | None = None
    by_frequency: pl.DataFrame | None = None
    tracking: pl.DataFrame | None = None
    bgnbd: M.BGNBD | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    shortfalls: list[tuple[str, dict]] = field(default_factory=list)
    error_code: str | None = None
    error_values: dict = field(default_factory=dict)


def default_calibration_end(first: date, as_of: date) -> date:
    """A holdout of a third of the history, between 8 and 52 weeks long."""
    days = (as_of - first).days
    hold = int(min(max(days // 3, 56), 364))
    return as_of - timedelta(days=hold)


def grade(aggregate_error: float, group_error: float) -> str:
    """good / fair / poor from the holdout errors (:data:`GRADES`)."""
    for name, agg, grp in GRADES:
        if abs(aggregate_error) <= agg and group_error <= grp:
            return name
    return "poor"


def validate(store: Store, f: Filters, *, calibration_end: date, holdout_end: date,
             settings: Settings = Settings()) -> Validation:
    """Fit BG/NBD on the orders up to ``calibration_end`` and compare its prediction of
    each calibration customer's repeat purchases in ``(calibration_end, holdout_end]``
    with what they did (see the module docstring)."""
    v = Validation(calibration_end, holdout_end)
    if holdout_end <= calibration_end:
        v.error, v.error_code = "The calibration period must end before the last date of the data.", "calibration"
        return v
    unit = settings.unit
    cal = M.customer_summary(store, f, calibration_end=calibration_end, unit=unit,
                             margin_rate=settings.margin_rate)
    v.shortfalls = [(c, vals) for c, vals in M.shortfalls(cal) if c != "spenders"]  # BG/NBD only
    v.problems = [M.SHORTFALL_TEXT[c].format(**vals) for c, vals in v.shortfalls]
    if v.problems:
        return v
    try:
        bg = M.fit_bgnbd(cal["frequency"], cal["recency"], cal["T"])
    except M.ModelError as e:
        v.error, v.error_code, v.error_values = str(e), e.code, e.values
        return v
    hold = M.holdout_summary(store, f, calibration_end, holdout_end, unit, margin_rate=settings.margin_rate)
    t = float(hold["t"][0])
    joined = cal.select("customer_key", "frequency", "recency", "T").join(
        hold.select("customer_key", "purchases"), on="customer_key", how="left").with_columns(
        pl.col("purchases").fill_null(0))
    x, tx, T = joined["frequency"], joined["recency"], joined["T"]
    pred = np.asarray(bg.expected_purchases(t, x, tx, T), dtype=float)
    joined = joined.with_columns(pl.Series("predicted", pred),
                                 pl.when(pl.col("frequency") >= 7).then(pl.lit("7+"))
                                 .otherwise(pl.col("frequency").cast(pl.Utf8)).alias("bucket"))
    by = joined.group_by("bucket").agg(pl.len().alias("customers"), pl.col("predicted").mean(),
                                       pl.col("purchases").mean().alias("actual"),
                                       pl.col("frequency").min().alias("order")).sort("order").drop("order")
    v.customers, v.bgnbd, v.by_frequency = joined.height, bg, by
    v.predicted, v.actual = float(pred.sum()), float(joined["purchases"].sum())
    if v.actual > 0:
        v.aggregate_error = (v.predicted - v.actual) / v.actual
        v.group_error = float((by["customers"] * (by["predicted"] - by["actual"]).abs()).sum()
                              / (by["customers"] * by["actual"]).sum())
        v.grade = grade(v.aggregate_error, v.group_error)
    v.tracking = _tracking(store, f, bg, joined, calibration_end, holdout_end, unit)
    return v


def _tracking(store: Store, f: Filters, bg: M.BGNBD, joined: pl.DataFrame, calibration_end: date,
              holdout_end: date, unit: str) -> pl.DataFrame:
    """Cumulative repeat purchases of the calibration customers, week by week through
    the holdout: predicted (sum of E[Y(t)]) and actual (distinct purchase days)."""
    base, params = f.orders_sql()
    daily = store.query(
        f"WITH o AS ({base}), cal AS (SELECT DISTINCT customer_key FROM o WHERE ordered_at < $c), "
        "d AS (SELECT DISTINCT customer_key, CAST(ordered_at AS DATE) AS day FROM o "
        "WHERE ordered_at >= $c AND ordered_at < $h AND customer_key IN (SELECT customer_key FROM cal)) "
        "SELECT day, count(*) AS purchases FROM d GROUP BY day ORDER BY day",
        {**params, "margin_rate": 0.0, "c": instant(calibration_end + timedelta(days=1)),
         "h": instant(holdout_end + timedelta(days=1))})
    days = (holdout_end - calibration_end).days
    weeks = list(range(7, days + 1, 7))
    if not weeks or weeks[-1] != days:
        weeks.append(days)
    # The same expectation for customers with the same (x, t_x, T): each distinct row once.
    (ux, utx, uT), inverse = M.distinct_rows(joined["frequency"].cast(pl.Float64), joined["recency"], joined["T"])
    counts = np.bincount(inverse, minlength=ux.size)
    ts = np.array(weeks, dtype=float)[:, None] / M.UNITS[unit]
    expected = np.asarray(bg.expected_purchases(ts, ux, utx, uT)) @ counts
    actual_by_day = np.zeros(days + 1)
    for d, n in daily.iter_rows():
        i = (d - calibration_end).days
        if 1 <= i <= days:
            actual_by_day[i] += n
    cum = np.cumsum(actual_by_day)
    return pl.DataFrame({"day": weeks, "predicted": expected, "actual": [float(cum[w]) for w in weeks]})

