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
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from data.store import Store
from metrics.filters import Filters, _bind, instant
from metrics.kpis import DEFAULT_MARGIN_RATE
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
                 margin_rate: float = DEFAULT_MARGIN_RATE) -> pl.DataFrame:
    """Every mature cell of the cohort triangle, one row per (cohort, segment, k).

    Columns: cohort (first day of the cohort period), segment ('all' when not split),
    k (periods since the cohort's), size (cohort customers), active (with an order in
    period k), retained_later (with an order in k or later), repeaters (two or more
    orders by the end of k), orders, revenue, margin (in period k, of the cohort's
    customers), complete (period k has ended by ``as_of``, the last day of data).
    Cells beyond ``as_of`` are absent (immature), not zero.
    """
    raw = store.query(*cohort_sql(f, spec, margin_rate=margin_rate))
    return shape_cohorts(raw, grain=spec.grain, as_of=as_of)


def shape_cohorts(raw: pl.DataFrame, *, grain: str, as_of: date) -> pl.DataFrame:
    """Turn the ``cell`` and ``cust`` rows of :func:`cohort_sql` into the dense,
    mature triangle described in :func:`cohort_table`."""
    if raw.height == 0:
        return pl.DataFrame(schema=COHORT_COLUMNS)
    now = period_index(as_of, grain)
    now_complete = period_end(now, grain) <= as_of
    cells = raw.filter(pl.col("part") == "cell").select(
        pl.col("cohort").cast(pl.Int64), "segment", pl.col("k").cast(pl.Int64),
        pl.col("customers").cast(pl.Int64).alias("active"), pl.col("orders").cast(pl.Int64),
        pl.col("revenue").cast(pl.Float64), pl.col("margin").cast(pl.Float64))
    cust = raw.filter(pl.col("part") == "cust").select(
        pl.col("cohort").cast(pl.Int64), "segment", pl.col("k").cast(pl.Int64).alias("last_k"),
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


def repeat_rates(table: pl.DataFrame) -> pl.DataFrame:
    """Repeat purchase rate to date per cohort and segment (the latest k of each
    cohort): columns cohort, segment, size, repeaters, rate, low, high (Wilson 95%)."""
    last = table.sort("k").group_by("cohort", "segment", maintain_order=True).last().sort("cohort", "segment")
    lows, highs = zip(*(wilson_interval(r, n) for r, n in zip(last["repeaters"], last["size"]))) if last.height else ((), ())
    return last.select("cohort", "segment", "size", "repeaters").with_columns(
        (pl.col("repeaters") / pl.col("size")).alias("rate"),
        pl.Series("low", lows, dtype=pl.Float64), pl.Series("high", highs, dtype=pl.Float64))


# ---------------------------------------------------------------------------------
# The customer-base flow and the lifecycle split (monthly)
# ---------------------------------------------------------------------------------
FLOW_COLUMNS = {"month": pl.Date, "base_start": pl.Int64, "new": pl.Int64, "reactivated": pl.Int64,
                "churned": pl.Int64, "base_end": pl.Int64, "churn_rate": pl.Float64, "retention_rate": pl.Float64,
                "classic_retention": pl.Float64}
LIFECYCLE_COLUMNS = {"month": pl.Date, "new": pl.Int64, "returning": pl.Int64, "resurrected": pl.Int64,
                     "dormant": pl.Int64, "complete": pl.Boolean}


def flow_sql(f: Filters) -> tuple[str, dict[str, Any]]:
    """Per customer and active month q (ordered by q): the month starts at which the
    customer is in the base because of q's last order, ``[q + 1, min(next q,
    month(last order + W))]``, and whether the customer was already in the base at
    q's start. Aggregated to counts by month (``kind``): spell_start (entered the
    base during the month; ``first`` marks a first order ever), spell_end (in the
    base at the month's start, gone at the next), spell_end_in_month (carried in,
    ordered, and still gone by the next month's start), new / returning /
    resurrected (active in the month), dormant (the month after an active month
    without an order)."""
    base, params = f.orders_sql()
    params = {**params, "margin_rate": 0.0, "w": f.inactivity_days}
    mi = "CAST(year({x}) * 12 + month({x}) - 1 AS INTEGER)"
    exit_of = lambda x: mi.format(x=f"({x} + to_days(CAST($w AS INTEGER)))")  # noqa: E731
    sql = f"""
WITH o AS ({base}),
a AS (SELECT customer_key, {mi.format(x='ordered_at')} AS q, max(ordered_at) AS last_at FROM o GROUP BY 1, 2),
s AS (
    SELECT customer_key, q, {exit_of('last_at')} AS out_q,
           lag(q) OVER w AS prev_q, {exit_of('lag(last_at) OVER w')} AS prev_out_q,
           lead(q) OVER w AS next_q
    FROM a WINDOW w AS (PARTITION BY customer_key ORDER BY q)
),
r AS (
    SELECT *, least(coalesce(next_q, out_q), out_q) AS range_to,
           -- in the base at q's start (the previous spell reaches q)
           prev_q IS NOT NULL AND prev_out_q >= q AS carried_in
    FROM s
)
SELECT 'spell_start' AS kind, q AS month, prev_q IS NULL AS first, count(*) AS n FROM r
WHERE range_to >= q + 1 AND NOT carried_in GROUP BY ALL
UNION ALL
SELECT 'spell_end', range_to, NULL, count(*) FROM r
WHERE range_to >= q + 1 AND (next_q IS NULL OR out_q < next_q) GROUP BY ALL
UNION ALL
SELECT 'spell_end_in_month', q, NULL, count(*) FROM r
WHERE range_to < q + 1 AND carried_in GROUP BY ALL
UNION ALL
SELECT CASE WHEN prev_q IS NULL THEN 'new' WHEN prev_q = q - 1 THEN 'returning' ELSE 'resurrected' END,
       q, NULL, count(*) FROM r GROUP BY ALL
UNION ALL
SELECT 'dormant', q + 1, NULL, count(*) FROM r WHERE next_q IS NULL OR next_q > q + 1 GROUP BY ALL"""
    return sql, params


def base_flow(store: Store, f: Filters, *, as_of: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(flow, lifecycle) for the complete months of ``f``'s period (the month holding
    ``as_of`` is left out of the flow unless it ends on ``as_of``; the lifecycle keeps
    it, flagged incomplete). See the module docstring for the definitions; the flow
    satisfies ``base_end = base_start + new + reactivated - churned`` on every row."""
    raw = store.query(*flow_sql(f))
    return shape_flow(raw, start=f.start, end=f.end, as_of=as_of)


def shape_flow(raw: pl.DataFrame, *, start: date, end: date, as_of: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    m0, now = period_index(start, "month"), period_index(min(end, as_of), "month")
    last_full = now if period_end(now, "month") <= as_of else now - 1
    counts: dict[str, dict[int, int]] = {}
    for kind, month, first, n in raw.iter_rows():
        key = kind if kind != "spell_start" else ("start_new" if first else "start_back")
        bucket = counts.setdefault(key, {})
        bucket[month] = bucket.get(month, 0) + n
    get = lambda kind, m: counts.get(kind, {}).get(m, 0)  # noqa: E731
    # A spell that starts in month q puts the customer in the base from q + 1 on; one
    # that ends at range_to takes them out after it: in the base at range_to's start,
    # gone at the next month's start, so churned in month range_to. A customer
    # carried in whose own month's order expires within the month churns in q.
    months = sorted(set().union(*(d.keys() for d in counts.values()))) if counts else []
    flow_rows = []
    if months:
        base = 0
        for m in range(min(months), last_full + 1):
            new, back = get("start_new", m), get("start_back", m)
            churned = get("spell_end", m) + get("spell_end_in_month", m)
            end_base = base + new + back - churned
            if m >= m0:
                churn = churned / base if base else None
                flow_rows.append({
                    "month": period_start(m, "month"), "base_start": base, "new": new, "reactivated": back,
                    "churned": churned, "base_end": end_base, "churn_rate": churn,
                    "retention_rate": None if churn is None else 1 - churn,
                    "classic_retention": (end_base - new - back) / base if base else None,
                })
            base = end_base
    life_rows = []
    for m in range(m0, now + 1):
        life_rows.append({"month": period_start(m, "month"), "new": get("new", m), "returning": get("returning", m),
                          "resurrected": get("resurrected", m), "dormant": get("dormant", m),
                          "complete": m <= last_full})
    return (pl.DataFrame(flow_rows, schema=FLOW_COLUMNS), pl.DataFrame(life_rows, schema=LIFECYCLE_COLUMNS))


# ---------------------------------------------------------------------------------
# Time to repeat
# ---------------------------------------------------------------------------------
def repeat_times_sql(f: Filters, split: str) -> tuple[str, dict[str, Any]]:
    """Per segment and whole day: customers whose second order came that many days
    after the first (event) or who, that many days after their first order, reached
    the end of the data with one order (censored). Customers acquired in ``f``'s
    period."""
    extra = ("category",) if split == "first_category" else ()
    base, params = f.orders_sql(extra)
    seg, joins = _segment_sql(split)
    params = {**params, "margin_rate": 0.0, "s": f.start, "e": f.end + timedelta(days=1)}
    first_cat = ", arg_min(category, ordered_at) AS first_category" if extra else ""
    sql = f"""
WITH o AS ({base}),
cu AS (
    SELECT customer_key, min(ordered_at, 2) AS two{first_cat} FROM o GROUP BY customer_key
    HAVING min(ordered_at) >= $s AND min(ordered_at) < $e
)
SELECT {seg} AS segment,
       CAST(floor(date_diff('second', cu.two[1], coalesce(cu.two[2], CAST($end_at AS TIMESTAMP))) / 86400)
            AS INTEGER) AS days,
       len(cu.two) >= 2 AS event, count(*) AS n
FROM cu {joins} GROUP BY ALL"""
    return sql, params


def time_to_repeat(store: Store, f: Filters, *, split: str = "none", as_of: date) -> pl.DataFrame:
    """Kaplan-Meier curves of the time to a second purchase, per segment: columns
    segment, days, at_risk, events, censored, survival, low, high, repeated (1 -
    survival: the share who have bought again by that day)."""
    sql, params = repeat_times_sql(f, split)
    raw = store.query(sql, {**params, "end_at": instant(as_of + timedelta(days=1))})
    frames = []
    for (segment,), part in raw.partition_by("segment", as_dict=True).items():
        events = part.filter(pl.col("event")).group_by("days").agg(pl.col("n").sum())
        censored = part.filter(~pl.col("event")).group_by("days").agg(pl.col("n").sum())
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
    return raw.with_columns(
        pl.col("customer_id").map_elements(mask_id, return_dtype=pl.Utf8),
        pl.col("name").map_elements(mask_name, return_dtype=pl.Utf8),
        pl.col("email").map_elements(mask_email, return_dtype=pl.Utf8),
        pl.col("phone").map_elements(mask_phone, return_dtype=pl.Utf8),
    )


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
    """``lan.nguyen@example.vn`` -> ``l•••@example.vn``."""
    if not v or "@" not in v:
        return None if not v else "•••"
    user, domain = v.split("@", 1)
    return f"{user[:1]}•••@{domain}"


def mask_phone(v: str | None) -> str | None:
    """The last three digits only: ``0912345678`` -> ``•••••••678``."""
    if not v:
        return v
    return "•" * max(len(v) - 3, 0) + v[-3:]


def combine_segments(table: pl.DataFrame) -> pl.DataFrame:
    """The cohort table with its segments added together (one 'all' row per cohort
    and k): what the heatmap shows when the cohorts are split."""
    sums = ["size", "active", "retained_later", "repeaters", "orders", "revenue", "margin"]
    return (table.group_by("cohort", "k").agg(*(pl.col(c).sum() for c in sums), pl.col("complete").all())
            .with_columns(pl.lit("all").alias("segment")).select(list(COHORT_COLUMNS)).cast(COHORT_COLUMNS)
            .sort("cohort", "k"))
