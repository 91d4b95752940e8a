"""Headline KPIs for the Overview: per period, with a comparison, and per month.

Definitions (shared/DESIGN.md; also in metrics/catalogue.py):

- **Completed orders** are the only purchases; cancelled and refunded orders never count.
- **Active** in a window: at least one completed order in it.
- **New** in a window: the customer's first completed order (among orders matching the
  filters) falls in it.
- **Customer base at an instant t**: customers with a completed order in
  ``[t - W days, t)``, W the inactivity window (default 90). The base at the start of a
  period ``[s, e]`` is taken at ``s 00:00``, at its end at ``(e + 1 day) 00:00``.
- **Churn rate** of a period: customers in the base at its start who are not in the base
  at its end, over the base at its start. **Retention rate** = 1 - churn rate, which
  equals the classic ``(E - N) / S`` where N are the customers in the base at the end
  who were not in it at the start (new and reactivated).
- **Repeat purchase rate**: of the customers active in the period, the share with two or
  more completed orders in total by the end of the period.
- **AOV** = revenue / orders; **purchase frequency** = orders / active customers.
- **Average historical CLV**: cumulative gross margin by the end of the period over the
  customers with a completed order by then (an order without a margin counts
  ``revenue x margin_rate``).
- **NPS** = % promoters (9-10) - % detractors (0-6); **CSAT** = share of 4-5 on 1-5;
  **CES** = mean on 1-7. Each with its sample size and a 95% interval.
- **Referral rate**: new customers who appear as ``referred_id`` in referrals, over
  all new customers.
- **Returning revenue share** (the headline): revenue from customers whose first
  completed order came before the window, over all revenue in the window.

Heavy work is two SQL passes over the filtered orders, both grouped by the integer
customer key: one per customer for the period and its comparison
(:func:`window_summary_sql`), one per customer-month for the monthly series
(:func:`monthly_sql`); two small passes read the survey responses. Polars reshapes
the small results.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import polars as pl

from data.store import Store
from metrics.filters import Filters, instant
from metrics.stats import mean_interval, nps_interval, nps_score, ratio, wilson_interval

DEFAULT_MARGIN_RATE = 0.30

# The month index used throughout: months since year 0, so 2024-01 -> 24288.
MONTH_INDEX = "CAST(year({col}) * 12 + month({col}) - 1 AS INTEGER)"


def month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


def month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


# ---------------------------------------------------------------------------------
# Per-window summaries
# ---------------------------------------------------------------------------------
WINDOW_COLUMNS = (
    "revenue", "revenue_returning", "orders", "active", "new", "referred_new", "base_start", "base_end",
    "churned", "repeaters", "customers_to_date", "margin_to_date",
)
MONEY_COLUMNS = ("revenue", "revenue_returning", "margin_to_date")


def window_summary_sql(f: Filters, windows: list[tuple[date, date]], *, margin_rate: float) -> tuple[str, dict[str, Any]]:
    """One pass over the filtered orders grouped by customer key, then one aggregate
    row with ``<column>_<i>`` for window ``i`` and every column in
    :data:`WINDOW_COLUMNS` (conditional aggregates: a handful per window)."""
    base, params = f.orders_sql()
    params = {**params, "margin_rate": margin_rate}
    w_days = timedelta(days=f.inactivity_days)
    per_c, outer = [], []
    for i, (start, end) in enumerate(windows):
        s, e = instant(start), instant(end + timedelta(days=1))
        params |= {f"s{i}": s, f"e{i}": e, f"bs{i}": s - w_days, f"be{i}": e - w_days}
        inside = f"ordered_at >= $s{i} AND ordered_at < $e{i}"
        per_c += [
            f"count(*) FILTER (WHERE {inside}) AS n{i}",
            f"sum(revenue) FILTER (WHERE {inside}) AS rev{i}",
            f"count(*) FILTER (WHERE ordered_at < $e{i}) AS life{i}",
            f"sum(margin) FILTER (WHERE ordered_at < $e{i}) AS cm{i}",
            f"bool_or(ordered_at >= $bs{i} AND ordered_at < $s{i}) AS in_s{i}",
            f"bool_or(ordered_at >= $be{i} AND ordered_at < $e{i}) AS in_e{i}",
        ]
        new = f"first_at >= $s{i} AND first_at < $e{i}"
        outer += [
            f"coalesce(sum(rev{i}), 0) AS revenue_{i}",
            f"coalesce(sum(rev{i}) FILTER (WHERE first_at < $s{i}), 0) AS revenue_returning_{i}",
            f"CAST(coalesce(sum(n{i}), 0) AS BIGINT) AS orders_{i}",
            f"count(*) FILTER (WHERE n{i} > 0) AS active_{i}",
            f"count(*) FILTER (WHERE {new}) AS new_{i}",
            f"count(*) FILTER (WHERE {new} AND referred) AS referred_new_{i}",
            f"count(*) FILTER (WHERE in_s{i}) AS base_start_{i}",
            f"count(*) FILTER (WHERE in_e{i}) AS base_end_{i}",
            f"count(*) FILTER (WHERE in_s{i} AND NOT in_e{i}) AS churned_{i}",
            f"count(*) FILTER (WHERE n{i} > 0 AND life{i} >= 2) AS repeaters_{i}",
            f"count(*) FILTER (WHERE first_at < $e{i}) AS customers_to_date_{i}",
            f"coalesce(sum(cm{i}), 0) AS margin_to_date_{i}",
        ]
    sql = f"""
WITH o AS ({base}),
per_c AS (
    SELECT customer_key, min(ordered_at) AS first_at, {", ".join(per_c)}
    FROM o GROUP BY customer_key
)
SELECT {", ".join(outer)}
FROM per_c LEFT JOIN (SELECT DISTINCT referred_key, TRUE AS referred FROM referrals) r
  ON r.referred_key = per_c.customer_key"""
    return sql, params


def _windows_frame(row: dict[str, Any], windows: list[tuple[date, date]]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"start": s, "end": e, **{c: row[f"{c}_{i}"] for c in WINDOW_COLUMNS}} for i, (s, e) in enumerate(windows)],
        schema={"start": pl.Date, "end": pl.Date,
                **{c: pl.Float64 if c in MONEY_COLUMNS else pl.Int64 for c in WINDOW_COLUMNS}},
    )


def window_summary(store: Store, f: Filters, windows: list[tuple[date, date]], *, margin_rate: float = DEFAULT_MARGIN_RATE) -> pl.DataFrame:
    """Counts and sums behind the KPIs, one row per window ``(start, end)`` (inclusive).

    Columns: start, end, revenue, revenue_returning (from customers whose first
    completed order came before the window), orders, active, new, referred_new,
    base_start, base_end, churned, repeaters, customers_to_date, margin_to_date
    (definitions in the module docstring). Channel, region and loyalty filters come
    from ``f``; its own period is ignored in favour of ``windows``.
    """
    row = store.query(*window_summary_sql(f, windows, margin_rate=margin_rate)).row(0, named=True)
    return _windows_frame(row, windows)


SURVEY_COLUMNS = ("nps_n", "promoters", "detractors", "csat_n", "satisfied", "ces_n", "ces_mean", "ces_sd")


def survey_summary(store: Store, f: Filters, windows: list[tuple[date, date]]) -> pl.DataFrame:
    """Survey counts per window: nps_n, promoters (9-10), detractors (0-6), csat_n,
    satisfied (4-5), ces_n, ces_mean, ces_sd. A response belongs to the window of its
    ``responded_at``; each score counts only where it was answered."""
    base, params = f.responses_sql()
    cols = []
    for i, (start, end) in enumerate(windows):
        params |= {f"s{i}": instant(start), f"e{i}": instant(end + timedelta(days=1))}
        w = f"responded_at >= $s{i} AND responded_at < $e{i}"
        cols += [
            f"count(nps) FILTER (WHERE {w}) AS nps_n_{i}",
            f"count(*) FILTER (WHERE {w} AND nps >= 9) AS promoters_{i}",
            f"count(*) FILTER (WHERE {w} AND nps <= 6) AS detractors_{i}",
            f"count(csat) FILTER (WHERE {w}) AS csat_n_{i}",
            f"count(*) FILTER (WHERE {w} AND csat >= 4) AS satisfied_{i}",
            f"count(ces) FILTER (WHERE {w}) AS ces_n_{i}",
            f"avg(ces) FILTER (WHERE {w}) AS ces_mean_{i}",
            f"stddev_samp(ces) FILTER (WHERE {w}) AS ces_sd_{i}",
        ]
    row = store.query(f"WITH r AS ({base}) SELECT {', '.join(cols)} FROM r", params).row(0, named=True)
    return pl.DataFrame(
        [{"start": s, "end": e, **{c: row[f"{c}_{i}"] for c in SURVEY_COLUMNS}} for i, (s, e) in enumerate(windows)],
        schema={"start": pl.Date, "end": pl.Date, **{c: pl.Float64 if c.startswith("ces_") and c != "ces_n" else pl.Int64 for c in SURVEY_COLUMNS}},
    )


# ---------------------------------------------------------------------------------
# KPI values from the summaries
# ---------------------------------------------------------------------------------
KPI_SCHEMA = {
    "kpi": pl.Utf8, "value": pl.Float64, "n": pl.Int64, "ci_low": pl.Float64, "ci_high": pl.Float64,
}


def kpi_values(w: dict[str, Any], s: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn one window's order summary ``w`` and survey summary ``s`` into KPI rows
    (kpi, value, n, ci_low, ci_high). Rates are fractions (0.25 = 25%); NPS is in points."""
    churn = ratio(w["churned"], w["base_start"])
    churn_ci = wilson_interval(w["churned"], w["base_start"])
    ret_ci = (None, None) if churn_ci[0] is None else (1 - churn_ci[1], 1 - churn_ci[0])
    nps_ci = nps_interval(s["promoters"], s["detractors"], s["nps_n"])
    ces_ci = mean_interval(s["ces_mean"], s["ces_sd"], s["ces_n"])
    rows = [
        ("revenue", w["revenue"], w["orders"], (None, None)),
        ("orders", w["orders"], None, (None, None)),
        ("active_customers", w["active"], None, (None, None)),
        ("new_customers", w["new"], None, (None, None)),
        ("customer_base", w["base_end"], None, (None, None)),
        ("retention_rate", None if churn is None else 1 - churn, w["base_start"], ret_ci),
        ("churn_rate", churn, w["base_start"], churn_ci),
        ("repeat_rate", ratio(w["repeaters"], w["active"]), w["active"], wilson_interval(w["repeaters"], w["active"])),
        ("aov", ratio(w["revenue"], w["orders"]), w["orders"], (None, None)),
        ("purchase_frequency", ratio(w["orders"], w["active"]), w["active"], (None, None)),
        ("avg_historical_clv", ratio(w["margin_to_date"], w["customers_to_date"]), w["customers_to_date"], (None, None)),
        ("nps", nps_score(s["promoters"], s["detractors"], s["nps_n"]), s["nps_n"], nps_ci),
        ("csat", ratio(s["satisfied"], s["csat_n"]), s["csat_n"], wilson_interval(s["satisfied"], s["csat_n"])),
        ("ces", s["ces_mean"] if s["ces_n"] else None, s["ces_n"], ces_ci),
        ("referral_rate", ratio(w["referred_new"], w["new"]), w["new"], wilson_interval(w["referred_new"], w["new"])),
        ("returning_revenue_share", ratio(w["revenue_returning"], w["revenue"]), w["orders"], (None, None)),
    ]
    return [
        {"kpi": k, "value": None if v is None else float(v), "n": n, "ci_low": lo, "ci_high": hi}
        for k, v, n, (lo, hi) in rows
    ]


def _kpi_table(ws: list[dict[str, Any]], ss: list[dict[str, Any]]) -> pl.DataFrame:
    cur = pl.DataFrame(kpi_values(ws[0], ss[0]), schema=KPI_SCHEMA)
    if len(ws) > 1:
        prev = pl.DataFrame(kpi_values(ws[1], ss[1]), schema=KPI_SCHEMA).select(
            "kpi", pl.col("value").alias("previous"), pl.col("n").alias("previous_n")
        )
    else:
        prev = cur.select("kpi", pl.lit(None, pl.Float64).alias("previous"), pl.lit(None, pl.Int64).alias("previous_n"))
    return cur.join(prev, on="kpi", how="left", maintain_order="left").with_columns(
        (pl.col("value") - pl.col("previous")).alias("change")
    )


def period_kpis(store: Store, f: Filters, *, comparison: tuple[date, date] | None = None, margin_rate: float = DEFAULT_MARGIN_RATE) -> pl.DataFrame:
    """Every Overview KPI for the filters' period, and for the comparison window.

    Columns: kpi, value, n, ci_low, ci_high (the period), then previous, previous_n
    (the comparison window; null without one) and change (value - previous; for
    rates, in fraction points). One row per KPI in catalogue order.
    """
    windows = [(f.start, f.end)] + ([comparison] if comparison else [])
    return _kpi_table(
        window_summary(store, f, windows, margin_rate=margin_rate).to_dicts(),
        survey_summary(store, f, windows).to_dicts(),
    )


# ---------------------------------------------------------------------------------
# Monthly series
# ---------------------------------------------------------------------------------
def survey_monthly_sql(f: Filters) -> tuple[str, dict[str, Any]]:
    base, params = f.responses_sql()
    mi = MONTH_INDEX.format(col="responded_at")
    sql = f"""
WITH r AS ({base})
SELECT {mi} AS k, count(nps) AS nps_n, count(*) FILTER (WHERE nps >= 9) AS promoters,
       count(*) FILTER (WHERE nps <= 6) AS detractors, count(csat) AS csat_n,
       count(*) FILTER (WHERE csat >= 4) AS satisfied, count(ces) AS ces_n,
       avg(ces) AS ces_mean, stddev_samp(ces) AS ces_sd
FROM r GROUP BY k"""
    return sql, params


NO_MONTH = 2_147_483_647  # "no next month" in integer month arithmetic


def monthly_sql(f: Filters, *, margin_rate: float) -> tuple[str, dict[str, Any]]:
    """The monthly series over all history, from distinct customer-months.

    Each customer-month row (customer key, month index ``m``, orders, revenue,
    margin, last order time) knows the customer's first month and next active month.
    The customer is in the base at the start of months ``m + 1 .. end_k`` where
    ``end_k`` is the earlier of the next active month and the month that contains
    ``last order + W days``; when the window runs out first, the customer churns in
    month ``end_k``. The base is then a running sum of +1 at ``m + 1`` and -1 at
    ``end_k + 1``. Rows come back long (k, and one non-zero group of columns), to be
    summed per month.
    """
    base, params = f.orders_sql()
    params = {**params, "margin_rate": margin_rate, "window_days": f.inactivity_days, "no_month": NO_MONTH}
    mi = MONTH_INDEX.format(col="ordered_at")
    kmax = MONTH_INDEX.format(col="last_at + $window_days * INTERVAL 1 DAY")
    sql = f"""
WITH o AS ({base}),
cm AS (
    SELECT customer_key, {mi} AS m, count(*) AS n, sum(revenue) AS rev, sum(margin) AS mar,
           max(ordered_at) AS last_at
    FROM o GROUP BY customer_key, {mi}
),
cmw AS (
    SELECT cm.customer_key, m, n, rev, mar,
           m = min(m) OVER (PARTITION BY cm.customer_key) AS first_month,
           r.referred_key IS NOT NULL AS referred,
           least(coalesce(lead(m) OVER (PARTITION BY cm.customer_key ORDER BY m), $no_month), {kmax}) AS end_k,
           {kmax} < coalesce(lead(m) OVER (PARTITION BY cm.customer_key ORDER BY m), $no_month) AS lapses
    FROM cm LEFT JOIN (SELECT DISTINCT referred_key FROM referrals) r ON r.referred_key = cm.customer_key
)
SELECT m AS k, count(*) AS active, CAST(sum(n) AS BIGINT) AS orders, sum(rev) AS revenue, sum(mar) AS margin,
       count(*) FILTER (WHERE first_month) AS new,
       coalesce(sum(rev) FILTER (WHERE first_month), 0) AS revenue_new,
       count(*) FILTER (WHERE first_month AND n = 1) AS new_single,
       count(*) FILTER (WHERE first_month AND referred) AS referred_new,
       0 AS delta, 0 AS churned
FROM cmw GROUP BY m
UNION ALL
SELECT k, 0, 0, 0, 0, 0, 0, 0, 0, CAST(sum(d) AS BIGINT), 0 FROM (
    SELECT m + 1 AS k, 1 AS d FROM cmw WHERE end_k >= m + 1
    UNION ALL
    SELECT end_k + 1 AS k, -1 AS d FROM cmw WHERE end_k >= m + 1
) GROUP BY k
UNION ALL
SELECT end_k, 0, 0, 0, 0, 0, 0, 0, 0, 0, count(*) FROM cmw
WHERE end_k >= m + 1 AND lapses GROUP BY end_k"""
    return sql, params


def _months_frame(raw: pl.DataFrame, surveys: pl.DataFrame, k0: int, k1: int, f: Filters) -> pl.DataFrame:
    """Sum the long rows of :func:`monthly_sql` per month, run the base and the
    cumulative sums over all history, keep months ``k0..k1`` and derive the rates."""
    lo = min(int(raw["k"].min()), k0) if raw.height else k0
    # One month past the last: its base at 00:00 on the 1st is the last month's end base.
    grid = pl.DataFrame({"k": pl.int_range(lo, k1 + 2, eager=True).cast(pl.Int32)})
    agg = raw.with_columns(pl.col("k").cast(pl.Int32)).group_by("k").agg(pl.all().sum())
    m = (
        grid.join(agg, on="k", how="left")
        .fill_null(0)
        .sort("k")
        .with_columns(
            base_start=pl.col("delta").cum_sum(),
            cum_margin=pl.col("margin").cum_sum(),
            cum_customers=pl.col("new").cum_sum(),
        )
        .with_columns(customer_base=pl.col("base_start").shift(-1))
    )
    # The survey query is typed even when empty, so months without answers get nulls.
    m = m.join(surveys.with_columns(pl.col("k").cast(pl.Int32)), on="k", how="left")
    m = m.filter(pl.col("k").is_between(k0, k1)).sort("k")

    def safe(num: pl.Expr, den: pl.Expr) -> pl.Expr:
        return pl.when(den > 0).then(num / den).otherwise(None)

    return m.select(
        pl.date(pl.col("k") // 12, pl.col("k") % 12 + 1, 1).alias("month"),
        pl.col("revenue").cast(pl.Float64),
        pl.col("revenue_new").cast(pl.Float64),
        (pl.col("revenue") - pl.col("revenue_new")).cast(pl.Float64).alias("revenue_returning"),
        safe(pl.col("revenue") - pl.col("revenue_new"), pl.col("revenue")).alias("returning_revenue_share"),
        pl.col("orders").cast(pl.Int64),
        pl.col("active").cast(pl.Int64).alias("active_customers"),
        pl.col("new").cast(pl.Int64).alias("new_customers"),
        pl.col("base_start").cast(pl.Int64),
        pl.col("customer_base").cast(pl.Int64),
        pl.col("churned").cast(pl.Int64),
        safe(pl.col("churned"), pl.col("base_start")).alias("churn_rate"),
        (1 - safe(pl.col("churned"), pl.col("base_start"))).alias("retention_rate"),
        safe(pl.col("active") - pl.col("new_single"), pl.col("active")).alias("repeat_rate"),
        safe(pl.col("revenue"), pl.col("orders")).alias("aov"),
        safe(pl.col("orders"), pl.col("active")).alias("purchase_frequency"),
        safe(pl.col("cum_margin"), pl.col("cum_customers")).alias("avg_historical_clv"),
        safe(pl.col("referred_new"), pl.col("new")).alias("referral_rate"),
        safe(100.0 * (pl.col("promoters") - pl.col("detractors")), pl.col("nps_n")).alias("nps"),
        pl.col("nps_n").fill_null(0).cast(pl.Int64),
        safe(pl.col("satisfied"), pl.col("csat_n")).alias("csat"),
        pl.col("csat_n").fill_null(0).cast(pl.Int64),
        pl.when(pl.col("ces_n") > 0).then(pl.col("ces_mean")).otherwise(None).alias("ces"),
        pl.col("ces_n").fill_null(0).cast(pl.Int64),
    ).with_columns(complete=pl.col("month").dt.month_end() <= f.end)


def monthly_kpis(store: Store, f: Filters, *, first_month: date, last_month: date, margin_rate: float = DEFAULT_MARGIN_RATE) -> pl.DataFrame:
    """The KPIs per calendar month from ``first_month`` to ``last_month`` (any day in
    each; every month in between appears, with zeros where nothing happened).

    Columns: month (first day), revenue, revenue_new (from customers whose first
    completed order is in that month), revenue_returning, returning_revenue_share,
    orders, active_customers, new_customers, base_start (base at 00:00 on the 1st),
    customer_base (base at the start of the next month), churned (in the base at the
    month's start, not at the next month's), churn_rate, retention_rate, repeat_rate,
    aov, purchase_frequency, avg_historical_clv (to the month's end), referral_rate,
    nps, nps_n, csat, csat_n, ces, ces_n, complete (False for a month the filters'
    end date has not finished).

    The customer base uses month starts as instants, so it agrees with
    :func:`window_summary` for a window of whole months. Repeat rate per month is
    (active - new customers with exactly one order, all in that month) / active.
    """
    raw = store.query(*monthly_sql(f, margin_rate=margin_rate))
    surveys = store.query(*survey_monthly_sql(f))
    return _months_frame(raw, surveys, month_index(first_month), month_index(last_month), f)


@dataclass(frozen=True)
class Overview:
    """What the Overview page draws: the KPI table, the monthly series of the trend
    window, and the same series with twelve more months before it (for
    year-on-year readings)."""

    kpis: pl.DataFrame
    monthly: pl.DataFrame
    history: pl.DataFrame


MAX_TREND_MONTHS = 60


def trend_months(f: Filters, months: int = 12) -> tuple[date, date]:
    """The trend window: ``months`` calendar months ending with the month of the
    period's end, or the whole period when it is longer (at most
    :data:`MAX_TREND_MONTHS`)."""
    k1 = month_index(f.end)
    k0 = max(min(k1 - months + 1, month_index(f.start)), k1 - MAX_TREND_MONTHS + 1)
    return month_start(k0), month_start(k1)


def overview(store: Store, f: Filters, *, comparison: tuple[date, date] | None, margin_rate: float = DEFAULT_MARGIN_RATE) -> Overview:
    """All numbers on the Overview page for one set of filters: one per-customer
    pass for the period and its comparison, one customer-month pass for the trend,
    and two small passes over the survey responses."""
    first, last = trend_months(f)
    history = monthly_kpis(store, f, first_month=month_start(month_index(first) - 12), last_month=last,
                           margin_rate=margin_rate)
    return Overview(
        kpis=period_kpis(store, f, comparison=comparison, margin_rate=margin_rate),
        monthly=history.filter(pl.col("month") >= first),
        history=history,
    )


def data_bounds(store: Store) -> tuple[date | None, date | None]:
    """The first and last order dates in the store (any status, no filters): the
    anchor of the period presets ("last 30 days" ends on the last order date)."""
    row = store.query("SELECT min(ordered_at)::DATE AS a, max(ordered_at)::DATE AS b FROM orders").row(0)
    return row[0], row[1]
