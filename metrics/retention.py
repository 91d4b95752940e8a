"""Retention: cohorts, curves, the customer-base flow, the lifecycle split, time to
repeat.

Definitions (shared/DESIGN.md; the catalogue in metrics/catalogue.py repeats them):

- Only **completed** orders count, after the global channel, region and loyalty
  filters. Periods are calendar weeks (Monday first), months or quarters of the
  order's local timestamp: an order at 23:30 on 31 January belongs to January.
- **Cohort**: customers grouped by the period of their first completed order
  (first-time entry), or, with recurring entry, by every period in which they
  ordered (a customer joins one cohort per active period). Cohorts shown are those
  whose period overlaps the global period.
- **Classic (N-period) retention** at period k: the share of the cohort with an order
  in period k after the cohort's own (k = 0 is the cohort period, always 100%).
  **Unbounded** retention: the share with an order in period k or later.
- **Repeat purchase rate** by period k: the share of the cohort with two or more
  completed orders by the end of period k.
- **Revenue per cohort customer** in period k: the cohort's revenue in k over its
  size; cumulative revenue and margin per customer sum periods 0..k.
  **Net revenue retention**: the cohort's revenue in period k over its revenue in
  period 0.
- A cell is **immature** when the cohort has not reached period k yet: it is missing,
  never zero. The period that holds the last day of data is **incomplete** and is
  flagged; averages and trends use complete cells only.
- **Customer base at an instant t**: customers with a completed order in
  ``[t - W days, t)`` (W the inactivity window). For each month: S (base at its first
  instant), + new (first order ever, in the base at its end), + reactivated (ordered
  before, out of the base at its start, in it at its end), - churned (in the base at
  its start, not at its end), E (base at the next month's first instant), and
  ``E = S + new + reactivated - churned``. **Churn rate** = churned / S;
  **retention rate** = 1 - churn = (E - N) / S with N = new + reactivated.
- **Lifecycle** of a month (active = a completed order in it): new (first month
  ever), returning (also active the month before), resurrected (active before, but
  not the month before), dormant (active the month before, not in this one).
- **Time to repeat**: days from the first completed order to the second, for the
  customers acquired in the period; a customer with one order is censored at the
  end of the data. Kaplan-Meier (Kaplan & Meier 1958) with Greenwood's variance and a
  log-log 95% interval (Kalbfleisch & Prentice 2002, section 1.4). **Gaps**: days
  between consecutive completed orders of a customer.

SQL shapes the data (one pass per question, grouped by the integer customer key and
an integer period index); Polars reshapes the small results.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from data.store import Store
from metrics import pymap
from metrics.filters import Filters, _bind, instant
from metrics.kpis import DEFAULT_MARGIN_RATE, data_bounds
from metrics.stats import Z95, mean_interval, wilson_interval

GRAINS = ("week", "month", "quarter")
ENTRIES = ("first", "recurring")
SPLITS = ("none", "acquisition_channel", "region", "first_category", "loyalty")
METRICS = ("retention", "unbounded", "repeat_rate", "revenue_per_customer", "cum_revenue_per_customer",
           "cum_margin_per_customer", "net_revenue_retention")
SHARE_METRICS = ("retention", "unbounded", "repeat_rate")
_MONDAY = date(1970, 1, 5)


# ---------------------------------------------------------------------------------
# Period indexes: integers, so that "period k after the cohort" is a subtraction.
# ---------------------------------------------------------------------------------
def period_sql(grain: str, col: str) -> str:
    """SQL for the period index of timestamp column ``col`` (code-supplied)."""
    if grain == "week":  # weeks since Monday 5 January 1970
        return f"CAST(floor(date_diff('day', DATE '1970-01-05', CAST({col} AS DATE)) / 7) AS INTEGER)"
    if grain == "month":
        return f"CAST(year({col}) * 12 + month({col}) - 1 AS INTEGER)"
    if grain == "quarter":
        return f"CAST(year({col}) * 4 + floor((month({col}) - 1) / 3) AS INTEGER)"
    raise ValueError(f"grain must be one of {GRAINS}, not {grain!r}")


def period_index(d: date, grain: str) -> int:
    if grain == "week":
        return (d - _MONDAY).days // 7
    if grain == "month":
        return d.year * 12 + d.month - 1
    if grain == "quarter":
        return d.year * 4 + (d.month - 1) // 3
    raise ValueError(f"grain must be one of {GRAINS}, not {grain!r}")


def period_start(index: int, grain: str) -> date:
    if grain == "week":
        return _MONDAY + timedelta(days=7 * index)
    if grain == "month":
        return date(index // 12, index % 12 + 1, 1)
    if grain == "quarter":
        return date(index // 4, 3 * (index % 4) + 1, 1)
    raise ValueError(f"grain must be one of {GRAINS}, not {grain!r}")


def period_end(index: int, grain: str) -> date:
    """The last day of period ``index``."""
    return period_start(index + 1, grain) - timedelta(days=1)


def _segment_sql(split: str) -> tuple[str, str]:
    """(expression, joins) giving each customer's segment; ``cu`` is the per-customer
    row with ``customer_key`` (and ``first_category`` when asked for). Loyalty:
    member = has a row in loyalty_members (at any time)."""
    if split == "none":
        return "'all'", ""
    if split in ("acquisition_channel", "region"):
        return (f"coalesce(c.{split}, 'unknown')",
                "LEFT JOIN customers c ON c.customer_key = cu.customer_key")
    if split == "first_category":
        return "coalesce(cu.first_category, 'unknown')", ""
    if split == "loyalty":
        return ("CASE WHEN lm.customer_key IS NULL THEN 'non_member' ELSE 'member' END",
                "LEFT JOIN (SELECT DISTINCT customer_key FROM loyalty_members) lm ON lm.customer_key = cu.customer_key")
    raise ValueError(f"split must be one of {SPLITS}, not {split!r}")


@dataclass(frozen=True)
class CohortSpec:
    """How the cohorts are cut: ``grain`` (week, month, quarter), ``entry`` (first:
    the period of the first order; recurring: every active period), ``split`` (the
    customer attribute that groups cohorts into segments) and ``values`` (keep only
    these segments; empty = all)."""

    grain: str = "month"
    entry: str = "first"
    split: str = "none"
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.grain not in GRAINS:
            raise ValueError(f"grain must be one of {GRAINS}, not {self.grain!r}")
        if self.entry not in ENTRIES:
            raise ValueError(f"entry must be one of {ENTRIES}, not {self.entry!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {self.split!r}")


# ---------------------------------------------------------------------------------
# The cohort table
# ---------------------------------------------------------------------------------
COHORT_COLUMNS = {
    "cohort": pl.Date, "segment": pl.Utf8, "k": pl.Int64, "size": pl.Int64, "active": pl.Int64,
    "retained_later": pl.Int64, "repeaters": pl.Int64, "orders": pl.Int64, "revenue": pl.Float64,
    "margin": pl.Float64, "complete": pl.Boolean,
}


def cohort_sql(f: Filters, spec: CohortSpec, *, margin_rate: float) -> tuple[str, dict[str, Any]]:
    """Two small long tables in one statement (``part``): ``cell`` rows (cohort,
    segment, k, customers active in k, their orders, revenue, margin) and ``cust``
    rows (cohort, segment, the last active k, the k by which the customer had two
    orders, customers). Cohorts whose period overlaps ``f``'s period only."""
    extra = ("category",) if spec.split == "first_category" else ()
    base, params = f.orders_sql(extra)
    params = {**params, "margin_rate": margin_rate, "c0": period_index(f.start, spec.grain),
              "c1": period_index(f.end, spec.grain)}
    seg, joins = _segment_sql(spec.split)
    keep = f" AND {seg} IN ({_bind(params, 'seg', spec.values)})" if spec.values else ""
    first = spec.entry == "first"
    # Per customer: the last active period; with first-time entry also the cohort and
    # the period of the second order (in the cohort period itself when it held two).
    per_customer = ("min(q) AS c, max(q) AS last_q, min(q, 2) AS two, arg_min(n, q) AS n_first" if first
                    else "max(q) AS last_q")
    kept = ("cu.c, cu.last_q, CASE WHEN cu.n_first >= 2 THEN cu.c ELSE cu.two[2] END AS repeat_q" if first
            else "cu.last_q")
    if extra:
        customers = ("(SELECT cu.*, fc.first_category FROM cu JOIN (SELECT customer_key, "
                     "arg_min(category, ordered_at) AS first_category FROM o GROUP BY customer_key) fc "
                     "ON fc.customer_key = cu.customer_key)")
    else:
        customers = "cu"
    shared = f"""
WITH o AS ({base}),
a AS MATERIALIZED (
    SELECT customer_key, {period_sql(spec.grain, "ordered_at")} AS q, count(*) AS n, sum(revenue) AS rev,
           sum(margin) AS mar
    FROM o GROUP BY customer_key, q
),
cu AS (SELECT customer_key, {per_customer} FROM a GROUP BY customer_key),
seg AS MATERIALIZED (
    SELECT cu.customer_key, {kept}, {seg} AS segment
    FROM {customers} cu {joins}
    WHERE {'cu.c BETWEEN $c0 AND $c1' if first else 'TRUE'}{keep}
)"""
    if first:
        sql = shared + """
SELECT 'cell' AS part, s.c AS cohort, s.segment, a.q - s.c AS k, count(*) AS customers,
       sum(a.n) AS orders, sum(a.rev) AS revenue, sum(a.mar) AS margin, NULL AS repeat_k
FROM a JOIN seg s ON s.customer_key = a.customer_key
GROUP BY s.c, s.segment, a.q - s.c
UNION ALL
SELECT 'cust', c, segment, last_q - c, count(*), NULL, NULL, NULL, repeat_q - c
FROM seg GROUP BY c, segment, last_q - c, repeat_q - c"""
    else:  # one entry per active period: each (customer, period) row of a is a cohort member
        sql = shared + """,
e AS MATERIALIZED (
    SELECT a.customer_key, a.q AS c, a.n, s.segment, s.last_q,
           lead(a.q) OVER (PARTITION BY a.customer_key ORDER BY a.q) AS next_q
    FROM a JOIN seg s ON s.customer_key = a.customer_key
)
SELECT 'cell' AS part, e.c AS cohort, e.segment, a.q - e.c AS k, count(*) AS customers,
       sum(a.n) AS orders, sum(a.rev) AS revenue, sum(a.mar) AS margin, NULL AS repeat_k
FROM e JOIN a ON a.customer_key = e.customer_key AND a.q >= e.c
WHERE e.c BETWEEN $c0 AND $c1
GROUP BY e.c, e.segment, a.q - e.c
UNION ALL
SELECT 'cust', c, segment, last_q - c, count(*), NULL, NULL, NULL,
       CASE WHEN n >= 2 THEN 0 ELSE next_q - c END
FROM e WHERE c BETWEEN $c0 AND $c1 GROUP BY c, segment, last_q - c, 9"""
    return sql, params


def cohort_table(store: Store, f: Filters, spec: CohortSpec, *, as_of: date,
                 margin_rate: float = DEFAULT_MARGIN_RATE, repeaters: bool = True, money: bool = True,
                 act: "Activity | None" = None, second: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every mature cell of the cohort triangle, one row per (cohort, segment, k).

    Columns: cohort (first day of the cohort period), segment ('all' when not split),
    k (periods since the cohort's), size (cohort customers), active (with an order in
    period k), retained_later (with an order in k or later), repeaters (two or more
    orders by the end of k), orders, revenue, margin (in period k, of the cohort's
    customers), complete (period k has ended by ``as_of``, the last day of data).
    Cells beyond ``as_of`` are absent (immature), not zero.

    With first-time entry the counts come from one pass over the orders per
    customer (:func:`activity`, reused when given as ``act``, with the
    :func:`second_orders` of its cohort customers as ``second``);
    ``repeaters=False`` skips the second orders and ``money=False`` the
    orders/revenue/margin (those columns are then null, never zero). Recurring
    entry runs :func:`cohort_sql`.
    """
    if spec.entry == "recurring":
        raw = store.query(*cohort_sql(f, spec, margin_rate=margin_rate))
        return shape_cohorts(raw, grain=spec.grain, as_of=as_of)
    if act is None:
        act = activity(store, f, grain=spec.grain, split=spec.split, values=spec.values)
    c0, c1 = period_index(f.start, spec.grain), period_index(f.end, spec.grain)
    cells, cust, members = _first_entry_counts(act, c0, c1)
    if repeaters:
        if second is None:
            second = second_orders(store, f, act, members, margin_rate=margin_rate)
        rep = (members.join(second.select("customer_key", "second_at"), on="customer_key", how="left")
               .with_columns((_period_expr(pl.col("second_at"), spec.grain) - pl.col("cohort")).alias("repeat_k")))
        cust = rep.group_by("cohort", "segment", "last_k", "repeat_k").agg(pl.len().alias("customers"))
    if money:
        cells = cells.join(_money_cells(store, f, act, members, margin_rate=margin_rate),
                           on=["cohort", "segment", "k"], how="left")
    out = _shape(cells, cust, grain=spec.grain, as_of=as_of)
    missing = ([] if repeaters else ["repeaters"]) + ([] if money else ["orders", "revenue", "margin"])
    return out.with_columns(pl.lit(None, dtype=out.schema[c]).alias(c) for c in missing) if missing else out


def shape_cohorts(raw: pl.DataFrame, *, grain: str, as_of: date) -> pl.DataFrame:
    """Turn the ``cell`` and ``cust`` rows of :func:`cohort_sql` into the dense,
    mature triangle described in :func:`cohort_table`."""
    cells = raw.filter(pl.col("part") == "cell").select(
        "cohort", "segment", "k", pl.col("customers").alias("active"), "orders", "revenue", "margin")
    cust = raw.filter(pl.col("part") == "cust").select(
        "cohort", "segment", pl.col("k").alias("last_k"), "repeat_k", "customers")
    return _shape(cells, cust, grain=grain, as_of=as_of)


def _shape(cells: pl.DataFrame, cust: pl.DataFrame, *, grain: str, as_of: date) -> pl.DataFrame:
    """``cells``: (cohort, segment, k, active[, orders, revenue, margin]) with cohort
    a period index; ``cust``: (cohort, segment, last_k, repeat_k, customers), the
    histogram of each cohort customer's last active k and the k of the second order."""
    if cust.height == 0:
        return pl.DataFrame(schema=COHORT_COLUMNS)
    now = period_index(as_of, grain)
    now_complete = period_end(now, grain) <= as_of
    cells = cells.select(
        pl.col("cohort").cast(pl.Int64), pl.col("segment").cast(pl.Utf8), pl.col("k").cast(pl.Int64),
        pl.col("active").cast(pl.Int64),
        *(pl.col(c).cast(pl.Int64 if c == "orders" else pl.Float64) if c in cells.columns
          else pl.lit(None, dtype=pl.Float64).alias(c) for c in ("orders", "revenue", "margin")))
    cust = cust.select(
        pl.col("cohort").cast(pl.Int64), pl.col("segment").cast(pl.Utf8), pl.col("last_k").cast(pl.Int64),
        pl.col("repeat_k").cast(pl.Int64), pl.col("customers").cast(pl.Int64))
    sizes = cust.group_by("cohort", "segment").agg(pl.col("customers").sum().alias("size"))
    grid = sizes.with_columns(
        pl.int_ranges(0, pl.lit(now + 1, dtype=pl.Int64) - pl.col("cohort")).alias("k")
    ).explode("k").filter(pl.col("k").is_not_null())
    # Unbounded: customers whose last active k is at or after k (a reverse running
    # sum over the histogram of last k); repeaters: whose repeat k is at or before k.
    keys = ["cohort", "segment", "k"]
    last = cust.group_by("cohort", "segment", pl.col("last_k").alias("k")).agg(pl.col("customers").sum().alias("ends"))
    rep = (cust.filter(pl.col("repeat_k").is_not_null())
           .group_by("cohort", "segment", pl.col("repeat_k").alias("k")).agg(pl.col("customers").sum().alias("reps")))
    later = (grid.select(keys).join(last, on=keys, how="left").join(rep, on=keys, how="left")
             .with_columns(pl.col("ends", "reps").fill_null(0)).sort(keys)
             .with_columns(pl.col("ends").cum_sum(reverse=True).over(["cohort", "segment"]).alias("retained_later"),
                           pl.col("reps").cum_sum().over(["cohort", "segment"]).alias("repeaters"))
             .select(*keys, "retained_later", "repeaters"))
    out = (grid.join(later, on=["cohort", "segment", "k"], how="left")
           .join(cells, on=["cohort", "segment", "k"], how="left")
           .with_columns(pl.col("active", "orders").fill_null(0), pl.col("revenue", "margin").fill_null(0.0),
                         pl.col("retained_later", "repeaters").fill_null(0),
                         ((pl.col("cohort") + pl.col("k") < now) | pl.lit(now_complete)).alias("complete"))
           .sort("cohort", "segment", "k"))
    starts = {c: period_start(c, grain) for c in out["cohort"].unique().to_list()}
    out = out.with_columns(pl.col("cohort").replace_strict(starts, return_dtype=pl.Date))
    return out.select(list(COHORT_COLUMNS)).cast(COHORT_COLUMNS)


def cohort_values(table: pl.DataFrame, metric: str) -> pl.DataFrame:
    """One value per cell for ``metric`` (see :data:`METRICS`), with what it is made
    of: columns cohort, segment, k, size, value, numerator, denominator, complete."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    t = table.sort("cohort", "segment", "k")
    g = ["cohort", "segment"]
    num = {
        "retention": pl.col("active").cast(pl.Float64),
        "unbounded": pl.col("retained_later").cast(pl.Float64),
        "repeat_rate": pl.col("repeaters").cast(pl.Float64),
        "revenue_per_customer": pl.col("revenue"),
        "cum_revenue_per_customer": pl.col("revenue").cum_sum().over(g),
        "cum_margin_per_customer": pl.col("margin").cum_sum().over(g),
        "net_revenue_retention": pl.col("revenue"),
    }[metric]
    den = (pl.col("revenue").first().over(g) if metric == "net_revenue_retention"
           else pl.col("size").cast(pl.Float64))
    return t.with_columns(num.alias("numerator"), den.alias("denominator")).with_columns(
        pl.when(pl.col("denominator") > 0).then(pl.col("numerator") / pl.col("denominator")).alias("value")
    ).select("cohort", "segment", "k", "size", "value", "numerator", "denominator", "complete")


def relative_to_previous(values: pl.DataFrame) -> pl.DataFrame:
    """Each cell's value over the same cohort's value one period earlier (k = 0 has
    none): "of those retained in k-1, how many are still here in k" for retention."""
    prev = pl.col("value").shift(1).over(["cohort", "segment"], order_by="k")
    return values.with_columns(pl.when(prev > 0).then(pl.col("value") / prev).alias("value"))


def average_curve(values: pl.DataFrame, *, weighted: bool = True, by_segment: bool = True,
                  share: bool = True) -> pl.DataFrame:
    """The mean over cohorts at each k, from complete cells only: weighted (sum of
    numerators over sum of denominators, every customer counts once) or simple (each
    cohort counts once). Columns: segment, k, value, low, high (95%: Wilson for a
    weighted share, Student's t over cohorts for a simple mean), cohorts, customers."""
    keys = ["segment", "k"] if by_segment else ["k"]
    done = values.filter(pl.col("complete") & pl.col("value").is_not_null())
    if not by_segment:
        done = done.with_columns(pl.lit("all").alias("segment"))
        keys = ["segment", "k"]
    agg = done.group_by(keys).agg(
        pl.col("numerator").sum().alias("num"), pl.col("denominator").sum().alias("den"),
        pl.col("value").mean().alias("simple"), pl.col("value").std().alias("sd"),
        pl.len().alias("cohorts"), pl.col("size").sum().alias("customers"),
    ).sort(keys)
    rows = []
    for r in agg.iter_rows(named=True):
        if weighted:
            value = r["num"] / r["den"] if r["den"] else None
            if share and r["den"]:
                lo, hi = wilson_interval(round(r["num"]), round(r["den"]))
            else:
                lo = hi = None
        else:
            value = r["simple"]
            lo, hi = mean_interval(value, r["sd"], r["cohorts"])
            if share and lo is not None:
                lo, hi = max(lo, 0.0), min(hi, 1.0)
        rows.append({"segment": r["segment"], "k": r["k"], "value": value, "low": lo, "high": hi,
                     "cohorts": r["cohorts"], "customers": r["customers"]})
    return pl.DataFrame(rows, schema={"segment": pl.Utf8, "k": pl.Int64, "value": pl.Float64, "low": pl.Float64,
                                      "high": pl.Float64, "cohorts": pl.Int64, "customers": pl.Int64})


def n_period_trend(values: pl.DataFrame, n: int) -> pl.DataFrame:
    """The value at k = ``n`` for every cohort that has completed period n ("is
    month-3 retention improving?"), in cohort order. Columns: cohort, segment, value,
    size."""
    return values.filter((pl.col("k") == n) & pl.col("complete")).select(
        "cohort", "segment", "value", "size").sort("segment", "cohort")


def trend_change(trend: pl.DataFrame, m: int = 3) -> dict[str, Any] | None:
    """How the period-n value moved across cohorts, for the trend's reading: the
    size-weighted mean of the earliest ``m`` cohorts against that of the latest ``m``
    (with fewer than 2m cohorts, the earliest cohort against the latest). Segments
    are pooled by cohort first (size-weighted). Returns early, late, change (late -
    early), first and last (the cohort ranges compared, as (from, to) dates) and
    cohorts (how many); None with no cohort, and change None with one cohort.

    Size weighting makes the pooled value the share of all those cohorts' customers
    (for shares) or revenue per customer of all of them (for money)."""
    rows = trend.filter(pl.col("value").is_not_null() & (pl.col("size") > 0))
    if rows.height == 0:
        return None
    pooled = rows.group_by("cohort").agg(
        ((pl.col("value") * pl.col("size")).sum() / pl.col("size").sum()).alias("value"),
        pl.col("size").sum()).sort("cohort")
    n = pooled.height
    if n == 1:
        c = pooled["cohort"][0]
        return {"early": None, "late": pooled["value"][0], "change": None, "first": (c, c), "last": (c, c),
                "cohorts": 1}
    take = m if n >= 2 * m else 1

    def mean(part: pl.DataFrame) -> float:
        return float((part["value"] * part["size"]).sum() / part["size"].sum())

    head, tail = pooled.head(take), pooled.tail(take)
    early, late = mean(head), mean(tail)
    return {"early": early, "late": late, "change": late - early,
            "first": (head["cohort"][0], head["cohort"][-1]), "last": (tail["cohort"][0], tail["cohort"][-1]),
            "cohorts": n}


def repeat_rates(table: pl.DataFrame) -> pl.DataFrame:
    """Repeat purchase rate to date per cohort and segment (the latest k of each
    cohort): columns cohort, segment, size, repeaters, rate, low, high (Wilson 95%)."""
    last = table.sort("k").group_by("cohort", "segment", maintain_order=True).last().sort("cohort", "segment")
    lows, highs = zip(*(wilson_interval(r, n) for r, n in zip(last["repeaters"], last["size"]))) if last.height else ((), ())
    return last.select("cohort", "segment", "size", "repeaters").with_columns(
        (pl.col("repeaters") / pl.col("size")).alias("rate"),
        pl.Series("low", lows, dtype=pl.Float64), pl.Series("high", highs, dtype=pl.Float64))


# ---------------------------------------------------------------------------------
# Activity: one pass over the orders, one row per customer, its periods as bits
# ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Activity:
    """Per customer (``keys``, ``segment``): the periods of ``grain`` it ordered in,
    as bits of ``active`` (bit i of the row = period ``p0 + i``), and, when asked for
    the flow, its active months (``months``, bit i = month ``m0 + i``) and the month
    starts at which it was in the customer base (``base``, same months). Built by
    :func:`activity` in one grouped pass; the cohorts, the flow, the lifecycle and
    the time to repeat are counted from it with NumPy."""

    grain: str
    p0: int
    nbits: int
    keys: np.ndarray
    segment: pl.Series
    active: np.ndarray
    m0: int = 0
    nmonths: int = 0
    nbase: int = 0
    months: np.ndarray | None = None
    base: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.keys)

    @cached_property
    def first_bit(self) -> np.ndarray:
        """Each customer's first active period, as a bit index (p0 + it = the period)."""
        return _lowest_bit(self.active) if self.size else np.zeros(0, np.int64)

    @cached_property
    def last_bit(self) -> np.ndarray:
        """Each customer's last active period, as a bit index."""
        return _highest_bit(self.active) if self.size else np.zeros(0, np.int64)


def _words(n: int) -> int:
    return max(1, -(-n // 64))


def _bit_sql(rel: str, nbits: int) -> list[str]:
    """Aggregates OR-ing bit ``rel`` (0 <= rel < nbits) into UBIGINT words."""
    if nbits <= 64:
        return [f"bit_or(1::UBIGINT << ({rel})::UBIGINT)"]
    return [f"bit_or(CASE WHEN ({rel}) BETWEEN {64 * j} AND {64 * j + 63} "
            f"THEN 1::UBIGINT << (({rel}) - {64 * j})::UBIGINT ELSE 0::UBIGINT END)" for j in range(_words(nbits))]


def _range_sql(lo: str, hi: str, nbits: int) -> list[str]:
    """Aggregates OR-ing bits ``lo`` .. ``hi`` - 1 (lo <= hi) into UBIGINT words:
    (2^hi - 1) xor (2^lo - 1) in one word; with several, the same with l and h
    clamped to each word."""
    if nbits <= 63:
        return [f"bit_or(xor((1::UBIGINT << ({hi})::UBIGINT) - 1::UBIGINT, (1::UBIGINT << ({lo})::UBIGINT) - 1::UBIGINT))"]
    out = []
    for j in range(_words(nbits)):
        lo_j, hi_j = (_low_mask(f"least(greatest(({x}) - {64 * j}, 0), 64)") for x in (lo, hi))
        out.append(f"bit_or(xor({hi_j}, {lo_j}))")
    return out


def _low_mask(n: str) -> str:
    """The word with bits 0 .. n - 1 set (0 <= n <= 64), without 128-bit integers (the
    same SQL runs on Spark, whose widest integer is 64 bits)."""
    return f"(CASE WHEN ({n}) >= 64 THEN ~CAST(0 AS UBIGINT) ELSE (1::UBIGINT << ({n})::UBIGINT) - 1::UBIGINT END)"


_ONE = np.uint64(1)
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.int64)


def _bit_counts(words: np.ndarray, nbits: int, groups: np.ndarray | None = None, n_groups: int = 1) -> np.ndarray:
    """(n_groups, 64 * words) counts of rows with each bit set, per group (``groups``
    holds each row's group number; None = one group), for bits below ``nbits`` (the
    rest are zero). Byte histograms times the bits of each byte value: one bincount
    per byte instead of unpacking a bit matrix."""
    n_words = words.shape[1]
    data = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    out = np.zeros((n_groups, 64 * n_words), np.int64)
    offset = 0 if groups is None else groups.astype(np.int64) * 256
    for j in range(min(-(-nbits // 8), 8 * n_words)):
        hist = np.bincount(offset + data[:, j], minlength=n_groups * 256).reshape(n_groups, 256)
        out[:, 8 * j:8 * j + 8] = hist @ _BYTE_BITS
    return out


def _lowest_bit(words: np.ndarray) -> np.ndarray:
    """Index of each row's lowest set bit (rows have at least one)."""
    j = (words != 0).argmax(axis=1)
    x = words[np.arange(len(words)), j]
    return j * 64 + np.bitwise_count((x & (~x + _ONE)) - _ONE).astype(np.int64)


def _highest_bit(words: np.ndarray) -> np.ndarray:
    """Index of each row's highest set bit (rows have at least one)."""
    j = words.shape[1] - 1 - (words[:, ::-1] != 0).argmax(axis=1)
    x = words[np.arange(len(words)), j].copy()
    for shift in (1, 2, 4, 8, 16, 32):
        x |= x >> np.uint64(shift)
    return j * 64 + np.bitwise_count(x).astype(np.int64) - 1


def _bit_at(words: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Each row's bit ``index[row]`` (False beyond the words)."""
    inside = index < 64 * words.shape[1]
    j = np.minimum(index // 64, words.shape[1] - 1)
    bit = (words[np.arange(len(words)), j] >> (index % 64).astype(np.uint64)) & _ONE
    return (bit == 1) & inside


def _shift_down(words: np.ndarray) -> np.ndarray:
    """Bit i of the result = bit i + 1 of ``words`` (across words)."""
    out = words >> _ONE
    out[:, :-1] |= words[:, 1:] << np.uint64(63)
    return out


def _shift_up(words: np.ndarray) -> np.ndarray:
    """Bit i of the result = bit i - 1 of ``words`` (the top bit falls off)."""
    out = words << _ONE
    out[:, 1:] |= words[:, :-1] >> np.uint64(63)
    return out


def _period_expr(col: pl.Expr, grain: str) -> pl.Expr:
    """The Polars twin of :func:`period_sql` for a datetime column."""
    if grain == "week":
        return ((col.dt.date() - pl.lit(_MONDAY)).dt.total_days() // 7).cast(pl.Int64)
    if grain == "month":
        return (col.dt.year().cast(pl.Int64) * 12 + col.dt.month().cast(pl.Int64) - 1)
    return (col.dt.year().cast(pl.Int64) * 4 + (col.dt.month().cast(pl.Int64) - 1) // 3)


def activity(store: Store, f: Filters, *, grain: str = "month", split: str = "none",
             values: tuple[str, ...] = (), flow: bool = False) -> Activity:
    """One grouped pass over ``f``'s completed orders (all history): per customer the
    bits of its active periods (and, with ``flow``, of its active months and of the
    month starts at which it was in the base: an order at t keeps the customer in the
    base at every month start in (t, t + W days]) and its segment for ``split``
    (kept to ``values`` when given)."""
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {GRAINS}, not {grain!r}")
    lo, hi = data_bounds(store)
    if lo is None:
        return Activity(grain=grain, p0=0, nbits=1, keys=np.zeros(0, np.int64), segment=pl.Series([], dtype=pl.Utf8),
                        active=np.zeros((0, 1), np.uint64))
    p0 = period_index(lo, grain)
    nbits = period_index(hi, grain) - p0 + 1
    m0 = period_index(lo, "month")
    nmonths = period_index(hi, "month") - m0 + 1
    # Bit i of base = in the base at the start of month m0 + i; the last order's
    # window ends in month(hi + W), so the base is known up to the start of the next.
    nbase = period_index(hi + timedelta(days=f.inactivity_days), "month") - m0 + 2
    extra = ("category",) if split == "first_category" else ()
    base, params = f.orders_sql(extra)
    params = {**params, "margin_rate": 0.0}
    q = f"({period_sql(grain, 'ordered_at')} - {p0})"
    aggs = [f"{a} AS a{j}" for j, a in enumerate(_bit_sql(q, nbits))]
    if flow:
        mq = f"({period_sql('month', 'ordered_at')} - {m0})"
        if grain != "month":
            aggs += [f"{a} AS m{j}" for j, a in enumerate(_bit_sql(mq, nmonths))]
        params["w"] = int(f.inactivity_days)
        exit_q = f"({period_sql('month', '(CAST(ordered_at AS DATE) + CAST($w AS INTEGER))')} - {m0})"
        aggs += [f"{a} AS b{j}" for j, a in enumerate(_range_sql(f"{mq} + 1", f"{exit_q} + 1", nbase))]
    if extra:
        aggs.append("arg_min(category, ordered_at) AS first_category")
    seg, joins = _segment_sql(split)
    keep = f" WHERE {seg} IN ({_bind(params, 'seg', values)})" if values and split != "none" else ""
    sql = f"""
WITH o AS ({base}),
cu AS (SELECT customer_key, {', '.join(aggs)} FROM o GROUP BY customer_key)
SELECT cu.* EXCLUDE ({'first_category' if extra else 'customer_key'}), cu.customer_key, {seg} AS segment
FROM cu {joins}{keep}"""
    raw = store.query(sql, params)

    def words(prefix: str, n: int) -> np.ndarray:
        cols = [f"{prefix}{j}" for j in range(_words(n))]
        return np.column_stack([raw[c].to_numpy() for c in cols]).astype(np.uint64) if raw.height else \
            np.zeros((0, len(cols)), np.uint64)

    active = words("a", nbits)
    months = None
    base_bits = None
    if flow:
        months = active if grain == "month" else words("m", nmonths)
        base_bits = words("b", nbase)
    return Activity(grain=grain, p0=p0, nbits=nbits, keys=raw["customer_key"].to_numpy().astype(np.int64),
                    segment=raw["segment"].cast(pl.Utf8), active=active, m0=m0, nmonths=nmonths,
                    nbase=nbase if flow else 0, months=months, base=base_bits)


def _first_entry_counts(act: Activity, c0: int, c1: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """From the bits: (cells: cohort, segment, k, active; cust: cohort, segment,
    last_k, repeat_k (null), customers; members: see :func:`_members`) for the
    cohorts c0..c1 (first-time entry). Counted per (cohort, segment) group with
    bincounts."""
    members, keep = _members(act, c0, c1)
    if members.height == 0:
        return (pl.DataFrame(schema={"cohort": pl.Int64, "segment": pl.Utf8, "k": pl.Int64, "active": pl.Int64}),
                pl.DataFrame(schema={"cohort": pl.Int64, "segment": pl.Utf8, "last_k": pl.Int64,
                                     "repeat_k": pl.Int64, "customers": pl.Int64}), members)
    seg = members["segment"]
    if seg.n_unique() == 1:
        names, seg_code = seg.head(1), np.zeros(members.height, np.int64)
    else:
        names = seg.unique().sort()
        seg_code = seg.cast(pl.Enum(names.to_list())).to_physical().to_numpy().astype(np.int64)
    n_seg = len(names)
    rel = members["cohort"].to_numpy() - act.p0
    groups = rel * n_seg + seg_code
    n_groups = (int(rel.max()) + 1) * n_seg
    # Active customers per group and period: bit counts per group.
    counts = _bit_counts(act.active[keep], act.nbits, groups, n_groups)
    g, bit = np.nonzero(counts)
    cells = pl.DataFrame({"cohort": g // n_seg + act.p0, "segment": names.gather(g % n_seg),
                          "k": bit - g // n_seg, "active": counts[g, bit]})
    # Customers per group and last active k.
    ends = np.bincount(groups * act.nbits + members["last_k"].to_numpy(), minlength=n_groups * act.nbits)
    idx = np.nonzero(ends)[0]
    g = idx // act.nbits
    cust = pl.DataFrame({"cohort": g // n_seg + act.p0, "segment": names.gather(g % n_seg),
                         "last_k": idx % act.nbits, "repeat_k": pl.Series([None] * len(idx), dtype=pl.Int64),
                         "customers": ends[idx]})
    return cells, cust, members


def _members(act: Activity, c0: int, c1: int) -> tuple[pl.DataFrame, np.ndarray]:
    """The customers whose first period lies in c0..c1: (customer_key, cohort (a
    period index), segment, last_k (their last active period minus the cohort's)),
    and the mask of their rows in ``act``."""
    first = act.first_bit + act.p0
    keep = (first >= c0) & (first <= c1)
    last = act.last_bit[keep] + act.p0
    members = pl.DataFrame({
        "customer_key": act.keys[keep], "cohort": first[keep].astype(np.int64),
        "segment": act.segment.filter(pl.Series(keep)), "last_k": (last - first[keep]).astype(np.int64),
    }, schema={"customer_key": pl.Int64, "cohort": pl.Int64, "segment": pl.Utf8, "last_k": pl.Int64})
    return members, keep


def second_orders(store: Store, f: Filters, act: Activity, members: pl.DataFrame, *,
                  margin_rate: float = DEFAULT_MARGIN_RATE) -> pl.DataFrame:
    """The first and second completed order of each customer in ``members``
    (customer_key, cohort): columns customer_key, first_at, second_at (null with one
    order). Only orders from the start of the earliest member cohort are read: a
    cohort's customers have none before it."""
    if members.height == 0:
        return pl.DataFrame(schema={"customer_key": pl.Int64, "first_at": pl.Datetime("us"),
                                    "second_at": pl.Datetime("us")})
    base, params = f.orders_sql()
    params = {**params, "margin_rate": margin_rate,
              "since": instant(period_start(int(members["cohort"].min()), act.grain))}
    sql = f"""
WITH o AS ({base}),
m AS (SELECT o.customer_key, o.ordered_at FROM o JOIN k ON k.customer_key = o.customer_key
      WHERE o.ordered_at >= $since),
f AS (SELECT customer_key, min(ordered_at) AS first_at FROM m GROUP BY customer_key)
SELECT CAST(f.customer_key AS BIGINT) AS customer_key, f.first_at,
       CASE WHEN count(*) FILTER (WHERE m.ordered_at = f.first_at) >= 2 THEN f.first_at
            ELSE min(m.ordered_at) FILTER (WHERE m.ordered_at > f.first_at) END AS second_at
FROM f JOIN m ON m.customer_key = f.customer_key GROUP BY f.customer_key, f.first_at"""
    return store.query(sql, params, tables={"k": members.select("customer_key")})


def _money_cells(store: Store, f: Filters, act: Activity, members: pl.DataFrame, *,
                 margin_rate: float) -> pl.DataFrame:
    """Orders, revenue and margin of each cohort's customers per period k."""
    if members.height == 0:
        return pl.DataFrame(schema={"cohort": pl.Int64, "segment": pl.Utf8, "k": pl.Int64, "orders": pl.Int64,
                                    "revenue": pl.Float64, "margin": pl.Float64})
    base, params = f.orders_sql()
    params = {**params, "margin_rate": margin_rate,
              "since": instant(period_start(int(members["cohort"].min()), act.grain))}
    sql = f"""
WITH o AS ({base})
SELECT k.cohort, k.segment, CAST({period_sql(act.grain, 'o.ordered_at')} - k.cohort AS BIGINT) AS k,
       count(*) AS orders, sum(o.revenue) AS revenue, sum(o.margin) AS margin
FROM o JOIN k ON k.customer_key = o.customer_key WHERE o.ordered_at >= $since GROUP BY ALL"""
    return store.query(sql, params, tables={"k": members.select("customer_key", "cohort", "segment")})




# ---------------------------------------------------------------------------------
# The customer-base flow and the lifecycle split (monthly)
# ---------------------------------------------------------------------------------
FLOW_COLUMNS = {"month": pl.Date, "base_start": pl.Int64, "new": pl.Int64, "reactivated": pl.Int64,
                "churned": pl.Int64, "base_end": pl.Int64, "churn_rate": pl.Float64, "retention_rate": pl.Float64,
                "classic_retention": pl.Float64}
LIFECYCLE_COLUMNS = {"month": pl.Date, "new": pl.Int64, "returning": pl.Int64, "resurrected": pl.Int64,
                     "dormant": pl.Int64, "complete": pl.Boolean}


def base_flow(store: Store, f: Filters, *, as_of: date, act: Activity | None = None
              ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(flow, lifecycle) for the complete months of ``f``'s period (the month holding
    ``as_of`` is left out of the flow unless it ends on ``as_of``; the lifecycle keeps
    it, flagged incomplete). See the module docstring for the definitions; the flow
    satisfies ``base_end = base_start + new + reactivated - churned`` on every row.

    Counted from :func:`activity` with ``flow=True`` (reused when given): S is the
    number of customers with their base bit set at the month's start, churned those
    whose bit goes from 1 to 0 at the next start, new those whose first month it is
    and whose bit is 1 at the next start, reactivated the other 0-to-1 changes."""
    if act is None or act.base is None or act.months is None:
        act = activity(store, f, flow=True)
    start_m, now = period_index(f.start, "month"), period_index(min(f.end, as_of), "month")
    last_full = now if period_end(now, "month") <= as_of else now - 1
    zeros = np.zeros(1, np.int64)
    if act.size:
        inside, active = act.base, act.months
        first = _lowest_bit(active)
        data_from = act.m0 + int(first.min())
        following = _shift_down(inside)  # bit i = in the base at the start of month i + 1
        in_base = _bit_counts(inside, act.nbase)[0]
        entered = _bit_counts(~inside & following, act.nbase)[0]
        left = entered - np.r_[in_base[1:] - in_base[:-1], 0]  # E - S = entered - left
        new_in = np.bincount(first[_bit_at(inside, first + 1)], minlength=act.nbase)
        n_active = _bit_counts(active, act.nmonths)[0]
        returning = _bit_counts(active & _shift_up(active), act.nmonths)[0]
        # dormant in i: active in i - 1 but not in i
        dormant = np.r_[0, n_active[:-1] - returning[1:]]
        first_month = np.bincount(first, minlength=act.nmonths)
    else:
        data_from = start_m
        in_base = entered = left = new_in = n_active = returning = dormant = first_month = zeros

    def get(arr: np.ndarray, m: int) -> int:
        i = m - act.m0
        return int(arr[i]) if 0 <= i < len(arr) else 0

    flow_rows = []
    for m in range(max(start_m, data_from), last_full + 1) if act.size else ():
        s, churned = get(in_base, m), get(left, m)
        new = get(new_in, m)
        back = get(entered, m) - new
        e = get(in_base, m + 1)
        churn = churned / s if s else None
        flow_rows.append({"month": period_start(m, "month"), "base_start": s, "new": new, "reactivated": back,
                          "churned": churned, "base_end": e, "churn_rate": churn,
                          "retention_rate": None if churn is None else 1 - churn,
                          "classic_retention": (e - new - back) / s if s else None})
    life_rows = []
    for m in range(start_m, now + 1):
        new, ret = get(first_month, m), get(returning, m)
        life_rows.append({"month": period_start(m, "month"), "new": new, "returning": ret,
                          "resurrected": get(n_active, m) - new - ret, "dormant": get(dormant, m),
                          "complete": m <= last_full})
    return (pl.DataFrame(flow_rows, schema=FLOW_COLUMNS), pl.DataFrame(life_rows, schema=LIFECYCLE_COLUMNS))


# ---------------------------------------------------------------------------------
# Time to repeat
# ---------------------------------------------------------------------------------
def time_to_repeat(store: Store, f: Filters, *, split: str = "none", as_of: date, act: Activity | None = None,
                   second: pl.DataFrame | None = None) -> pl.DataFrame:
    """Kaplan-Meier curves of the time to a second purchase, per segment, for the
    customers whose first completed order falls in ``f``'s period: columns segment,
    days, at_risk, events, censored, survival, low, high, repeated (1 - survival: the
    share who have bought again by that day). Days are whole days from the first
    order to the second; a customer with one order is censored at the end of
    ``as_of``. ``act`` and ``second`` (:func:`second_orders` of its members) are
    reused when given."""
    if act is None:
        act = activity(store, f, split=split)
    members, *_ = _members(act, period_index(f.start, act.grain), period_index(f.end, act.grain))
    if second is None:
        second = second_orders(store, f, act, members)
    end_at = instant(as_of + timedelta(days=1))
    day_us = 86_400_000_000
    times = (members.select("customer_key", "segment").join(second, on="customer_key")
             .filter((pl.col("first_at") >= instant(f.start)) & (pl.col("first_at") < instant(f.end + timedelta(days=1))))
             .select("segment", ((pl.col("second_at").fill_null(end_at) - pl.col("first_at")).dt.total_microseconds()
                                 // day_us).cast(pl.Int64).alias("days"),
                     pl.col("second_at").is_not_null().alias("event"))
             .group_by("segment", "days", "event").agg(pl.len().alias("n")))
    frames = []
    for (segment,), part in sorted(times.partition_by("segment", as_dict=True).items()):
        events = part.filter(pl.col("event")).select("days", "n")
        censored = part.filter(~pl.col("event")).select("days", "n")
        km = kaplan_meier(dict(events.iter_rows()), dict(censored.iter_rows()))
        frames.append(km.with_columns(pl.lit(segment).alias("segment")))
    if not frames:
        return pl.DataFrame(schema={"segment": pl.Utf8, **KM_COLUMNS, "repeated": pl.Float64})
    out = pl.concat(frames).select("segment", *KM_COLUMNS)
    return out.with_columns((1 - pl.col("survival")).alias("repeated")).sort("segment", "days")


KM_COLUMNS = {"days": pl.Int64, "at_risk": pl.Int64, "events": pl.Int64, "censored": pl.Int64,
              "survival": pl.Float64, "low": pl.Float64, "high": pl.Float64}


def kaplan_meier(events: dict[int, int], censored: dict[int, int], z: float = Z95) -> pl.DataFrame:
    """The Kaplan-Meier estimate S(t) = prod over event times t_i <= t of
    (1 - d_i / n_i), from counts of events and censorings per time (a censoring at t
    counts as still at risk at t). Greenwood's variance, and the log-log interval
    exp(-exp(log(-log S) +- z * se)) with se^2 = sum d / (n (n - d)) / log(S)^2.
    One row per time with an event or a censoring; S and the interval hold from
    that time until the next."""
    times = sorted(set(events) | set(censored))
    n = sum(events.values()) + sum(censored.values())
    s, green = 1.0, 0.0
    rows = []
    for t in times:
        d, c = events.get(t, 0), censored.get(t, 0)
        at_risk = n
        if d:
            s *= 1 - d / at_risk
            if at_risk > d:
                green += d / (at_risk * (at_risk - d))
        if 0 < s < 1 and green > 0:
            se = math.sqrt(green) / abs(math.log(s))
            lo = math.exp(-math.exp(math.log(-math.log(s)) + z * se))
            hi = math.exp(-math.exp(math.log(-math.log(s)) - z * se))
        elif s == 1.0:
            lo = hi = 1.0
        else:
            lo = hi = None
        rows.append({"days": t, "at_risk": at_risk, "events": d, "censored": c, "survival": s, "low": lo, "high": hi})
        n -= d + c
    return pl.DataFrame(rows, schema=KM_COLUMNS)


def gap_summary(store: Store, f: Filters, *, sample_every: int = 1) -> dict[str, Any]:
    """The days between consecutive completed orders of the same customer, for pairs
    whose later order falls in ``f``'s period: a histogram (``bins``: days, n) and the
    quantiles p50, p75, p90, p95. ``sample_every`` > 1 keeps customers whose key is
    divisible by it (a fixed, even sample for very large bases)."""
    base, params = f.orders_sql()
    params = {**params, "margin_rate": 0.0, "s": f.start, "e": f.end + timedelta(days=1),
              "every": max(int(sample_every), 1)}
    sql = f"""
WITH o AS ({base}),
g AS (
    SELECT ordered_at, date_diff('day', CAST(lag(ordered_at) OVER (PARTITION BY customer_key ORDER BY ordered_at) AS DATE),
                                 CAST(ordered_at AS DATE)) AS gap
    FROM o WHERE customer_key % $every = 0
)
SELECT gap, count(*) AS n FROM g WHERE gap IS NOT NULL AND ordered_at >= $s AND ordered_at < $e GROUP BY gap ORDER BY gap"""
    bins = store.query(sql, params)
    total = int(bins["n"].sum()) if bins.height else 0
    out: dict[str, Any] = {"bins": bins, "pairs": total, "sample_every": max(int(sample_every), 1)}
    if total:
        cum = np.cumsum(bins["n"].to_numpy())
        gaps = bins["gap"].to_numpy()
        for q in (50, 75, 90, 95):
            out[f"p{q}"] = int(gaps[np.searchsorted(cum, math.ceil(total * q / 100))])
    return out


def suggested_window(gaps: dict[str, Any]) -> int | None:
    """The inactivity window the data suggests: the 90th percentile of the days
    between a customer's consecutive orders (nine in ten repeat purchases come
    sooner), kept within 7..730 days. None without repeat purchases."""
    p90 = gaps.get("p90")
    if p90 is None:
        return None
    return int(min(max(p90, 7), 730))


def gap_sample_every(customers: int, *, target: int = 250_000) -> int:
    """The 1-in-k customer sample :func:`gap_summary` needs to read about ``target``
    customers' orders (1 below that)."""
    return max(1, -(-int(customers) // target))


@dataclass(frozen=True)
class RetentionView:
    """Everything the Retention page shows for one set of filters and cohort
    controls: the cohort table, the monthly flow and lifecycle, the Kaplan-Meier
    curves of the time to repeat (by the same segments) and the gaps."""

    table: pl.DataFrame
    flow: pl.DataFrame
    lifecycle: pl.DataFrame
    km: pl.DataFrame
    gaps: dict[str, Any]
    customers: int


def retention_view(store: Store, f: Filters, spec: CohortSpec, *, as_of: date, money: bool = False,
                   margin_rate: float = DEFAULT_MARGIN_RATE) -> RetentionView:
    """One pass per customer (:func:`activity` with the flow bits), the second orders
    of the cohorts' customers, and the gaps on a customer sample when the base is
    large (:func:`gap_sample_every`); ``money`` adds the orders, revenue and margin
    per cell."""
    act = activity(store, f, grain=spec.grain, split=spec.split, values=spec.values, flow=True)
    members, _ = _members(act, period_index(f.start, spec.grain), period_index(f.end, spec.grain))
    second = second_orders(store, f, act, members, margin_rate=margin_rate)
    table = cohort_table(store, f, spec, as_of=as_of, margin_rate=margin_rate, money=money, act=act, second=second)
    flow, life = base_flow(store, f, as_of=as_of, act=act)
    km = time_to_repeat(store, f, split=spec.split, as_of=as_of, act=act, second=second)
    gaps = gap_summary(store, f, sample_every=gap_sample_every(act.size))
    return RetentionView(table=table, flow=flow, lifecycle=life, km=km, gaps=gaps, customers=act.size)


# ---------------------------------------------------------------------------------
# The customers behind a cell
# ---------------------------------------------------------------------------------
def cell_customers(store: Store, f: Filters, spec: CohortSpec, *, cohort: date, k: int, later: bool = False,
                   segment: str | None = None, limit: int = 5000) -> pl.DataFrame:
    """The customers of cohort ``cohort`` (first-time entry) who ordered in period k
    (or, with ``later``, in k or after), masked for display and export: customer_id,
    name, email and phone masked; region, acquisition channel, first order, orders and
    revenue in period k (or from k on). At most ``limit`` rows, largest revenue
    first."""
    base, params = f.orders_sql()
    c = period_index(cohort, spec.grain)
    p = period_sql(spec.grain, "ordered_at")
    split = "none" if spec.split == "first_category" else spec.split
    seg, joins = _segment_sql(split)
    if split in ("acquisition_channel", "region"):
        joins = ""  # customers is joined as c already
    params = {**params, "margin_rate": 0.0, "c": c, "k": int(k), "limit": int(limit)}
    seg_cond = ""
    if segment is not None and split != "none":
        params["segment"] = segment
        seg_cond = f" AND {seg} = $segment"
    rel = ">=" if later else "="
    members = ("SELECT customer_key, min(q) AS c, min(first_at) AS first_at FROM a GROUP BY 1 HAVING min(q) = $c"
               if spec.entry == "first" else
               "SELECT customer_key, q AS c, first_at FROM a WHERE q = $c")
    sql = f"""
WITH o AS ({base}),
a AS (SELECT customer_key, {p} AS q, count(*) AS n, sum(revenue) AS rev, min(ordered_at) AS first_at
      FROM o GROUP BY 1, 2),
cu AS ({members}),
hit AS (SELECT a.customer_key, sum(a.n) AS orders, sum(a.rev) AS revenue FROM a JOIN cu USING (customer_key)
        WHERE a.q - cu.c {rel} $k GROUP BY 1)
SELECT c.customer_id, c.name, c.email, c.phone, c.region, c.acquisition_channel, cu.first_at AS first_order,
       hit.orders, hit.revenue
FROM hit JOIN cu ON cu.customer_key = hit.customer_key
LEFT JOIN customers c ON c.customer_key = hit.customer_key
{joins}
WHERE TRUE{seg_cond}
ORDER BY hit.revenue DESC, c.customer_id LIMIT $limit"""
    raw = store.query(sql, params)
    return pymap.columns(raw, {"customer_id": mask_id, "name": mask_name, "email": mask_email, "phone": mask_phone})


def mask_id(v: str | None) -> str | None:
    """Keep the first two and last two characters: ``KH0000052`` -> ``KH•••••52``."""
    if v is None:
        return None
    return v if len(v) <= 4 else v[:2] + "•" * (len(v) - 4) + v[-2:]


def mask_name(v: str | None) -> str | None:
    """Given names to initials, the family name kept: ``Nguyễn Văn An`` -> ``Nguyễn V. A.``."""
    if not v:
        return v
    parts = v.split()
    return " ".join([parts[0], *(p[0] + "." for p in parts[1:])])


def mask_email(v: str | None) -> str | None:
    """The first letter and the domain: ``lan.nguyen@example.vn`` -> ``l***@example.vn``."""
    if not v or "@" not in v:
        return None if not v else "***"
    user, domain = v.split("@", 1)
    return v if user.endswith("***") else f"{user[:1]}***@{domain}"


def mask_phone(v: str | None) -> str | None:
    """The first two and last three digits, in the local form: ``0912345678`` and
    ``+84 912 345 678`` -> ``09xx xxx 678``; shorter numbers keep only their last
    three digits."""
    if not v or re.fullmatch(r"\d\dxx xxx \d{3}|x*\d{1,3}", v):  # empty, or masked already
        return v
    digits = "".join(ch for ch in v if ch.isdigit())
    if digits.startswith("84") and len(digits) >= 11:
        digits = "0" + digits[2:]
    if len(digits) < 8:
        return "x" * max(len(digits) - 3, 0) + digits[-3:]
    return f"{digits[:2]}xx xxx {digits[-3:]}"


def combine_segments(table: pl.DataFrame) -> pl.DataFrame:
    """The cohort table with its segments added together (one 'all' row per cohort
    and k): what the heatmap shows when the cohorts are split."""
    sums = ["size", "active", "retained_later", "repeaters", "orders", "revenue", "margin"]
    return (table.group_by("cohort", "k").agg(*(pl.col(c).sum() for c in sums), pl.col("complete").all())
            .with_columns(pl.lit("all").alias("segment")).select(list(COHORT_COLUMNS)).cast(COHORT_COLUMNS)
            .sort("cohort", "k"))
