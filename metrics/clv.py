"""Predictive CLV: BG/NBD for purchases and P(alive), Gamma-Gamma for spend.

Definitions (shared/DESIGN.md, "Predictive CLV" and "Churn risk"):

- **Customer summary** (the calibration data of the models). For a calibration end
  date ``E`` and the customers with at least one completed order on or before ``E``
  (after the global channel, region and loyalty filters; all history up to ``E``,
  the filters' own period is ignored):

  * a **purchase** is a distinct calendar day with at least one completed order (the
    order's local date). Several orders on one day are one purchase, their revenue
    and margin summed. This is the convention of Fader & Hardie's CDNOW data and of
    ``lifetimes`` (``summary_data_from_transaction_data``), for both units;
  * ``frequency`` = number of purchases - 1 (repeat purchases);
  * ``recency`` = days from the first purchase day to the last one, in the unit;
  * ``T`` = days from the first purchase day to ``E``, in the unit (an order on ``E``
    itself counts, and a customer whose first purchase is on ``E`` has ``T = 0``);
  * the unit is ``days`` or ``weeks`` = days / 7 (fractional weeks with 1/7
    resolution, as in Fader, Hardie & Lee's CDNOW summary, where ``T = 38.86``
    for a first purchase on 1 January 1997 and ``E`` = 30 September 1997);
  * ``monetary_value`` = mean revenue of the REPEAT purchases (the first purchase
    excluded; 0 when ``frequency`` is 0); ``monetary_margin`` the same for gross
    margin (an order without one counts ``revenue x margin_rate``).

  This reproduces Fader & Hardie's CDNOW summary (2,357 customers, 2,457 repeat
  purchases, 946 repeat customers) exactly: see tests/test_clv.py.

- **BG/NBD** (Fader, Hardie & Lee 2005, "Counting your customers the easy way").
  While alive, a customer buys at Poisson rate ``lambda ~ Gamma(r, rate alpha)``
  (per unit of time); after each repeat purchase the customer drops out for good with
  probability ``p ~ Beta(a, b)``. Fitted by maximum likelihood on
  ``(frequency, recency, T)``. **P(alive)** follows Fader, Hardie & Lee's note
  "Computing P(alive) using the BG/NBD model"; the **expected number of purchases in
  the next t periods** is equation 10 of the paper, evaluated through
  Euler's transformation of the Gaussian hypergeometric function (stable for any
  frequency and history length).

- **Gamma-Gamma** (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves";
  Fader & Hardie 2013, "The Gamma-Gamma model of monetary value"). The spend of one
  purchase is ``z ~ Gamma(p, rate nu)``, ``nu ~ Gamma(q, rate gamma)`` across
  customers, independent of the purchase process. Fitted on customers with at least
  one repeat purchase (and a positive mean spend): their mean repeat spend
  ``m`` over ``x`` purchases. The **expected average spend** of a customer is
  ``p (gamma + x m) / (p x + q - 1)``, which is the population mean
  ``p gamma / (q - 1)`` for ``x = 0``; it needs ``q > 1``.

- **Predictive CLV** over ``H`` months: ``sum_{m=1..H} (E[X(t_m)] - E[X(t_{m-1})])
  x expected average spend x margin / (1 + d)^m`` where ``E[X(t)]`` is the BG/NBD
  conditional expectation for the next ``t`` periods, ``t_m = m x 30.4375`` days (or
  ``m x 30.4375 / 7`` weeks) and ``d`` the monthly discount rate (each month's value
  discounted at the month's end).

- **Churn risk** = 1 - P(alive).

- **Enough data**: the models are fitted only with at least :data:`MIN_CUSTOMERS`
  customers and :data:`MIN_REPEAT_CUSTOMERS` repeat customers (for Gamma-Gamma: repeat
  customers with a positive mean spend). Below that, and when the optimiser does not
  converge, a parameter runs to the edge of its range, or Gamma-Gamma gives
  ``q <= 1``, a :class:`ModelError` says why in plain English; :func:`sufficiency`
  lists what is missing for a page to show.

SQL (DuckDB) computes the summaries from the completed orders; scipy fits the models
on them. Identical rows are collapsed and fitted once with weights. Times are
rescaled (by the mean ``T``) and money (by the mean spend) during the fit only; the
parameters, log-likelihoods and covariances are reported in the original units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl
from scipy import optimize, special

from data.store import Store
from metrics.filters import Filters, instant
from metrics.kpis import DEFAULT_MARGIN_RATE

UNITS = {"days": 1.0, "weeks": 7.0}
MONTH_DAYS = 30.4375  # 365.25 / 12
MIN_CUSTOMERS = 100
MIN_REPEAT_CUSTOMERS = 20
LOG_BOUND = 30.0  # fitted log-parameters (in the rescaled units) stay inside +-30
_EDGE = 1e-4
_INVALID = 1e99  # objectives return 1e100 where the log-likelihood is not finite


class ModelError(ValueError):
    """A model cannot be fitted or used; the message says why, in plain English."""


# ---------------------------------------------------------------------------------
# The customer summary (SQL)
# ---------------------------------------------------------------------------------
SUMMARY_COLUMNS = (
    "customer_key", "frequency", "recency", "T", "monetary_value", "monetary_margin",
    "first_purchase", "last_purchase", "orders", "revenue", "margin",
)


def _unit_days(unit: str) -> float:
    try:
        return UNITS[unit]
    except KeyError:
        raise ModelError(f"the time unit must be 'days' or 'weeks', not {unit!r}") from None


def summary_sql(f: Filters, *, calibration_end: date, unit: str = "days") -> tuple[str, dict[str, Any]]:
    """SQL and parameters of the per-customer summary (see the module docstring).

    One row per customer with a completed order on or before ``calibration_end``:
    customer_key, frequency (distinct purchase days - 1), recency and T (in ``unit``),
    monetary_value and monetary_margin (mean revenue and margin of the repeat purchase
    days; 0 without one), first_purchase and last_purchase (dates), and the
    calibration totals orders, revenue, margin. The caller binds ``margin_rate``.
    """
    per_unit = _unit_days(unit)
    base, params = f.orders_sql()
    params = {**params, "cal_end": calibration_end, "cal_next": instant(calibration_end + timedelta(days=1)),
              "unit_days": per_unit}
    sql = f"""
WITH o AS ({base}),
d AS (
    SELECT customer_key, CAST(ordered_at AS DATE) AS day, count(*) AS n,
           sum(revenue) AS revenue, sum(margin) AS margin
    FROM o WHERE ordered_at < $cal_next
    GROUP BY customer_key, CAST(ordered_at AS DATE)
),
k AS (
    SELECT *, row_number() OVER (PARTITION BY customer_key ORDER BY day) AS i FROM d
)
SELECT customer_key,
       CAST(count(*) - 1 AS BIGINT) AS frequency,
       CAST(max(day) - min(day) AS DOUBLE) / $unit_days AS recency,
       CAST(CAST($cal_end AS DATE) - min(day) AS DOUBLE) / $unit_days AS T,
       CAST(coalesce(avg(revenue) FILTER (WHERE i > 1), 0) AS DOUBLE) AS monetary_value,
       CAST(coalesce(avg(margin) FILTER (WHERE i > 1), 0) AS DOUBLE) AS monetary_margin,
       min(day) AS first_purchase, max(day) AS last_purchase,
       CAST(sum(n) AS BIGINT) AS orders, CAST(sum(revenue) AS DOUBLE) AS revenue,
       CAST(sum(margin) AS DOUBLE) AS margin
FROM k GROUP BY customer_key ORDER BY customer_key"""
    return sql, params


def customer_summary(
    store: Store, f: Filters, *, calibration_end: date, unit: str = "days",
    margin_rate: float = DEFAULT_MARGIN_RATE,
) -> pl.DataFrame:
    """The per-customer calibration summary (columns :data:`SUMMARY_COLUMNS`).

    ``frequency`` = distinct purchase days on or before ``calibration_end`` minus 1;
    ``recency`` = first to last purchase day; ``T`` = first purchase day to
    ``calibration_end`` (both in days, or days / 7 for ``unit='weeks'``);
    ``monetary_value`` / ``monetary_margin`` = mean revenue / margin per repeat
    purchase day (first purchase excluded, 0 when ``frequency`` is 0). Filters apply
    to channels, regions and loyalty; the filters' period is ignored.
    """
    sql, params = summary_sql(f, calibration_end=calibration_end, unit=unit)
    out = store.query(sql, {**params, "margin_rate": margin_rate})
    return out.select(SUMMARY_COLUMNS)


HOLDOUT_COLUMNS = ("customer_key", "purchases", "revenue", "margin", "t")


def holdout_sql(f: Filters, calibration_end: date, holdout_end: date, unit: str = "days") -> tuple[str, dict[str, Any]]:
    """SQL of :func:`holdout_summary`; the caller binds ``margin_rate``."""
    per_unit = _unit_days(unit)
    if holdout_end <= calibration_end:
        raise ModelError("the holdout period must end after the calibration period")
    base, params = f.orders_sql()
    params = {**params, "cal_next": instant(calibration_end + timedelta(days=1)),
              "hold_next": instant(holdout_end + timedelta(days=1)),
              "t": (holdout_end - calibration_end).days / per_unit}
    sql = f"""
WITH o AS ({base}),
cal AS (SELECT DISTINCT customer_key FROM o WHERE ordered_at < $cal_next),
h AS (
    SELECT customer_key, count(DISTINCT CAST(ordered_at AS DATE)) AS purchases,
           sum(revenue) AS revenue, sum(margin) AS margin
    FROM o WHERE ordered_at >= $cal_next AND ordered_at < $hold_next
    GROUP BY customer_key
)
SELECT cal.customer_key, CAST(coalesce(h.purchases, 0) AS BIGINT) AS purchases,
       CAST(coalesce(h.revenue, 0) AS DOUBLE) AS revenue, CAST(coalesce(h.margin, 0) AS DOUBLE) AS margin,
       CAST($t AS DOUBLE) AS t
FROM cal LEFT JOIN h ON h.customer_key = cal.customer_key
ORDER BY cal.customer_key"""
    return sql, params


def holdout_summary(
    store: Store, f: Filters, calibration_end: date, holdout_end: date, unit: str = "days", *,
    margin_rate: float = DEFAULT_MARGIN_RATE,
) -> pl.DataFrame:
    """What the calibration customers actually did in ``(calibration_end, holdout_end]``.

    One row per customer of :func:`customer_summary` (same filters and end date):
    purchases (distinct purchase days in the holdout, all repeat purchases), revenue
    and margin in the holdout (0 when none), and ``t`` = the holdout length in ``unit``
    (the ``t`` to give :meth:`BGNBD.expected_purchases` for the prediction).
    """
    sql, params = holdout_sql(f, calibration_end, holdout_end, unit)
    return store.query(sql, {**params, "margin_rate": margin_rate}).select(HOLDOUT_COLUMNS)


def sufficiency(summary: pl.DataFrame) -> list[str]:
    """What the summary lacks for the models, in plain English (empty = enough).

    Needs :data:`MIN_CUSTOMERS` customers and :data:`MIN_REPEAT_CUSTOMERS` repeat
    customers for BG/NBD, and as many repeat customers with a positive mean spend for
    Gamma-Gamma.
    """
    missing: list[str] = []
    n = summary.height
    repeat = summary.filter(pl.col("frequency") > 0)
    if n < MIN_CUSTOMERS:
        missing.append(
            f"Only {n:,} customers have a completed order in the calibration period; "
            f"the purchase model needs at least {MIN_CUSTOMERS:,}."
        )
    if repeat.height < MIN_REPEAT_CUSTOMERS:
        missing.append(
            f"Only {repeat.height:,} customers bought again after their first purchase; "
            f"at least {MIN_REPEAT_CUSTOMERS:,} repeat customers are needed to estimate "
            "how often customers buy and when they stop."
        )
    spenders = repeat.filter(pl.col("monetary_value") > 0).height
    if spenders < MIN_REPEAT_CUSTOMERS:
        missing.append(
            f"Only {spenders:,} repeat customers have a positive spend on their repeat purchases; "
            f"the spend model needs at least {MIN_REPEAT_CUSTOMERS:,}."
        )
    return missing


# ---------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------
def _array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, pl.Series):
        values = values.to_numpy()
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ModelError(f"{name} has missing or infinite values")
    if np.any(arr < 0):
        raise ModelError(f"{name} cannot be negative")
    return arr


def _rfm(frequency: Any, recency: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated, broadcast (frequency, recency, T)."""
    x, tx, T_ = np.broadcast_arrays(_array(frequency, "frequency"), _array(recency, "recency"), _array(T, "T"))
    if np.any(x != np.round(x)):
        raise ModelError("frequency counts repeat purchases, so it must be a whole number")
    if np.any(tx > T_ * (1 + 1e-12) + 1e-12):
        raise ModelError("recency (first to last purchase) cannot exceed T (first purchase to the end)")
    if np.any((x == 0) & (tx > 0)):
        raise ModelError("a customer without repeat purchases must have recency 0")
    return x, tx, T_


def _out(arr: np.ndarray) -> float | np.ndarray:
    return float(arr) if np.ndim(arr) == 0 else arr


def _weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.broadcast_to(_array(weights, "weights"), (n,)).astype(float)
    return w


def _collapse(columns: list[np.ndarray], w: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Unique rows of the stacked columns and their summed weights."""
    stacked = np.column_stack(columns)
    uniq, inverse = np.unique(stacked, axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=w, minlength=uniq.shape[0])
    keep = counts > 0
    return [uniq[keep, j] for j in range(uniq.shape[1])], counts[keep]


def _minimise(fun, x0s: list[np.ndarray], dim: int) -> tuple[np.ndarray, bool]:
    """L-BFGS-B from each start in turn (each run restarted once from its end point to
    polish), until one reaches a converged interior optimum: the largest absolute
    gradient component of the mean objective below 1e-5 and every log-parameter
    inside its bounds. Returns the best point and whether it converged."""
    bounds = [(-LOG_BOUND, LOG_BOUND)] * dim
    opts = {"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10}
    best_x, best_f = np.full(dim, np.nan), np.inf
    for x0 in x0s:
        res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
        res = optimize.minimize(fun, res.x, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
        if not res.fun < min(best_f, _INVALID):  # also NaN, and the objective's invalid mark
            continue
        best_x, best_f = np.asarray(res.x, dtype=float), float(res.fun)
        grad = fun(best_x)[1]
        interior = bool(np.all(np.abs(best_x) < LOG_BOUND - _EDGE))
        if interior and np.all(np.isfinite(grad)) and np.max(np.abs(grad)) < 1e-5:
            return best_x, True
    return best_x, False


def _covariance(grad_total, phi: np.ndarray, theta: np.ndarray) -> tuple[tuple[float, ...], ...] | None:
    """Covariance of the natural parameters from the numeric Hessian (central
    differences of the analytic gradient) of the total negative log-likelihood in
    log-parameters, by the delta method; None when it is not positive definite."""
    dim = phi.size
    h = 1e-5
    hess = np.empty((dim, dim))
    for i in range(dim):
        e = np.zeros(dim)
        e[i] = h
        hess[i] = (grad_total(phi + e) - grad_total(phi - e)) / (2 * h)
    hess = (hess + hess.T) / 2
    try:
        np.linalg.cholesky(hess)
        cov_log = np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return None
    cov = cov_log * np.outer(theta, theta)
    if not np.all(np.isfinite(cov)):
        return None
    return tuple(tuple(float(v) for v in row) for row in cov)


# ---------------------------------------------------------------------------------
# BG/NBD
# ---------------------------------------------------------------------------------
def _bgnbd_terms(r: float, alpha: float, a: float, b: float, x: np.ndarray, tx: np.ndarray, T: np.ndarray):
    """Per-row log-likelihood (FHL 2005, in log-space) and its gradient in
    (r, alpha, a, b)."""
    pos = x > 0
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    blab = special.betaln(a, b)
    l2 = special.betaln(a, b + x) - blab - (r + x) * np.log(alpha + T)
    xm = np.where(pos, x, 1.0)  # keeps b + x - 1 > 0 where the term is absent
    l3 = np.where(pos, special.betaln(a + 1, b + xm - 1) - blab - (r + x) * np.log(alpha + tx), -np.inf)
    lse = np.logaddexp(l2, l3)
    ll = a1 + lse
    w2 = np.exp(l2 - lse)
    w3 = np.exp(l3 - lse)
    dg = special.digamma
    d_ab, d_abx = dg(a + b), dg(a + b + x)
    g_r = dg(r + x) - dg(r) + np.log(alpha) - w2 * np.log(alpha + T) - w3 * np.log(alpha + tx)
    g_alpha = r / alpha - (r + x) * (w2 / (alpha + T) + w3 / (alpha + tx))
    g_a = w2 * (d_ab - d_abx) + w3 * (dg(a + 1) - dg(a) + d_ab - d_abx)
    g_b = w2 * (dg(b + x) - dg(b) + d_ab - d_abx) + w3 * (dg(b + xm - 1) - dg(b) + d_ab - d_abx)
    return ll, np.stack([g_r, g_alpha, g_a, g_b])


def _hyp2f1(A: np.ndarray, B: np.ndarray, C: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Gauss's 2F1(A, B; C; z) for 0 <= z < 1, with a direct power series where
    scipy's hyp2f1 does not return a finite value."""
    A, B, C, z = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (A, B, C, z)))
    out = np.array(special.hyp2f1(A, B, C, z), dtype=float)
    bad = ~np.isfinite(out)
    if np.any(bad):
        a_, b_, c_, z_ = A[bad], B[bad], C[bad], z[bad]
        term = np.ones_like(z_)
        total = np.ones_like(z_)
        k = 0
        active = np.ones(z_.shape, dtype=bool)
        while np.any(active) and k < 1_000_000:
            term = term * (a_ + k) * (b_ + k) / ((c_ + k) * (k + 1)) * z_
            total = total + np.where(active, term, 0.0)
            active = active & (np.abs(term) > 1e-17 * np.abs(total))
            k += 1
        out[bad] = total
    return out


@dataclass(frozen=True)
class BGNBD:
    """A fitted BG/NBD model (Fader, Hardie & Lee 2005), time in the summary's unit.

    ``r, alpha``: purchase rate ``lambda ~ Gamma(r, rate alpha)``; ``a, b``: dropout
    probability after each repeat purchase ``p ~ Beta(a, b)``. ``log_likelihood`` of
    the data (weighted), ``n`` customers, ``converged``, and ``covariance`` of
    (r, alpha, a, b) from the inverse Hessian (None when not available).
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")
    n: int = 0
    converged: bool = True
    covariance: tuple[tuple[float, ...], ...] | None = None

    @property
    def params(self) -> dict[str, float]:
        """The parameters by name: r, alpha, a, b."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    @property
    def standard_errors(self) -> dict[str, float] | None:
        """Asymptotic standard errors of r, alpha, a, b (None without a covariance)."""
        if self.covariance is None:
            return None
        return {k: math.sqrt(max(self.covariance[i][i], 0.0)) for i, k in enumerate(self.params)}

    def log_likelihood_of(self, frequency: Any, recency: Any, T: Any) -> float | np.ndarray:
        """Per-customer log-likelihood (FHL 2005) of (frequency, recency, T):
        ``ln Gamma(r + x) - ln Gamma(r) + r ln alpha + ln[B(a, b + x) / B(a, b) (alpha + T)^-(r + x)
        + [x > 0] B(a + 1, b + x - 1) / B(a, b) (alpha + t_x)^-(r + x)]``."""
        x, tx, T_ = _rfm(frequency, recency, T)
        return _out(_bgnbd_terms(self.r, self.alpha, self.a, self.b, x, tx, T_)[0])

    def p_alive(self, frequency: Any, recency: Any, T: Any) -> float | np.ndarray:
        """P(alive | x, t_x, T) = 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) /
        (alpha + t_x))^(r + x)) (Fader, Hardie & Lee, "Computing P(alive) using the
        BG/NBD model"); 1 for a customer without repeat
        purchases (in BG/NBD nobody drops out before a repeat purchase)."""
        x, tx, T_ = _rfm(frequency, recency, T)
        return _out(self._p_alive(x, tx, T_))

    def _log_odds(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
        xm = np.where(x > 0, x, 1.0)
        lo = (np.log(self.a) - np.log(self.b + xm - 1)
              + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + tx)))
        return np.where(x > 0, lo, -np.inf)

    def _p_alive(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
        return special.expit(-self._log_odds(x, tx, T))

    def expected_purchases(self, t: Any, frequency: Any, recency: Any, T: Any) -> float | np.ndarray:
        """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` periods (FHL 2005
        eq. 10), ``(a + b + x - 1) / (a - 1) x [1 - ((alpha + T) / (alpha + T + t))^(r + x)
        2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t))] x P(alive)``.

        Evaluated with Euler's transformation: ``((alpha + T) / (alpha + T + t))^(r + x)
        2F1(r + x, b + x; c; z) = (1 - z)^(a - 1) 2F1(a + b - 1 - r, a - 1; c; z)``, whose
        series converges fast for any x (scipy's hyp2f1, a power series as fallback).
        ``t`` broadcasts against the customers.
        """
        t_ = _array(t, "t")
        x, tx, T_ = _rfm(frequency, recency, T)
        t_, x, tx, T_ = np.broadcast_arrays(t_, x, tx, T_)
        return _out(self._expected(t_, x, tx, T_) * self._p_alive(x, tx, T_))

    def _expected(self, t: np.ndarray, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
        """E[Y(t) | x, t_x, T] for a customer known to be alive."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        B = a - 1.0
        if abs(B) < 1e-8:  # a = 1 is a removable singularity
            B = 1e-8 if B >= 0 else -1e-8
        c = B + b + x
        z = t / (alpha + T + t)
        log1mz = np.log(alpha + T) - np.log(alpha + T + t)
        F = _hyp2f1(B + b - r, B, c, z)
        inner = -np.expm1(B * log1mz) / B - np.exp(B * log1mz) * (F - 1.0) / B
        return c * inner

    def expected_purchases_new(self, t: Any) -> float | np.ndarray:
        """E[X(t)]: expected purchases of a new customer in ``(0, t]`` after the first
        purchase (FHL 2005 eq. 9), ``(a + b - 1) / (a - 1) [1 - (alpha / (alpha + t))^r
        2F1(r, b; a + b - 1; t / (alpha + t))]``."""
        t_ = _array(t, "t")
        zero = np.zeros_like(t_)
        return _out(self._expected(t_, zero, zero, zero))


def fit_bgnbd(frequency: Any, recency: Any, T: Any, *, weights: Any = None, penalizer: float = 0.0) -> BGNBD:
    """Fit BG/NBD by maximum likelihood (Fader, Hardie & Lee 2005); the per-customer
    likelihood is :meth:`BGNBD.log_likelihood_of`.

    ``frequency`` (repeat purchases), ``recency`` and ``T`` per customer (arrays,
    lists or Polars Series, time in one unit); ``weights`` count identical customers.
    Identical rows are collapsed and fitted once with their summed weights. The
    log-likelihood is computed in log-space (gammaln, betaln, logaddexp) with its
    analytic gradient, minimised by L-BFGS-B over log-parameters, with times rescaled
    by the mean T. ``penalizer`` adds ``penalizer x (r^2 + (alpha/s)^2 + a^2 + b^2)``
    to the mean negative log-likelihood (s = mean T), like ``lifetimes``' L2 penalty.

    Raises :class:`ModelError` with fewer than :data:`MIN_CUSTOMERS` customers or
    :data:`MIN_REPEAT_CUSTOMERS` repeat customers, for invalid inputs, and when the
    optimiser does not converge to an interior optimum.
    """
    x, tx, T_ = _rfm(frequency, recency, T)
    x, tx, T_ = x.ravel(), tx.ravel(), T_.ravel()
    w = _weights(weights, x.size)
    n = float(w.sum())
    repeat = float(w[x > 0].sum())
    if n < MIN_CUSTOMERS:
        raise ModelError(
            f"The purchase model needs at least {MIN_CUSTOMERS} customers; there are {n:,.0f}."
        )
    if repeat < MIN_REPEAT_CUSTOMERS:
        raise ModelError(
            f"The purchase model needs at least {MIN_REPEAT_CUSTOMERS} customers who bought again; "
            f"there are {repeat:,.0f}."
        )
    if penalizer < 0:
        raise ModelError("the penalizer cannot be negative")
    (x, tx, T_), w = _collapse([x, tx, T_], w)
    scale = float(np.average(T_, weights=w))
    if not scale > 0:
        raise ModelError("every customer made the first purchase on the last day; there is no history to learn from")
    txs, Ts = tx / scale, T_ / scale

    def total_grad(phi: np.ndarray) -> np.ndarray:
        theta = np.exp(phi)
        _, g = _bgnbd_terms(*theta, x, txs, Ts)
        return -(g @ w) * theta

    def objective(phi: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.exp(phi)
        ll, g = _bgnbd_terms(*theta, x, txs, Ts)
        val = -float(ll @ w) / n + penalizer * float(theta @ theta)
        grad = -(g @ w) / n * theta + 2 * penalizer * theta * theta
        if not np.isfinite(val):
            return 1e100, np.zeros(4)
        return val, grad

    starts = [np.zeros(4), np.log([0.5, 0.5, 0.5, 2.0]), np.log([2.0, 5.0, 2.0, 5.0])]
    phi, converged = _minimise(objective, starts, 4)
    if not converged:
        raise ModelError(
            "The purchase model did not converge: the purchase histories do not pin down how often "
            "customers buy and when they stop (too little or too regular data)."
        )
    r, alpha_s, a, b = np.exp(phi)
    alpha = float(alpha_s * scale)
    ll = float(_bgnbd_terms(r, alpha, a, b, x, tx, T_)[0] @ w)
    cov = _covariance(total_grad, phi, np.array([r, alpha, a, b]))
    return BGNBD(r=float(r), alpha=alpha, a=float(a), b=float(b), log_likelihood=ll,
                 n=int(round(n)), converged=converged, covariance=cov)


# ---------------------------------------------------------------------------------
# Gamma-Gamma
# ---------------------------------------------------------------------------------
def _gg_terms(p: float, q: float, g: float, x: np.ndarray, m: np.ndarray):
    """Per-customer log-likelihood of the mean spend ``m`` over ``x`` purchases
    (Fader & Hardie 2013): ``ln Gamma(p x + q) - ln Gamma(p x) - ln Gamma(q) + q ln gamma
    + (p x - 1) ln m + p x ln x - (p x + q) ln(gamma + x m)``, and its gradient in
    (p, q, gamma)."""
    px = p * x
    lgm = np.log(g + x * m)
    ll = (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(g)
          + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * lgm)
    dg = special.digamma
    d = dg(px + q)
    g_p = x * (d - dg(px) + np.log(m) + np.log(x) - lgm)
    g_q = d - dg(q) + np.log(g) - lgm
    g_g = q / g - (px + q) / (g + x * m)
    return ll, np.stack([g_p, g_q, g_g])


def _repeaters(frequency: Any, monetary_value: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _array(frequency, "frequency")
    m = _array(monetary_value, "monetary_value")
    x, m = np.broadcast_arrays(x, m)
    if np.any(x != np.round(x)):
        raise ModelError("frequency counts repeat purchases, so it must be a whole number")
    return x, m, (x > 0) & (m > 0)


@dataclass(frozen=True)
class GammaGamma:
    """A fitted Gamma-Gamma spend model (Fader & Hardie 2013).

    Spend per purchase ``z ~ Gamma(p, rate nu)``, ``nu ~ Gamma(q, rate gamma)`` across
    customers; ``gamma`` is in money. ``n`` = repeat customers fitted; ``covariance``
    of (p, q, gamma) from the inverse Hessian (None when not available).
    """

    p: float
    q: float
    gamma: float
    log_likelihood: float = float("nan")
    n: int = 0
    converged: bool = True
    covariance: tuple[tuple[float, ...], ...] | None = None

    @property
    def params(self) -> dict[str, float]:
        """The parameters by name: p, q, gamma."""
        return {"p": self.p, "q": self.q, "gamma": self.gamma}

    @property
    def standard_errors(self) -> dict[str, float] | None:
        """Asymptotic standard errors of p, q, gamma (None without a covariance)."""
        if self.covariance is None:
            return None
        return {k: math.sqrt(max(self.covariance[i][i], 0.0)) for i, k in enumerate(self.params)}

    @property
    def population_mean(self) -> float:
        """Mean spend per purchase across customers, ``p gamma / (q - 1)``."""
        return self.p * self.gamma / (self.q - 1)

    def expected_average_spend(self, frequency: Any, monetary_value: Any) -> float | np.ndarray:
        """E[Z | x, m] = p (gamma + x m) / (p x + q - 1): the customer's expected spend
        per purchase given ``x`` repeat purchases with mean spend ``m`` (Fader & Hardie
        2013), a weighted mean of the population mean ``p gamma / (q - 1)``
        and ``m``; the population mean when ``x`` is 0."""
        x = _array(frequency, "frequency")
        m = _array(monetary_value, "monetary_value")
        return _out(self.p * (self.gamma + x * m) / (self.p * x + self.q - 1))


def fit_gamma_gamma(frequency: Any, monetary_value: Any, *, weights: Any = None, penalizer: float = 0.0) -> GammaGamma:
    """Fit Gamma-Gamma by maximum likelihood (Fader & Hardie 2013).

    Only customers with ``frequency > 0`` and a positive ``monetary_value`` (the mean
    spend of their repeat purchases) enter the fit; the others carry no information on
    spend per purchase. Identical rows are collapsed with summed weights; money is
    rescaled by the mean spend during the fit. ``penalizer`` adds ``penalizer x (p^2 +
    q^2 + (gamma/s)^2)`` to the mean negative log-likelihood (s = mean spend).

    Raises :class:`ModelError` with fewer than :data:`MIN_REPEAT_CUSTOMERS` such
    customers, for invalid inputs, when the optimiser does not converge, and when
    ``q <= 1`` (the mean spend would be undefined).
    """
    x, m, keep = _repeaters(frequency, monetary_value)
    x, m = x.ravel(), m.ravel()
    w = _weights(weights, x.size)
    keep = keep.ravel() & (w > 0)
    n = float(w[keep].sum())
    if n < MIN_REPEAT_CUSTOMERS:
        raise ModelError(
            f"The spend model needs at least {MIN_REPEAT_CUSTOMERS} repeat customers with a positive spend; "
            f"there are {n:,.0f}."
        )
    if penalizer < 0:
        raise ModelError("the penalizer cannot be negative")
    (x, m), w = _collapse([x[keep], m[keep]], w[keep])
    scale = float(np.average(m, weights=w))
    ms = m / scale

    def total_grad(phi: np.ndarray) -> np.ndarray:
        theta = np.exp(phi)
        return -(_gg_terms(*theta, x, ms)[1] @ w) * theta

    def objective(phi: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.exp(phi)
        ll, g = _gg_terms(*theta, x, ms)
        val = -float(ll @ w) / n + penalizer * float(theta @ theta)
        if not np.isfinite(val):
            return 1e100, np.zeros(3)
        return val, -(g @ w) / n * theta + 2 * penalizer * theta * theta

    starts = [np.log([1.0, 2.0, 1.0]), np.log([5.0, 4.0, 3.0]), np.log([0.5, 1.5, 0.5])]
    phi, converged = _minimise(objective, starts, 3)
    if not converged:
        raise ModelError(
            "The spend model did not converge: spend per purchase does not vary enough between "
            "customers to be modelled."
        )
    p, q, g_s = np.exp(phi)
    if q <= 1:
        raise ModelError(
            f"The spend model found q = {q:.3g} <= 1, so the average spend per purchase is undefined "
            "(a few customers with extreme spend dominate); check the data for outliers."
        )
    g = float(g_s * scale)
    ll = float(_gg_terms(p, q, g, x, m)[0] @ w)
    cov = _covariance(total_grad, phi, np.array([p, q, g]))
    return GammaGamma(p=float(p), q=float(q), gamma=g, log_likelihood=ll, n=int(round(n)),
                      converged=converged, covariance=cov)


def frequency_monetary_correlation(frequency: Any, monetary_value: Any) -> float:
    """Pearson correlation of frequency and mean repeat spend over the repeat customers
    (frequency > 0). Gamma-Gamma assumes spend is independent of the purchase process:
    a value near 0 supports it (Fader & Hardie 2013 report 0.11 on CDNOW). NaN with
    fewer than 3 repeat customers or no variation."""
    x, m, _ = _repeaters(frequency, monetary_value)
    x, m = x.ravel(), m.ravel()
    sel = x > 0
    if sel.sum() < 3 or np.std(x[sel]) == 0 or np.std(m[sel]) == 0:
        return float("nan")
    return float(np.corrcoef(x[sel], m[sel])[0, 1])


# ---------------------------------------------------------------------------------
# CLV
# ---------------------------------------------------------------------------------
def clv(
    bgnbd: BGNBD, gg: GammaGamma, frequency: Any, recency: Any, T: Any, monetary_value: Any, *,
    horizon_months: int = 12, unit: str = "days", margin: Any = DEFAULT_MARGIN_RATE,
    monthly_discount_rate: float = 0.01,
) -> float | np.ndarray:
    """Predictive CLV per customer: the discounted expected gross margin over the next
    ``horizon_months`` months.

    ``CLV = sum_{m=1..H} (E[Y(t_m)] - E[Y(t_{m-1})]) x E[Z | x, m] x margin / (1 + d)^m``
    with ``E[Y(t)]`` the BG/NBD expected purchases in the next ``t`` periods given the
    customer's history (:meth:`BGNBD.expected_purchases`), ``t_m = m x 30.4375`` days
    (``/ 7`` for weeks; ``unit`` must be the summary's), ``E[Z | x, m]`` the
    Gamma-Gamma expected spend (:meth:`GammaGamma.expected_average_spend`),
    ``margin`` the gross margin share of spend (a number or one per customer; pass 1
    when ``monetary_value`` is already a margin) and ``d`` the monthly discount rate.
    """
    if horizon_months < 1 or int(horizon_months) != horizon_months:
        raise ModelError("the CLV horizon must be a whole number of months, at least 1")
    if monthly_discount_rate <= -1:
        raise ModelError("the monthly discount rate must be above -100%")
    month = MONTH_DAYS / _unit_days(unit)
    x, tx, T_ = _rfm(frequency, recency, T)
    spend = np.asarray(gg.expected_average_spend(x, _array(monetary_value, "monetary_value")))
    months = np.arange(horizon_months + 1, dtype=float).reshape((-1,) + (1,) * x.ndim)
    cum = np.asarray(bgnbd.expected_purchases(months * month, x, tx, T_))
    per_month = np.diff(cum, axis=0)
    disc = (1.0 + monthly_discount_rate) ** -months[1:]
    value = (per_month * disc).sum(axis=0) * spend * np.asarray(margin, dtype=float)
    return _out(value)


def score_customers(
    summary: pl.DataFrame, bgnbd: BGNBD, gg: GammaGamma, *, unit: str = "days", horizon_months: int = 12,
    margin_rate: float = DEFAULT_MARGIN_RATE, monthly_discount_rate: float = 0.01, next_days: int = 90,
) -> pl.DataFrame:
    """The summary with the model's view of each customer: p_alive, churn_risk
    (1 - P(alive)), expected_purchases (in the next ``next_days`` days),
    expected_spend (Gamma-Gamma, per purchase) and clv (:func:`clv` on revenue times
    ``margin_rate``)."""
    x, tx, T_ = summary["frequency"], summary["recency"], summary["T"]
    alive = np.asarray(bgnbd.p_alive(x, tx, T_), dtype=float)
    nxt = np.asarray(bgnbd.expected_purchases(next_days / _unit_days(unit), x, tx, T_), dtype=float)
    spend = np.asarray(gg.expected_average_spend(x, summary["monetary_value"]), dtype=float)
    value = np.asarray(clv(bgnbd, gg, x, tx, T_, summary["monetary_value"], horizon_months=horizon_months,
                           unit=unit, margin=margin_rate, monthly_discount_rate=monthly_discount_rate),
                       dtype=float)
    return summary.with_columns(
        pl.Series("p_alive", alive), pl.Series("churn_risk", 1.0 - alive),
        pl.Series("expected_purchases", nxt), pl.Series("expected_spend", spend), pl.Series("clv", value),
    )
