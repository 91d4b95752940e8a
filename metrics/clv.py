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
on them. Identical rows are collapsed and fitted once with weights, and each fit's
log-likelihood is summed with what depends on one column alone computed once per
distinct value (see :class:`_BGNBDSums`, :class:`_GGSums`). Times are
rescaled (by the mean ``T``) and money (by the mean spend) during the fit only; the
parameters, log-likelihoods and covariances are reported in the original units.
"""

from __future__ import annotations

import copy
import math
import os
from concurrent.futures import ThreadPoolExecutor
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
    """A model cannot be fitted or used; the message says why, in plain English.
    ``code`` names the reason for a page to translate (None for misuse by code:
    invalid arguments), with ``values`` for its message."""

    def __init__(self, message: str, code: str | None = None, **values: Any) -> None:
        super().__init__(message)
        self.code, self.values = code, values


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
)
-- The repeat purchases' mean: all days but the first (arg_min by day), no window sort.
SELECT customer_key,
       CAST(count(*) - 1 AS BIGINT) AS frequency,
       CAST(max(day) - min(day) AS DOUBLE) / $unit_days AS recency,
       CAST(CAST($cal_end AS DATE) - min(day) AS DOUBLE) / $unit_days AS T,
       CAST(CASE WHEN count(*) > 1 THEN (sum(revenue) - arg_min(revenue, day)) / (count(*) - 1) ELSE 0 END
            AS DOUBLE) AS monetary_value,
       CAST(CASE WHEN count(*) > 1 THEN (sum(margin) - arg_min(margin, day)) / (count(*) - 1) ELSE 0 END
            AS DOUBLE) AS monetary_margin,
       min(day) AS first_purchase, max(day) AS last_purchase,
       CAST(sum(n) AS BIGINT) AS orders, CAST(sum(revenue) AS DOUBLE) AS revenue,
       CAST(sum(margin) AS DOUBLE) AS margin
FROM d GROUP BY customer_key ORDER BY customer_key"""
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


def shortfalls(summary: pl.DataFrame) -> list[tuple[str, dict[str, int]]]:
    """What the summary lacks for the models, as (code, values): ``customers`` (fewer
    than :data:`MIN_CUSTOMERS` customers), ``repeaters`` (fewer than
    :data:`MIN_REPEAT_CUSTOMERS` repeat customers, for BG/NBD) and ``spenders`` (as
    few repeat customers with a positive mean spend, for Gamma-Gamma); values: n (what
    there is) and need. Empty = enough."""
    out: list[tuple[str, dict[str, int]]] = []
    repeat = summary.filter(pl.col("frequency") > 0)
    if summary.height < MIN_CUSTOMERS:
        out.append(("customers", {"n": summary.height, "need": MIN_CUSTOMERS}))
    if repeat.height < MIN_REPEAT_CUSTOMERS:
        out.append(("repeaters", {"n": repeat.height, "need": MIN_REPEAT_CUSTOMERS}))
    spenders = repeat.filter(pl.col("monetary_value") > 0).height
    if spenders < MIN_REPEAT_CUSTOMERS:
        out.append(("spenders", {"n": spenders, "need": MIN_REPEAT_CUSTOMERS}))
    return out


SHORTFALL_TEXT = {
    "customers": "Only {n:,} customers have a completed order in the calibration period; "
                 "the purchase model needs at least {need:,}.",
    "repeaters": "Only {n:,} customers bought again after their first purchase; at least {need:,} repeat "
                 "customers are needed to estimate how often customers buy and when they stop.",
    "spenders": "Only {n:,} repeat customers have a positive spend on their repeat purchases; "
                "the spend model needs at least {need:,}.",
}


def sufficiency(summary: pl.DataFrame) -> list[str]:
    """What the summary lacks for the models, in plain English (empty = enough): the
    :func:`shortfalls` as sentences."""
    return [SHORTFALL_TEXT[code].format(**values) for code, values in shortfalls(summary)]


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


def _factorize(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of a 1-D array and each element's index into them.

    Whole numbers in a modest range (frequencies, and times in days) are counted with
    ``np.bincount`` in linear time; anything else goes through ``np.unique``."""
    if col.size:
        lo, hi = float(col.min()), float(col.max())
        if lo >= 0 and hi <= 4 * col.size + (1 << 20) and np.array_equal(col, np.floor(col)):
            ints = col.astype(np.int64)
            present = np.bincount(ints, minlength=int(hi) + 1) > 0
            remap = np.cumsum(present) - 1
            return np.flatnonzero(present).astype(col.dtype), remap[ints]
    uniq, inverse = np.unique(col, return_inverse=True)
    return uniq, inverse.ravel()


def _collapse(columns: list[np.ndarray], w: np.ndarray) -> tuple[
        list[np.ndarray], np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Unique rows of the stacked columns (in lexicographic order) and their summed
    weights, rows of zero total weight dropped; with, per column, its sorted distinct
    values and each returned row's index into them.

    Each column is factorised on its own and the codes combined into one integer key:
    counted by ``np.bincount`` when its range is small, else sorted (one argsort of
    integers). Should the key not fit in 62 bits, the rows are returned as they are,
    only those of zero weight dropped: the weighted sums over the rows are the same."""
    n = w.size
    facts = [_factorize(c) for c in columns]
    sizes = [u.size for u, _ in facts]
    bound = 1
    for k in sizes:
        bound *= k
    if bound >= 1 << 62:
        keep = w > 0
        if keep.all():
            return list(columns), w, facts
        return [c[keep] for c in columns], w[keep], [(u, codes[keep]) for u, codes in facts]
    key = np.zeros(n, dtype=np.int64)
    for (_, codes), k in zip(facts, sizes):
        key = key * k + codes
    if bound <= max(4 * n, 1 << 20):
        counts = np.bincount(key, weights=w, minlength=bound)
        ukey = np.flatnonzero(counts > 0)  # weights are not negative
        weights = counts[ukey]
    else:
        order = np.argsort(key)
        sk = key[order]
        first = np.empty(n, dtype=bool)
        first[:1] = True
        np.not_equal(sk[1:], sk[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        ukey = sk[starts]
        weights = np.add.reduceat(w[order], starts) if n else w[:0]
        pos = weights > 0
        ukey, weights = ukey[pos], weights[pos]
    out, out_facts = [], []
    for (u, _), k in zip(reversed(facts), reversed(sizes)):
        codes = ukey % k
        out.append(u[codes])
        out_facts.append((u, codes))
        ukey = ukey // k
    return out[::-1], weights, out_facts[::-1]


def _minimise(fun, x0s: list[np.ndarray], dim: int) -> tuple[np.ndarray, bool]:
    """L-BFGS-B from each start in turn (each run restarted once from its end point to
    polish), until one reaches a converged interior optimum: the largest absolute
    gradient component of the mean objective below 1e-5 and every log-parameter
    inside its bounds. Returns the best point and whether it converged."""
    bounds = [(-LOG_BOUND, LOG_BOUND)] * dim
    opts = {"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10}
    best_x, best_f = np.full(dim, np.nan), np.inf
    raw, memo = fun, {}

    def fun(phi: np.ndarray) -> tuple[float, np.ndarray]:
        # The polishing run starts, and the convergence check looks, where the previous
        # run ended: that point's value is reused rather than computed again.
        key = np.asarray(phi, dtype=float).tobytes()
        if key not in memo:
            if len(memo) > 8:
                memo.clear()
            memo[key] = raw(phi)
        val, grad = memo[key]
        return val, np.array(grad, dtype=float)

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


_CHUNK = 1 << 15  # rows per block of the fits' per-row work (its temporaries stay in cache)
_THREADS = max(1, min(4, os.cpu_count() or 1))


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """``u @ v`` without BLAS (whose threads cost more than they save on these sizes,
    above all on a busy machine), summed pairwise."""
    return float(np.multiply(u, v).sum())


def _map_chunks(fn, chunks: list[slice]) -> list:
    """``fn`` over the row blocks, on up to :data:`_THREADS` threads (NumPy releases
    the GIL in its loops); results in block order, so sums are deterministic."""
    if len(chunks) < 2 or _THREADS < 2:
        return [fn(c) for c in chunks]
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_THREADS, thread_name_prefix="clv-fit")
    return list(_POOL.map(fn, chunks))


_POOL: ThreadPoolExecutor | None = None


class _BGNBDSums:
    """The weighted totals of :func:`_bgnbd_terms` (log-likelihood and gradient), for
    the fit: the same sums, arranged so that an evaluation does little per row.

    With ``d = l3 - l2`` (the two terms inside the log), ``ln(e^l2 + e^l3) = l2 +
    softplus(d)`` and the weights ``w3 = expit(d)``, ``w2 = 1 - w3``. What depends on
    the frequency alone (gammaln, betaln, digamma of ``x``) is computed once per
    distinct frequency; ``l2`` is summed per distinct ``T`` (its log once per distinct
    ``T`` and ``t_x``); customers without a repeat purchase (``x = 0``: ``r ln alpha -
    r ln(alpha + T)``) count once per distinct ``T``. Per row remain ``d``, its
    softplus and ``w3``."""

    def __init__(self, x: np.ndarray, w: np.ndarray, facts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """``x`` and ``w`` per row; ``facts``: for x, t_x and T, the sorted distinct
        values and each row's index into them (as :func:`_collapse` returns them)."""
        (xu, xc), (self.txu, txc), (self.Tu, Tc) = facts
        zero = x == 0
        self.w0 = np.bincount(Tc[zero], weights=w[zero], minlength=self.Tu.size)  # x = 0, per T
        self.W0 = float(self.w0.sum())
        pos = ~zero
        self.w = w[pos]
        self.W1 = float(self.w.sum())
        self.x = x[pos]
        self.xi = xc[pos]
        if xu.size and xu[0] == 0:  # the frequencies of the repeat customers only
            xu, self.xi = xu[1:], self.xi - 1
        self.xu = xu
        self.Wx = np.bincount(self.xi, weights=self.w, minlength=self.xu.size)
        self.Ti, self.txi = Tc[pos], txc[pos]
        self.WT = np.bincount(self.Ti, weights=self.w, minlength=self.Tu.size)  # sum of w per T
        self.WxT = np.bincount(self.Ti, weights=self.w * self.x, minlength=self.Tu.size)  # of w x
        self.unweighted = bool(np.all(self.w == 1.0))
        self.chunks = [slice(i, i + _CHUNK) for i in range(0, self.x.size, _CHUNK)]

    def rescaled(self, scale: float) -> _BGNBDSums:
        """The same rows with times divided by ``scale``."""
        out = copy.copy(self)
        out.Tu, out.txu = self.Tu / scale, self.txu / scale
        return out

    def _rows(self, rows: slice, c: np.ndarray, lt_u: np.ndarray, ltx_u: np.ndarray, inv_t_u: np.ndarray,
              inv_tx_u: np.ndarray, r: float) -> tuple[float, float, float, float, np.ndarray]:
        """Per-row sums over ``rows``: of w softplus(d), of w w3 (ln(alpha + T) -
        ln(alpha + t_x)), of w w3 (r + x) (1 / (alpha + T) - 1 / (alpha + t_x)), of w w3,
        and of w w3 per distinct frequency."""
        Ti, txi, xi = self.Ti[rows], self.txi[rows], self.xi[rows]
        dl = lt_u.take(Ti)
        dl -= ltx_u.take(txi)
        rx = self.x[rows] + r
        d = rx * dl
        d += c.take(xi)
        e = np.abs(d)
        np.negative(e, out=e)
        np.exp(e, out=e)  # exp(-|d|), in (0, 1]
        w3 = np.where(d >= 0, 1.0, e)
        e += 1.0
        w3 /= e  # expit(d)
        np.log(e, out=e)
        np.maximum(d, 0.0, out=d)
        d += e  # softplus(d)
        if not self.unweighted:
            w = self.w[rows]
            d *= w
            w3 *= w
        s_sp = float(d.sum())
        s_w3 = float(w3.sum())
        s3 = np.bincount(xi, weights=w3, minlength=self.xu.size)
        dl *= w3
        s_dl = float(dl.sum())
        di = inv_t_u.take(Ti)
        di -= inv_tx_u.take(txi)
        di *= w3
        di *= rx
        return s_sp, s_dl, float(di.sum()), s_w3, s3

    def __call__(self, r: float, alpha: float, a: float, b: float) -> tuple[float, np.ndarray]:
        """(sum of w x log-likelihood, sum of w x its gradient in (r, alpha, a, b))."""
        dg, gl, bl = special.digamma, special.gammaln, special.betaln
        log_alpha = math.log(alpha)
        # Customers without a repeat purchase.
        lt_u = np.log(alpha + self.Tu)
        inv_t_u = 1.0 / (alpha + self.Tu)
        s_lt0 = _dot(self.w0, lt_u)
        ll = r * log_alpha * self.W0 - r * s_lt0
        g_r = log_alpha * self.W0 - s_lt0
        g_alpha = r / alpha * self.W0 - r * _dot(self.w0, inv_t_u)
        if self.x.size == 0:
            return ll, np.array([g_r, g_alpha, 0.0, 0.0])
        # Repeat customers: what depends on the frequency alone...
        xu, Wx = self.xu, self.Wx
        blab = bl(a, b)
        A = bl(a, b + xu) - blab
        B = bl(a + 1, b + xu - 1) - blab
        d_ab, d_abx, d_bx = dg(a + b), dg(a + b + xu), dg(b + xu)
        ll += _dot(Wx, gl(r + xu) - gl(r) + r * log_alpha + A)
        g_r += _dot(Wx, dg(r + xu) - dg(r) + log_alpha)
        g_alpha += r / alpha * self.W1
        g_a = _dot(Wx, d_ab - d_abx)
        g_b = _dot(Wx, d_bx - dg(b) + d_ab - d_abx)
        # ... on T alone (l2 = A - (r + x) ln(alpha + T), and w2 = 1 - w3) ...
        ll -= r * _dot(self.WT, lt_u) + _dot(self.WxT, lt_u)
        g_r -= _dot(self.WT, lt_u)
        g_alpha -= r * _dot(self.WT, inv_t_u) + _dot(self.WxT, inv_t_u)
        # ... and per row: d = l3 - l2 = (B - A) + (r + x) (ln(alpha + T) - ln(alpha + t_x)).
        per_row = (B - A, lt_u, np.log(alpha + self.txu), inv_t_u, 1.0 / (alpha + self.txu), r)
        parts = _map_chunks(lambda rows: self._rows(rows, *per_row), self.chunks)
        s_sp, s_dl, s_di, s_w3 = (math.fsum(p_[i] for p_ in parts) for i in range(4))
        s3 = np.sum([p_[4] for p_ in parts], axis=0)
        ll += s_sp
        g_r += s_dl
        g_alpha += s_di
        g_a += (dg(a + 1) - dg(a)) * s_w3
        g_b += _dot(s3, dg(b + xu - 1) - d_bx)
        return ll, np.array([g_r, g_alpha, g_a, g_b])


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
    (x, tx, T_), w, facts = _collapse([x, tx, T_], w)
    scale = float(np.average(T_, weights=w))
    if not scale > 0:
        raise ModelError("every customer made the first purchase on the last day; there is no history to learn from",
                         "no_history")
    unscaled = _BGNBDSums(x, w, facts)
    sums = unscaled.rescaled(scale)

    def total_grad(phi: np.ndarray) -> np.ndarray:
        theta = np.exp(phi)
        return -sums(*theta)[1] * theta

    def objective(phi: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.exp(phi)
        ll, g = sums(*theta)
        val = -ll / n + penalizer * float(theta @ theta)
        grad = -g / n * theta + 2 * penalizer * theta * theta
        if not np.isfinite(val):
            return 1e100, np.zeros(4)
        return val, grad

    starts = [np.zeros(4), np.log([0.5, 0.5, 0.5, 2.0]), np.log([2.0, 5.0, 2.0, 5.0])]
    phi, converged = _minimise(objective, starts, 4)
    if not converged:
        raise ModelError(
            "The purchase model did not converge: the purchase histories do not pin down how often "
            "customers buy and when they stop (too little or too regular data).", "bgnbd_converge"
        )
    r, alpha_s, a, b = np.exp(phi)
    alpha = float(alpha_s * scale)
    ll = unscaled(r, alpha, a, b)[0]
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


class _GGSums:
    """The weighted totals of :func:`_gg_terms` (log-likelihood and gradient), for the
    fit: the same sums, arranged so that an evaluation does little per row. The
    gammaln and digamma terms depend on the frequency alone (computed once per distinct
    frequency); the logs of ``m`` and ``x`` not on the parameters (summed once); what
    is left depends on ``x m`` alone (``ln(gamma + x m)`` and ``1 / (gamma + x m)``),
    computed once per distinct ``x m`` with its summed ``w`` and ``w x``."""

    def __init__(self, x: np.ndarray, m: np.ndarray, w: np.ndarray) -> None:
        self.n = float(w.sum())
        self.xu, xi = _factorize(x)
        self.Wx = np.bincount(xi, weights=w, minlength=self.xu.size)
        self.w, self.wx, self.m = w, w * x, m
        self.s_xlogx = _dot(self.wx, np.log(x))
        self.xm, xmi = _factorize(x * m)
        self.w_xm = np.bincount(xmi, weights=w, minlength=self.xm.size)
        self.wx_xm = np.bincount(xmi, weights=self.wx, minlength=self.xm.size)
        self.rescaled(1.0)

    def rescaled(self, scale: float) -> _GGSums:
        """Money divided by ``scale`` from now on."""
        log_m = np.log(self.m / scale) if scale != 1.0 else np.log(self.m)
        self.s_logm = _dot(self.w, log_m)
        self.s_xlogm = _dot(self.wx, log_m)
        self.scale = scale
        return self

    def __call__(self, p: float, q: float, g: float) -> tuple[float, np.ndarray]:
        """(sum of w x log-likelihood, sum of w x its gradient in (p, q, gamma))."""
        dg, gl = special.digamma, special.gammaln
        n, xu, Wx = self.n, self.xu, self.Wx
        px = p * xu
        d = dg(px + q)
        g_xm = self.xm / self.scale if self.scale != 1.0 else self.xm
        g_xm = g_xm + g
        lgm = np.log(g_xm)
        inv = 1.0 / g_xm
        s_lgm, s_xlgm = _dot(self.w_xm, lgm), _dot(self.wx_xm, lgm)
        log_g = math.log(g)
        ll = (_dot(Wx, gl(px + q) - gl(px)) - n * gl(q) + n * q * log_g
              + p * self.s_xlogm - self.s_logm + p * self.s_xlogx - p * s_xlgm - q * s_lgm)
        g_p = _dot(Wx * xu, d - dg(px)) + self.s_xlogm + self.s_xlogx - s_xlgm
        g_q = _dot(Wx, d) - n * dg(q) + n * log_g - s_lgm
        g_g = n * q / g - p * _dot(self.wx_xm, inv) - q * _dot(self.w_xm, inv)
        return ll, np.array([g_p, g_q, g_g])


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
    spend per purchase. The likelihood is summed per distinct frequency and per distinct
    ``x m`` (:class:`_GGSums`), with the weights; money is
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
    x, m, w = x[keep], m[keep], w[keep]
    scale = float(np.average(m, weights=w))
    sums = _GGSums(x, m, w).rescaled(scale)

    def total_grad(phi: np.ndarray) -> np.ndarray:
        theta = np.exp(phi)
        return -sums(*theta)[1] * theta

    def objective(phi: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.exp(phi)
        ll, g = sums(*theta)
        val = -ll / n + penalizer * float(theta @ theta)
        if not np.isfinite(val):
            return 1e100, np.zeros(3)
        return val, -g / n * theta + 2 * penalizer * theta * theta

    starts = [np.log([1.0, 2.0, 1.0]), np.log([5.0, 4.0, 3.0]), np.log([0.5, 1.5, 0.5])]
    phi, converged = _minimise(objective, starts, 3)
    if not converged:
        raise ModelError(
            "The spend model did not converge: spend per purchase does not vary enough between "
            "customers to be modelled.", "gg_converge"
        )
    p, q, g_s = np.exp(phi)
    if q <= 1:
        raise ModelError(
            f"The spend model found q = {q:.3g} <= 1, so the average spend per purchase is undefined "
            "(a few customers with extreme spend dominate); check the data for outliers.", "gg_q", q=float(q)
        )
    g = float(g_s * scale)
    cov = _covariance(total_grad, phi, np.array([p, q, g]))
    ll = sums.rescaled(1.0)(p, q, g)[0]
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

    def purchases(x: np.ndarray, tx: np.ndarray, T_: np.ndarray) -> np.ndarray:
        """The discounted expected purchases over the horizon."""
        months = np.arange(horizon_months + 1, dtype=float).reshape((-1,) + (1,) * x.ndim)
        cum = np.asarray(bgnbd.expected_purchases(months * month, x, tx, T_))
        disc = (1.0 + monthly_discount_rate) ** -months[1:]
        return (np.diff(cum, axis=0) * disc).sum(axis=0)

    value = per_distinct(purchases, x, tx, T_) * spend * np.asarray(margin, dtype=float)
    return _out(value)


def per_distinct(fn, *columns: np.ndarray, block: int = 100_000) -> np.ndarray:
    """``fn(*columns)`` for 1-D columns, evaluated once per distinct row and in blocks
    of ``block`` distinct rows (customers share (frequency, recency, T) often, and the
    hypergeometric terms are the costly part); other shapes are passed through."""
    if not columns or columns[0].ndim != 1 or columns[0].size < 2 * block // 10:
        return np.asarray(fn(*columns), dtype=float)
    cols, inverse = distinct_rows(*columns)
    out = np.empty(cols[0].size)
    for a in range(0, out.size, block):
        out[a:a + block] = np.asarray(fn(*(c[a:a + block] for c in cols)), dtype=float)
    return out[inverse]


def distinct_rows(*columns: Any) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of equal-length 1-D columns, in order of first appearance, and
    for each input row the index of its distinct row: ``(columns, inverse)``, so that
    ``columns[j][inverse] == the j-th input column``."""
    frame = pl.DataFrame({f"c{i}": np.asarray(c) for i, c in enumerate(columns)})
    names = frame.columns
    distinct = frame.unique(maintain_order=True).with_row_index("_g")
    inverse = frame.join(distinct, on=names, how="left", maintain_order="left")["_g"].to_numpy()
    return [distinct[n].to_numpy() for n in names], inverse


def score_customers(
    summary: pl.DataFrame, bgnbd: BGNBD, gg: GammaGamma, *, unit: str = "days", horizon_months: int = 12,
    margin_rate: Any = DEFAULT_MARGIN_RATE, monthly_discount_rate: float = 0.01, next_days: int = 90,
) -> pl.DataFrame:
    """The summary with the model's view of each customer: p_alive, churn_risk
    (1 - P(alive)), expected_purchases (in the next ``next_days`` days),
    expected_spend (Gamma-Gamma, per purchase) and clv (:func:`clv` on revenue times
    ``margin_rate``, a number or one per customer)."""
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
