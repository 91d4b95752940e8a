"""Surveys: NPS, CSAT and CES with intervals, what customers say against what they do,
key drivers and verbatims.

Definitions (shared/DESIGN.md; each public function repeats its own):

- **Responses** are rows of ``survey_responses``. A response belongs to the period
  ``[f.start, f.end]`` (days inclusive, half-open in time) by its ``responded_at``.
  The channel filter applies to the response's own ``channel`` column; the region and
  loyalty filters apply to the responding customer (``f.customer_condition``).
  **Anonymous responses** (``customer_key`` NULL) cannot be placed in a region or in
  the loyalty programme: they are kept only when neither the region nor the loyalty
  filter is set, and then they count in every score. They are left out of everything
  that links an answer to a customer (customer groups, CLV deciles, say vs do, the
  detractors to call, key drivers), and those functions report how many were left
  out. Scores outside their scale (NPS 0-10, CSAT 1-5, CES 1-7) count as unanswered.
- **NPS** = % promoters (9-10) - % detractors (0-6) of the NPS answers, in **points
  from -100 to 100** (as :func:`metrics.stats.nps_score` and the Overview). Each
  answer scores +1, 0 or -1, so with shares p (promoters) and d (detractors) of n
  answers, Var = (p + d - (p - d)^2) / n; the 95% interval is the normal
  approximation ``(p - d) +- 1.96 sqrt(Var)``, clipped to [-1, 1], times 100.
  **Categories**: promoter 9-10, passive 7-8, detractor 0-6.
- **CSAT** = share of the CSAT answers that are 4 or 5 (on 1-5), a fraction 0-1, with
  the Wilson score interval.
- **CES** = mean of the CES answers (1-7, lower is easier), with the Student-t 95%
  interval (n - 1 degrees of freedom).
- Every score comes with its n (answers of that score). Each response counts for each
  score it answered.
- **A customer's latest NPS answer** in a window: the identified customer's NPS answer
  with the latest ``responded_at`` there (ties: the larger response_id); its category
  is the customer's category. Say vs do, the detractors to call and the key drivers
  use it.
- **Say vs do** (:func:`say_vs_do`): behaviour after the latest answer, from completed
  orders after the global filters (channel, region, loyalty; an order without gross
  margin counts ``revenue x margin_rate``). Retention, revenue after, churn: see the
  function.
- **Key drivers** (:func:`key_drivers`): Spearman rank correlation, per touchpoint,
  between customers' touchpoint score and their NPS (importance), against the
  touchpoint's share satisfied (performance).
- **Verbatims** (:func:`tokenize`, :func:`comment_terms`, :func:`log_odds`,
  :func:`distinctive_terms`, :func:`search_comments`): lower case, Unicode NFC,
  diacritics kept, punctuation stripped, Vietnamese and English stop words dropped;
  unigrams and bigrams; the weighted log-odds ratio with an informative Dirichlet
  prior (Monroe, Colaresi & Quinn 2008).

SQL (through :meth:`data.store.Store.query`, DuckDB named parameters) aggregates;
Polars, numpy and scipy do the rest on the small results.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import polars as pl

from data.store import Store
from metrics.filters import Filters, instant
from metrics import pymap
from metrics.kpis import DEFAULT_MARGIN_RATE, MONTH_INDEX, month_index
from metrics.retention import mask_id
from metrics.stats import Z95, mean_interval, nps_interval, nps_score, ratio, wilson_interval

CATEGORIES = ("promoter", "passive", "detractor")
METRICS = ("nps", "csat", "ces")
BREAKDOWNS = ("touchpoint", "channel", "survey")
QUADRANTS = ("concentrate", "keep_up", "low_priority", "overkill")
DEFAULT_HORIZON_DAYS = 365
SPEARMAN_VAR = 1.06  # Fieller, Hartley & Pearson (1957): Var(atanh r_s) ~ 1.06 / (n - 3)
MIN_DRIVER_N = 30  # customer pairs a touchpoint needs to be placed in the quadrant
CES_EASY_MAX = 3  # CES 1-3 (on 1-7, lower is easier) counts as low effort (satisfied)

SCORE_SCHEMA = {"metric": pl.Utf8, "n": pl.Int64, "value": pl.Float64, "low": pl.Float64, "high": pl.Float64}


@dataclass(frozen=True)
class Linked:
    """A table that links answers to customers, with what it had to leave out:
    ``anonymous`` = anonymous responses in the period that would otherwise have
    counted; ``unmatched`` = identified ones left out for another reason (say which in
    the function's docstring)."""

    table: pl.DataFrame
    anonymous: int = 0
    unmatched: int = 0
    total: int | None = None  # rows before a limit, where the function has one


@dataclass(frozen=True)
class SayDo:
    """:func:`say_vs_do`'s result: the table by NPS category and the counts left out."""

    table: pl.DataFrame
    anonymous: int  # anonymous NPS answers in the period (no behaviour to link)
    unobserved: int  # identified respondents whose horizon is not over by as_of
    horizon_days: int
    as_of: date


@dataclass(frozen=True)
class CommentSearch:
    """:func:`search_comments`'s result: the rows shown and how many matched in all."""

    table: pl.DataFrame
    matches: int


# ---------------------------------------------------------------------------------
# Shared SQL
# ---------------------------------------------------------------------------------
def _end_instant(d: date) -> Any:
    """The first instant after day ``d`` (windows are half-open)."""
    return instant(d + timedelta(days=1))


def _responses_sql(f: Filters, *, start: date | None = None, end: date | None = None) -> tuple[str, dict[str, Any]]:
    """The filtered responses answered in ``[start, end]`` (default: the filters'
    period). Channel filter on the response's channel; region and loyalty filters on
    its customer, which drops anonymous responses whenever one of them is set (a NULL
    key is in no region and no programme). Out-of-scale scores become NULL; blank comments NULL."""
    chan, p1 = f.channel_condition("channel")
    cust, p2 = f.customer_condition("customer_key")
    if cust != "TRUE":
        # Explicit: ``NULL NOT IN (empty set)`` is TRUE in SQL, so the non-member
        # condition alone would keep anonymous answers while no one is a member.
        cust = f"customer_key IS NOT NULL AND {cust}"
    s = f.start if start is None else start
    e = f.end if end is None else end
    sql = (
        "SELECT response_id, customer_key, responded_at, survey, touchpoint, "
        "CASE WHEN nps BETWEEN 0 AND 10 THEN nps END AS nps, "
        "CASE WHEN csat BETWEEN 1 AND 5 THEN csat END AS csat, "
        "CASE WHEN ces BETWEEN 1 AND 7 THEN ces END AS ces, "
        "nullif(trim(comment), '') AS comment, channel "
        "FROM survey_responses "
        f"WHERE responded_at >= $rs AND responded_at < $re AND {chan} AND {cust}"
    )
    return sql, {**p1, **p2, "rs": instant(s), "re": _end_instant(e)}


# The counts every score needs, over the rows of a relation ``r`` (grouped or not).
AGGREGATES = (
    "count(nps) AS nps_n, count(*) FILTER (WHERE nps >= 9) AS promoters, "
    "count(*) FILTER (WHERE nps <= 6) AS detractors, count(csat) AS csat_n, "
    "count(*) FILTER (WHERE csat >= 4) AS satisfied, count(ces) AS ces_n, avg(ces) AS ces_mean, "
    f"stddev_samp(ces) AS ces_sd, count(*) FILTER (WHERE ces <= {CES_EASY_MAX}) AS easy"
)

CATEGORY_SQL = "CASE WHEN {col} >= 9 THEN 'promoter' WHEN {col} >= 7 THEN 'passive' ELSE 'detractor' END"

# Each identified customer's latest NPS answer in relation ``r`` (one row each).
LATEST_SQL = (
    "SELECT response_id, customer_key, responded_at, survey, touchpoint, nps, csat, ces, comment, channel FROM ("
    "  SELECT *, row_number() OVER (PARTITION BY customer_key ORDER BY responded_at DESC, response_id DESC) AS rn "
    "  FROM r WHERE customer_key IS NOT NULL AND nps IS NOT NULL) WHERE rn = 1"
)


def category(nps: int | None) -> str | None:
    """promoter (9-10), passive (7-8), detractor (0-6); None without an answer."""
    if nps is None:
        return None
    return "promoter" if nps >= 9 else "passive" if nps >= 7 else "detractor"


def _category_expr(col: str = "nps") -> pl.Expr:
    c = pl.col(col)
    return (pl.when(c.is_null()).then(None).when(c >= 9).then(pl.lit("promoter"))
            .when(c >= 7).then(pl.lit("passive")).otherwise(pl.lit("detractor")))


def _nps_var(promoters: int, detractors: int, n: int) -> float:
    p, d = promoters / n, detractors / n
    return max(p + d - (p - d) ** 2, 0.0)


def score_rows(c: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per score (metric, n, value, low, high, se) from the counts of
    :data:`AGGREGATES`: NPS in points with its normal interval, CSAT as a share with
    the Wilson interval, CES as a mean with the t interval; ``se`` is the standard
    error of the value (for comparisons; None when n is too small)."""
    n_n, c_n, e_n = int(c.get("nps_n") or 0), int(c.get("csat_n") or 0), int(c.get("ces_n") or 0)
    prom, det, sat = int(c.get("promoters") or 0), int(c.get("detractors") or 0), int(c.get("satisfied") or 0)
    lo, hi = nps_interval(prom, det, n_n)
    nps_se = 100 * math.sqrt(_nps_var(prom, det, n_n) / n_n) if n_n else None
    csat = ratio(sat, c_n)
    c_lo, c_hi = wilson_interval(sat, c_n)
    mean = c.get("ces_mean") if e_n else None
    sd = c.get("ces_sd") if e_n >= 2 else None
    e_lo, e_hi = mean_interval(mean, sd, e_n)
    return [
        {"metric": "nps", "n": n_n, "value": nps_score(prom, det, n_n), "low": lo, "high": hi, "se": nps_se},
        {"metric": "csat", "n": c_n, "value": csat, "low": c_lo, "high": c_hi,
         "se": math.sqrt(csat * (1 - csat) / c_n) if c_n else None},
        {"metric": "ces", "n": e_n, "value": None if mean is None else float(mean), "low": e_lo, "high": e_hi,
         "se": sd / math.sqrt(e_n) if sd is not None else None},
    ]


def _long(counts: pl.DataFrame, keys: list[str], key_schema: dict[str, Any]) -> pl.DataFrame:
    """Counts (one row per group) to scores (one row per group and metric)."""
    rows = []
    for c in counts.to_dicts():
        for s in score_rows(c):
            s.pop("se")
            rows.append({**{k: c[k] for k in keys}, **s})
    return pl.DataFrame(rows, schema={**key_schema, **SCORE_SCHEMA})


def _anonymous(store: Store, f: Filters, what: str = "TRUE", *, end: date | None = None) -> int:
    """Anonymous responses in the period (after the filters) meeting ``what``."""
    resp, params = _responses_sql(f, end=end)
    return int(store.scalar(f"WITH r AS ({resp}) SELECT count(*) FROM r WHERE customer_key IS NULL AND {what}",
                            params) or 0)


# ---------------------------------------------------------------------------------
# 1. The scores of the period, and the comparison
# ---------------------------------------------------------------------------------
SUMMARY_SCHEMA = {
    **SCORE_SCHEMA, "previous": pl.Float64, "previous_n": pl.Int64, "previous_low": pl.Float64,
    "previous_high": pl.Float64, "change": pl.Float64, "change_low": pl.Float64, "change_high": pl.Float64,
}


def score_summary(store: Store, f: Filters, *, comparison: tuple[date, date] | None = None) -> pl.DataFrame:
    """NPS, CSAT and CES of the responses in the period, and in ``comparison``.

    One row per metric (nps, csat, ces): n (answers of that score), value, low, high
    (95% interval; NPS in points -100..100, CSAT a share 0..1, CES a mean on 1-7);
    previous, previous_n, previous_low, previous_high (the comparison window, the
    same filters; nulls without one); change = value - previous, with change_low and
    change_high = change +- 1.96 x sqrt(se^2 + se_previous^2) (normal approximation;
    se of NPS from its multinomial variance, of CSAT sqrt(p(1-p)/n), of CES sd /
    sqrt(n)). Anonymous responses count (see the module docstring).
    """
    windows = [(f.start, f.end)] + ([comparison] if comparison else [])
    out: list[list[dict[str, Any]]] = []
    for s, e in windows:
        resp, params = _responses_sql(f, start=s, end=e)
        c = store.query(f"WITH r AS ({resp}) SELECT {AGGREGATES} FROM r", params).row(0, named=True)
        out.append(score_rows(c))
    rows = []
    for i, cur in enumerate(out[0]):
        prev = out[1][i] if len(out) > 1 else None
        row = {k: cur[k] for k in SCORE_SCHEMA}
        row |= {"previous": None, "previous_n": None, "previous_low": None, "previous_high": None,
                "change": None, "change_low": None, "change_high": None}
        if prev is not None:
            row |= {"previous": prev["value"], "previous_n": prev["n"], "previous_low": prev["low"],
                    "previous_high": prev["high"]}
            if cur["value"] is not None and prev["value"] is not None:
                row["change"] = cur["value"] - prev["value"]
                if cur["se"] is not None and prev["se"] is not None:
                    half = Z95 * math.sqrt(cur["se"] ** 2 + prev["se"] ** 2)
                    row["change_low"], row["change_high"] = row["change"] - half, row["change"] + half
        rows.append(row)
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)


# ---------------------------------------------------------------------------------
# 2. Over time
# ---------------------------------------------------------------------------------
def monthly_scores(store: Store, f: Filters) -> pl.DataFrame:
    """NPS, CSAT and CES per calendar month of ``responded_at``, over the responses in
    the period (the first and last months may be partial).

    Columns: month (its first day), metric, n, value, low, high, as in
    :func:`score_summary`. Every month from the period's first to its last is
    present; a month without answers has n = 0 and null value and interval.
    """
    resp, params = _responses_sql(f)
    raw = store.query(
        f"WITH r AS ({resp}) SELECT {MONTH_INDEX.format(col='responded_at')} AS k, {AGGREGATES} FROM r GROUP BY 1",
        params,
    )
    k0, k1 = month_index(f.start), month_index(f.end)
    months = pl.DataFrame({"k": pl.int_range(k0, k1 + 1, eager=True).cast(pl.Int32)})
    counts = months.join(raw.with_columns(pl.col("k").cast(pl.Int32)), on="k", how="left").with_columns(
        pl.date(pl.col("k") // 12, pl.col("k") % 12 + 1, 1).alias("month")
    )
    return _long(counts, ["month"], {"month": pl.Date}).sort("month", maintain_order=True)


# ---------------------------------------------------------------------------------
# 3. The 0-10 distribution
# ---------------------------------------------------------------------------------
def nps_distribution(store: Store, f: Filters) -> pl.DataFrame:
    """The NPS answers of the period by score: score (0..10, all eleven present),
    category (promoter 9-10, passive 7-8, detractor 0-6), n (answers with that score)
    and share (n over all NPS answers; null when there are none)."""
    resp, params = _responses_sql(f)
    raw = store.query(f"WITH r AS ({resp}) SELECT nps AS score, count(*) AS n FROM r WHERE nps IS NOT NULL "
                      "GROUP BY 1", params)
    out = pl.DataFrame({"score": list(range(11))}, schema={"score": pl.Int64}).join(
        raw.with_columns(pl.col("score").cast(pl.Int64)), on="score", how="left"
    ).with_columns(pl.col("n").fill_null(0).cast(pl.Int64))
    total = int(out["n"].sum())
    return out.with_columns(
        _category_expr("score").alias("category"),
        (pl.col("n") / total if total else pl.lit(None, pl.Float64)).alias("share"),
    ).select("score", "category", "n", "share")


# ---------------------------------------------------------------------------------
# 4. Breakdowns
# ---------------------------------------------------------------------------------
def scores_by(store: Store, f: Filters, by: str = "touchpoint") -> pl.DataFrame:
    """NPS, CSAT and CES of the period's responses by a response column: ``by`` is
    ``touchpoint``, ``channel`` or ``survey``. Columns: group (null for responses
    without one), metric, n, value, low, high (as :func:`score_summary`); groups by
    the number of responses, largest first. Anonymous responses count."""
    if by not in BREAKDOWNS:
        raise ValueError(f"by must be one of {BREAKDOWNS}, not {by!r}")
    resp, params = _responses_sql(f)
    counts = store.query(
        f"WITH r AS ({resp}) SELECT {by} AS \"group\", count(*) AS responses, {AGGREGATES} FROM r "
        "GROUP BY 1 ORDER BY responses DESC, \"group\" NULLS LAST", params,
    )
    return _long(counts, ["group"], {"group": pl.Utf8})


def _groups_frame(groups: pl.DataFrame) -> pl.DataFrame:
    """(customer_key Int64, group Utf8), one row per customer (the first kept)."""
    if not {"customer_key", "group"} <= set(groups.columns):
        raise ValueError("groups needs the columns customer_key and group")
    return (groups.select(pl.col("customer_key").cast(pl.Int64), pl.col("group").cast(pl.Utf8))
            .drop_nulls().unique("customer_key", keep="first", maintain_order=True))


def scores_by_customer_group(store: Store, f: Filters, groups: pl.DataFrame) -> Linked:
    """NPS, CSAT and CES of the period's identified responses by a grouping of their
    customers (RFM segments, personas, CLV deciles, ...).

    ``groups``: columns customer_key and group (one per customer; nulls ignored).
    Table: group, customers (distinct respondents), responses, metric, n, value, low,
    high (as :func:`score_summary`; every response of a grouped customer counts),
    groups by responses, largest first. ``anonymous`` = anonymous responses in the
    period (they have no customer, so no group); ``unmatched`` = identified
    responses whose customer is not in ``groups``.
    """
    g = _groups_frame(groups)
    resp, params = _responses_sql(f)
    counts = store.query(  # one pass: the NULL group collects the anonymous and the unmatched
        f"WITH r AS ({resp}) SELECT g.\"group\", count(DISTINCT r.customer_key) AS customers, "
        f"count(*) AS responses, count(*) FILTER (WHERE r.customer_key IS NULL) AS anon, {AGGREGATES} "
        "FROM r LEFT JOIN grp g ON g.customer_key = r.customer_key "
        "GROUP BY 1 ORDER BY responses DESC, 1", params, tables={"grp": g},
    )
    left = counts.filter(pl.col("group").is_null())
    anonymous = int(left["anon"].sum()) if left.height else 0
    unmatched = int(left["responses"].sum()) - anonymous if left.height else 0
    table = _long(counts.filter(pl.col("group").is_not_null()), ["group", "customers", "responses"],
                  {"group": pl.Utf8, "customers": pl.Int64, "responses": pl.Int64})
    return Linked(table, anonymous, unmatched)


# ---------------------------------------------------------------------------------
# 6. CLV deciles
# ---------------------------------------------------------------------------------
def clv_deciles(clv: pl.DataFrame, value: str = "clv") -> pl.DataFrame:
    """Deciles of predicted CLV: with the customers of ``clv`` (customer_key, clv;
    nulls dropped) ordered by CLV ascending, n of them, and ``rank_min`` the 1-based
    rank that ties share, decile = 1 + floor(10 x (rank_min - 1) / n): 10 holds the
    highest CLVs, equal values share a decile (as the RFM quintiles). Columns:
    customer_key, clv, decile."""
    c = clv.select(pl.col("customer_key").cast(pl.Int64), pl.col(value).cast(pl.Float64).alias("clv")).drop_nulls()
    n = c.height
    if not n:
        return c.with_columns(pl.lit(None, pl.Int64).alias("decile"))
    return c.with_columns(
        (1 + (10 * (pl.col("clv").rank("min").cast(pl.Int64) - 1)) // n).cast(pl.Int64).alias("decile")
    )


def scores_by_clv_decile(store: Store, f: Filters, clv: pl.DataFrame, value: str = "clv") -> Linked:
    """NPS, CSAT and CES of the period's identified responses by the CLV decile of
    their customer (:func:`clv_deciles`, over all customers of ``clv``).

    Table: decile (1..10, 10 the highest CLV; the deciles that hold customers),
    customers_in_decile, clv_min, clv_max, clv_mean (of the decile's
    customers), customers (respondents), responses, metric, n, value, low, high; every
    decile has its three metric rows (n = 0 without answers). ``anonymous`` and ``unmatched`` as :func:`scores_by_customer_group`.
    """
    d = clv_deciles(clv, value)
    stats = d.group_by("decile").agg(
        pl.len().cast(pl.Int64).alias("customers_in_decile"), pl.col("clv").min().alias("clv_min"),
        pl.col("clv").max().alias("clv_max"), pl.col("clv").mean().alias("clv_mean"),
    )
    linked = scores_by_customer_group(
        store, f, d.select("customer_key", pl.col("decile").cast(pl.Utf8).alias("group"))
    )
    t = linked.table.with_columns(pl.col("group").cast(pl.Int64).alias("decile")).drop("group")
    grid = stats.join(pl.DataFrame({"metric": list(METRICS)}), how="cross")
    t = grid.join(t, on=["decile", "metric"], how="left").with_columns(
        pl.col("customers", "responses", "n").fill_null(0),
        pl.col("metric").replace_strict({m: i for i, m in enumerate(METRICS)}, return_dtype=pl.Int64).alias("_m"),
    ).sort("decile", "_m").drop("_m")
    cols = ["decile", "customers_in_decile", "clv_min", "clv_max", "clv_mean", "customers", "responses",
            *SCORE_SCHEMA]
    return Linked(t.select(cols), linked.anonymous, linked.unmatched)


# ---------------------------------------------------------------------------------
# 5. Say vs do
# ---------------------------------------------------------------------------------
SAYDO_SCHEMA = {
    "category": pl.Utf8, "respondents": pl.Int64, "observed": pl.Int64, "retained": pl.Int64,
    "retention": pl.Float64, "retention_low": pl.Float64, "retention_high": pl.Float64,
    "revenue_after": pl.Float64, "revenue_low": pl.Float64, "revenue_high": pl.Float64,
    "buyers_before": pl.Int64, "churned": pl.Int64, "churn_rate": pl.Float64, "churn_low": pl.Float64,
    "churn_high": pl.Float64,
}


def observed_period(f: Filters, *, as_of: date | None = None,
                    horizon_days: int = DEFAULT_HORIZON_DAYS) -> tuple[date, date]:
    """A window as long as the filters' period that ends ``horizon_days`` before
    ``as_of`` (default ``f.end``): every answer in it has its horizon observed, so
    :func:`say_vs_do` on it leaves nobody unobserved (pass it with
    ``dataclasses.replace(f, start=..., end=...)``)."""
    as_of = as_of or f.end
    end = as_of - timedelta(days=horizon_days)
    return end - (f.end - f.start), end


def say_vs_do(store: Store, f: Filters, *, as_of: date | None = None, horizon_days: int = DEFAULT_HORIZON_DAYS,
              margin_rate: float = DEFAULT_MARGIN_RATE) -> SayDo:
    """Retention, revenue after and churn of promoters, passives and detractors.

    Respondents: identified customers with an NPS answer in the period (answers after
    ``as_of`` ignored; ``as_of`` defaults to ``f.end``), each in the category of their
    latest NPS answer there, answered at ``t``. Behaviour: completed orders after the
    global filters (channel, region, loyalty) up to the end of ``as_of``. ``H`` =
    ``horizon_days``; ``E`` = the end of ``as_of`` (midnight after it).

    - **observed**: respondents with ``t + H days <= E`` (their whole horizon is in
      the data); the others are counted in ``unobserved`` and left out of retention
      and revenue (never cut short, which would bias late answers downwards).
    - **retention** = share of the observed with a completed order in ``(t, t + H]``
      (Wilson interval); ``retained`` the count.
    - **revenue_after** = mean net revenue of completed orders in ``(t, t + H]`` per
      observed respondent, zeros included (t interval): the 12-month revenue for the
      default H = 365.
    - **churn_rate** = among ``buyers_before`` (respondents with a completed order at
      or before ``t``), the share with no completed order in ``[E - inactivity_days,
      E)``, i.e. out of the customer base at ``as_of`` (Wilson interval); ``churned``
      the count. It needs no horizon.

    Table: one row per category (promoter, passive, detractor) with the columns of
    :data:`SAYDO_SCHEMA`. ``anonymous`` = anonymous NPS answers in the period (no
    behaviour to link to). With the default period (the last 365 days) and H = 365 no
    answer is observed yet: use a shorter horizon or :func:`observed_period`.
    """
    as_of = as_of or f.end
    end_day = min(f.end, as_of)
    if end_day < f.start:
        empty = pl.DataFrame({"category": list(CATEGORIES)}).with_columns(
            *(pl.lit(0 if t == pl.Int64 else None, t).alias(c) for c, t in SAYDO_SCHEMA.items() if c != "category"))
        return SayDo(empty.select(list(SAYDO_SCHEMA)), 0, 0, horizon_days, as_of)
    resp, params = _responses_sql(f, end=end_day)
    orders, oparams = f.orders_sql()
    e = _end_instant(as_of)
    cat = CATEGORY_SQL.format(col="nps")
    after = "o.ordered_at > l.t AND o.ordered_at <= l.t + to_days(CAST($h AS INTEGER))"
    raw = store.query(
        f"WITH r AS ({resp}), l AS (SELECT customer_key, responded_at AS t, nps FROM ({LATEST_SQL})), "
        f"o AS ({orders}), "
        "a AS (SELECT l.customer_key, l.t, l.nps, "
        f"  count(o.ordered_at) FILTER (WHERE {after}) AS after_n, "
        f"  coalesce(sum(o.revenue) FILTER (WHERE {after}), 0) AS after_rev, "
        "  count(o.ordered_at) FILTER (WHERE o.ordered_at <= l.t) AS before_n, "
        "  count(o.ordered_at) FILTER (WHERE o.ordered_at >= $recent) AS recent_n "
        "  FROM l LEFT JOIN o ON o.customer_key = l.customer_key AND o.ordered_at < $e "
        "  GROUP BY l.customer_key, l.t, l.nps) "
        f"SELECT {cat} AS category, count(*) AS respondents, "
        "count(*) FILTER (WHERE t <= $obs) AS observed, "
        "count(*) FILTER (WHERE t <= $obs AND after_n > 0) AS retained, "
        "avg(after_rev) FILTER (WHERE t <= $obs) AS rev_mean, "
        "stddev_samp(after_rev) FILTER (WHERE t <= $obs) AS rev_sd, "
        "count(*) FILTER (WHERE before_n > 0) AS buyers_before, "
        "count(*) FILTER (WHERE before_n > 0 AND recent_n = 0) AS churned "
        "FROM a GROUP BY 1",
        {**params, **oparams, "margin_rate": margin_rate, "h": int(horizon_days), "e": e,
         "obs": e - timedelta(days=horizon_days), "recent": e - timedelta(days=f.inactivity_days)},
    )
    by = {r["category"]: r for r in raw.to_dicts()}
    rows = []
    for c in CATEGORIES:
        r = by.get(c, {})
        obs, ret = int(r.get("observed") or 0), int(r.get("retained") or 0)
        bb, ch = int(r.get("buyers_before") or 0), int(r.get("churned") or 0)
        mean = r.get("rev_mean") if obs else None
        lo, hi = mean_interval(mean, r.get("rev_sd"), obs)
        rows.append({
            "category": c, "respondents": int(r.get("respondents") or 0), "observed": obs, "retained": ret,
            "retention": ratio(ret, obs), **dict(zip(("retention_low", "retention_high"), wilson_interval(ret, obs))),
            "revenue_after": mean, "revenue_low": lo, "revenue_high": hi,
            "buyers_before": bb, "churned": ch, "churn_rate": ratio(ch, bb),
            **dict(zip(("churn_low", "churn_high"), wilson_interval(ch, bb))),
        })
    table = pl.DataFrame(rows, schema=SAYDO_SCHEMA)
    return SayDo(
        table=table,
        anonymous=_anonymous(store, f, "nps IS NOT NULL", end=end_day),
        unobserved=int((table["respondents"] - table["observed"]).sum()),
        horizon_days=horizon_days,
        as_of=as_of,
    )


# ---------------------------------------------------------------------------------
# 7. High-value detractors to call
# ---------------------------------------------------------------------------------
DETRACTOR_COLUMNS = ("rank", "customer", "customer_key", "value", "basis", "margin", "last_score", "responded_at",
                     "touchpoint", "channel", "comment", "last_order")


def detractors_to_call(store: Store, f: Filters, *, clv: pl.DataFrame | None = None, clv_column: str = "clv",
                       limit: int = 100, margin_rate: float = DEFAULT_MARGIN_RATE) -> Linked:
    """The most valuable detractors, to call back.

    Detractors: identified customers whose latest NPS answer in the period is 0-6.
    Value: their historical gross margin (completed orders up to the end of the
    period after the global filters; ``coalesce(gross_margin, revenue x
    margin_rate)``), or, when ``clv`` (customer_key, clv) is given, their predicted
    CLV (customers missing from it rank last). Ranked by value, highest first (ties by
    customer key), the first ``limit`` kept.

    Table (:data:`DETRACTOR_COLUMNS`): rank, customer (masked id,
    :func:`metrics.retention.mask_id`), customer_key (internal, for drill-downs; not
    exported), value, basis (``margin`` or ``clv``), margin, last_score (the latest
    NPS answer), responded_at, touchpoint, channel, comment (of that answer),
    last_order (date of the last completed order). ``anonymous`` = anonymous
    detractor answers in the period (no one to call); ``total`` = identified
    detractors in all (before the limit). Export it with :func:`detractors_export`.
    """
    resp, params = _responses_sql(f)
    orders, oparams = f.orders_sql()
    basis = "clv" if clv is not None else "margin"
    tables = {}
    clv_join, value = "", "m.margin"
    if clv is not None:
        tables["clv_in"] = clv.select(pl.col("customer_key").cast(pl.Int64),
                                      pl.col(clv_column).cast(pl.Float64).alias("clv")).drop_nulls()
        clv_join, value = "LEFT JOIN clv_in v ON v.customer_key = d.customer_key", "v.clv"
    raw = store.query(
        f"WITH r AS ({resp}), d AS (SELECT * FROM ({LATEST_SQL}) WHERE nps <= 6), o AS ({orders}), "
        "m AS (SELECT customer_key, sum(margin) AS margin, max(ordered_at) AS last_at FROM o "
        "  WHERE ordered_at < $e AND customer_key IN (SELECT customer_key FROM d) GROUP BY 1) "
        f"SELECT d.customer_key, c.customer_id, {value} AS value, m.margin, d.nps AS last_score, d.responded_at, "
        "d.touchpoint, d.channel, d.comment, CAST(m.last_at AS DATE) AS last_order, count(*) OVER () AS total "
        f"FROM d LEFT JOIN m ON m.customer_key = d.customer_key {clv_join} "
        "LEFT JOIN customers c ON c.customer_key = d.customer_key "
        "ORDER BY value DESC NULLS LAST, d.customer_key LIMIT $limit",
        {**params, **oparams, "margin_rate": margin_rate, "e": _end_instant(f.end), "limit": int(limit)},
        tables=tables,
    )
    total = int(raw["total"][0]) if raw.height else 0
    table = raw.with_columns(
        pymap.series(raw.get_column("customer_id"), mask_id, name="customer"),
        pl.int_range(1, raw.height + 1, dtype=pl.Int64).alias("rank"),
        pl.lit(basis).alias("basis"),
        pl.col("customer_key").cast(pl.Int64), pl.col("last_score").cast(pl.Int64),
        pl.col("value").cast(pl.Float64), pl.col("margin").cast(pl.Float64),
    ).select(DETRACTOR_COLUMNS)
    return Linked(table, _anonymous(store, f, "nps <= 6"), 0, total)


def detractors_export(table: pl.DataFrame) -> pl.DataFrame:
    """The detractors list as it may leave the product: without customer_key, every
    text cell formula-safe (:func:`data.importer.neutralise`: a leading = + - @ tab
    or CR gets an apostrophe). Pass it to :func:`data.importer.to_excel_csv`."""
    from data.importer import neutralise_frame

    return neutralise_frame(table.drop("customer_key", strict=False))


# ---------------------------------------------------------------------------------
# 8. Key drivers
# ---------------------------------------------------------------------------------
DRIVER_SCHEMA = {
    "touchpoint": pl.Utf8, "measure": pl.Utf8, "n": pl.Int64, "rho": pl.Float64, "low": pl.Float64,
    "high": pl.Float64, "performance": pl.Float64, "performance_n": pl.Int64, "performance_low": pl.Float64,
    "performance_high": pl.Float64, "mean_score": pl.Float64, "quadrant": pl.Utf8,
}


def spearman_interval(rho: float | None, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """95% interval of a Spearman correlation: Fisher's z = atanh(rho) +- 1.96 x
    sqrt(1.06 / (n - 3)) (Fieller, Hartley & Pearson 1957), back through tanh; (None,
    None) with fewer than four pairs or no rho."""
    if rho is None or n < 4 or not math.isfinite(rho):
        return None, None
    zr = math.atanh(max(min(rho, 1 - 1e-12), -1 + 1e-12))
    half = z * math.sqrt(SPEARMAN_VAR / (n - 3))
    return math.tanh(zr - half), math.tanh(zr + half)


def quadrant(importance_high: bool, performance_high: bool) -> str:
    """Importance-performance quadrant: ``concentrate`` (important, performing below
    the median: fix first), ``keep_up`` (important, performing well), ``low_priority``
    (less important, below), ``overkill`` (less important, above: possibly over-served)."""
    if importance_high:
        return "keep_up" if performance_high else "concentrate"
    return "overkill" if performance_high else "low_priority"


def key_drivers(store: Store, f: Filters, *, min_n: int = MIN_DRIVER_N) -> Linked:
    """Which touchpoint scores move with NPS: an importance-performance table.

    - **Measure** of a touchpoint: CSAT when the touchpoint has CSAT answers in the
      period, else CES reversed (8 - CES, so higher is better on both). (In the demo
      every survey asks NPS, 70% of answers carry CSAT at every touchpoint and CES
      only some touchpoints, so every touchpoint uses CSAT.)
    - Per identified customer: their **touchpoint score** = the mean of their answers
      of the measure at that touchpoint in the period; their **NPS** = their latest
      NPS answer in the period (from any survey: there is no separate relationship
      survey in the demo, so for customers with one response both come from the same
      answer, the usual within-survey derived importance).
    - **Importance** rho = Spearman rank correlation between touchpoint score and NPS
      over the customers with both (average ranks for ties, as scipy.stats.spearmanr),
      n those customers, 95% interval by :func:`spearman_interval`; null below three
      customers or when either side is constant.
    - **Performance** = the touchpoint's share satisfied over ALL its responses in the
      period, anonymous ones included: CSAT 4-5, or CES 1-3 for a CES touchpoint
      (Wilson interval, performance_n answers); mean_score = their mean (CSAT 1-5, or
      CES 1-7 as answered).
    - **Quadrant** (:func:`quadrant`), for touchpoints with rho and at least ``min_n``
      customers: importance high when rho >= the median rho of those touchpoints,
      performance high when it is >= their median performance.

    Table: :data:`DRIVER_SCHEMA`, by rho (highest first). ``anonymous`` = anonymous
    responses with a touchpoint score (left out of the correlations, counted in
    performance); ``unmatched`` = identified customers with a touchpoint score but no
    NPS answer in the period.
    """
    resp, params = _responses_sql(f)
    perf = store.query(
        f"WITH r AS ({resp}) SELECT touchpoint, count(*) FILTER (WHERE customer_key IS NULL "
        "AND (csat IS NOT NULL OR ces IS NOT NULL)) AS anon, "
        f"{AGGREGATES}, avg(csat) AS csat_mean FROM r WHERE touchpoint IS NOT NULL GROUP BY 1", params,
    )
    pairs = store.query(
        f"WITH r AS ({resp}), n AS (SELECT customer_key, nps FROM ({LATEST_SQL})), "
        "s AS (SELECT customer_key, touchpoint, avg(csat) AS csat, avg(8 - ces) AS ease FROM r "
        "  WHERE customer_key IS NOT NULL AND touchpoint IS NOT NULL AND (csat IS NOT NULL OR ces IS NOT NULL) "
        "  GROUP BY 1, 2) "
        "SELECT s.touchpoint, s.customer_key, s.csat, s.ease, n.nps FROM s LEFT JOIN n USING (customer_key)", params,
    )
    measure = {r["touchpoint"]: ("csat" if r["csat_n"] else "ces") for r in perf.to_dicts()}
    pairs = pairs.join(pl.DataFrame({"touchpoint": list(measure), "measure": list(measure.values())},
                                    schema={"touchpoint": pl.Utf8, "measure": pl.Utf8}),
                       on="touchpoint", how="inner").with_columns(
        pl.when(pl.col("measure") == "csat").then(pl.col("csat")).otherwise(pl.col("ease")).alias("x")
    ).filter(pl.col("x").is_not_null())
    unmatched = int(pairs.filter(pl.col("nps").is_null()).select(pl.col("customer_key").n_unique()).item())
    pairs = pairs.filter(pl.col("nps").is_not_null())
    corr = pairs.group_by("touchpoint").agg(
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("x").n_unique().alias("nx"), pl.col("nps").n_unique().alias("ny"),
        pl.corr(pl.col("x").cast(pl.Float64), pl.col("nps").cast(pl.Float64), method="spearman").alias("rho"),
    )
    got = {r["touchpoint"]: r for r in corr.to_dicts()}
    rows = []
    for p in perf.to_dicts():
        tp, m = p["touchpoint"], measure[p["touchpoint"]]
        c = got.get(tp, {})
        n = int(c.get("n") or 0)
        rho = c.get("rho") if n >= 3 and (c.get("nx") or 0) > 1 and (c.get("ny") or 0) > 1 else None
        rho = None if rho is None or not math.isfinite(rho) else float(rho)
        lo, hi = spearman_interval(rho, n)
        good, k = (int(p["satisfied"]), int(p["csat_n"])) if m == "csat" else (int(p["easy"]), int(p["ces_n"]))
        plo, phi = wilson_interval(good, k)
        rows.append({
            "touchpoint": tp, "measure": m, "n": n, "rho": rho, "low": lo, "high": hi,
            "performance": ratio(good, k), "performance_n": k, "performance_low": plo, "performance_high": phi,
            "mean_score": p["csat_mean"] if m == "csat" else p["ces_mean"], "quadrant": None,
        })
    placed = [r for r in rows if r["rho"] is not None and r["n"] >= min_n and r["performance"] is not None]
    if placed:
        mi = _median([r["rho"] for r in placed])
        mp = _median([r["performance"] for r in placed])
        for r in placed:
            r["quadrant"] = quadrant(r["rho"] >= mi, r["performance"] >= mp)
    table = pl.DataFrame(rows, schema=DRIVER_SCHEMA).sort("rho", descending=True, nulls_last=True)
    return Linked(table, int(perf["anon"].sum()) if perf.height else 0, unmatched)


def _median(values: list[float]) -> float:
    v = sorted(values)
    k = len(v)
    return v[k // 2] if k % 2 else (v[k // 2 - 1] + v[k // 2]) / 2


# ---------------------------------------------------------------------------------
# 9. Verbatims
# ---------------------------------------------------------------------------------
STOP_WORDS_VI = frozenset("""
và là của có không được cho thì mà này rất quá với các những một đã sẽ đang cũng nên khi như để tôi mình
em anh chị shop ạ nhé nha nhỉ ơi à ừ ở thế vì nhưng hay hoặc đó đây đấy kia ra vào lên xuống lại nữa rồi
vẫn còn chỉ đều từ trong ngoài về theo bạn họ nó chúng ta tớ cậu ông bà cô chú này nọ ấy vậy thôi luôn
hơn lắm cái chiếc sự việc nào gì đâu bao nếu tuy do bởi nhiêu cả mọi từng vài mấy ai hết thêm đi
""".split())
STOP_WORDS_EN = frozenset("""
a an the and or but if then so than too very just also only i me my mine we us our ours you your yours he him
his she her hers it its they them their theirs this that these those there here what which who whom whose when
where why how is are was were be been being am do does did doing done have has had having will would shall
should can could may might must to of in on at for with from by as about into over under up down out off
again further once all any both each few more most other some such own same no nor not dont didnt doesnt
isnt wasnt arent werent cant wont im ive its thats s t d ll re ve m
""".split())
STOP_WORDS = STOP_WORDS_VI | STOP_WORDS_EN
_VI_LETTERS = "àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ"
VI_PATTERN = f"[{_VI_LETTERS}]"
_BREAK = "|"


def _clean_expr(col: pl.Expr) -> pl.Expr:
    """NFC, lower case, apostrophes dropped (didn't -> didnt), every run of characters
    that are not letters, digits, marks or spaces (punctuation, symbols, line breaks)
    made a phrase break token; split on spaces (empty tokens are dropped later)."""
    return (col.str.normalize("NFC").str.to_lowercase()
            .str.replace_all(r"['’ʼ`]", "")
            .str.replace_all(r"[^\p{L}\p{N}\p{M} ]+", f" {_BREAK} ")
            .str.split(" "))


def comment_terms(comments: pl.DataFrame, *, stop_words: frozenset[str] = STOP_WORDS, text: str = "comment",
                  bigrams: bool = True) -> pl.DataFrame:
    """The terms of each comment: ``comments`` holds a text column (``text``) and any
    others, which are carried along (an id, a group). Tokens: lower case, NFC,
    diacritics kept, punctuation stripped (apostrophes dropped inside words), split on
    spaces. A **unigram** is a token that is not a stop word and not only digits;
    a **bigram** is two unigrams adjacent in the original text (no stop word,
    punctuation, line break or number between them): "Giao hàng quá chậm, hẹn mãi"
    gives giao, hàng, chậm, hẹn, mãi and "giao hàng", "hẹn mãi". One row per
    occurrence: the other columns, term, kind (``unigram`` / ``bigram``), in text
    order (each unigram followed by the bigram it starts)."""
    keep = [c for c in comments.columns if c != text]
    base = (comments.with_row_index("_row").with_columns(_clean_expr(pl.col(text)).alias("_tok"))
            .explode("_tok").filter(pl.col("_tok").is_not_null() & (pl.col("_tok") != ""))
            .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_pos")))
    ok = (~pl.col("_tok").is_in(list(stop_words)) & (pl.col("_tok") != _BREAK)
          & ~pl.col("_tok").str.contains(r"^\p{N}+$"))
    base = base.with_columns(ok.alias("_ok"))
    uni = base.filter(pl.col("_ok")).select("_pos", *keep, pl.col("_tok").alias("term"),
                                            pl.lit("unigram").alias("kind"))
    if not bigrams:
        return uni.drop("_pos")
    # The next token of the same comment (the frame is in comment and text order).
    same = pl.col("_row").shift(-1) == pl.col("_row")
    nxt = base.with_columns(
        pl.col("_tok").shift(-1).alias("_next"), (same & pl.col("_ok").shift(-1)).fill_null(False).alias("_nok"),
    ).filter(pl.col("_ok") & pl.col("_nok"))
    bi = nxt.select("_pos", *keep, (pl.col("_tok") + " " + pl.col("_next")).alias("term"),
                    pl.lit("bigram").alias("kind"))
    return pl.concat([uni, bi]).sort("_pos", "kind", descending=[False, True], maintain_order=True).drop("_pos")


def tokenize(text: str | None) -> list[str]:
    """All tokens of one text (stop words included): lower case, NFC, diacritics
    kept, punctuation stripped. ``"Giao HÀNG nhanh!"`` -> giao, hàng, nhanh."""
    if not text:
        return []
    tokens = pl.select(_clean_expr(pl.lit(text, pl.Utf8))).item()
    return [t for t in tokens if t and t != _BREAK]


def terms(text: str | None, *, stop_words: frozenset[str] = STOP_WORDS) -> tuple[list[str], list[str]]:
    """The unigrams and bigrams of one text, as :func:`comment_terms`."""
    if not text:
        return [], []
    t = comment_terms(pl.DataFrame({"comment": [text]}), stop_words=stop_words)
    return (t.filter(pl.col("kind") == "unigram")["term"].to_list(),
            t.filter(pl.col("kind") == "bigram")["term"].to_list())


def language(text: str | None) -> str | None:
    """``vi`` when the text holds a Vietnamese letter (a letter with a Vietnamese
    diacritic, or đ), else ``en`` (Vietnamese typed without diacritics counts as
    English)."""
    if not text:
        return None
    return "vi" if re.search(VI_PATTERN, unicodedata.normalize("NFC", text).lower()) else "en"


def log_odds(counts: pl.DataFrame, *, prior_strength: float | None = None) -> pl.DataFrame:
    """Weighted log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi &
    Quinn 2008, "Fightin' words", eq. 16-22), each group against all the others.

    ``counts``: group, term, count (occurrences). With y_w^i the count of term w in
    group i, n_i the group's total, y_w^j and n_j those of the other groups, the
    prior alpha_w = alpha_0 x (pooled count of w / pooled total) (the pooled corpus as
    the informative prior; alpha_0 = ``prior_strength``, default the pooled total, so
    alpha_w = pooled count of w)::

        delta = log((y_i + a_w) / (n_i + a_0 - y_i - a_w)) - log((y_j + a_w) / (n_j + a_0 - y_j - a_w))
        var   = 1 / (y_i + a_w) + 1 / (y_j + a_w)
        z     = delta / sqrt(var)

    Returns group, term, count, delta, z for every (group, term) with a count, by
    group and z (highest first). z is null when a log argument is not positive
    (a single group, or a single term)."""
    c = counts.select("group", "term", pl.col("count").cast(pl.Float64)).group_by("group", "term").agg(
        pl.col("count").sum())
    total = float(c["count"].sum()) if c.height else 0.0
    a0 = total if prior_strength is None else float(prior_strength)
    pooled = c.group_by("term").agg(pl.col("count").sum().alias("y_all"))
    sizes = c.group_by("group").agg(pl.col("count").sum().alias("n_i"))
    out = c.join(pooled, on="term").join(sizes, on="group").with_columns(
        (pl.lit(a0) * pl.col("y_all") / total if total else pl.lit(0.0)).alias("a_w"),
        (pl.col("y_all") - pl.col("count")).alias("y_j"), (pl.lit(total) - pl.col("n_i")).alias("n_j"),
    )
    yi, yj, aw = pl.col("count"), pl.col("y_j"), pl.col("a_w")
    num_i, den_i = yi + aw, pl.col("n_i") + a0 - yi - aw
    num_j, den_j = yj + aw, pl.col("n_j") + a0 - yj - aw
    valid = (num_i > 0) & (den_i > 0) & (num_j > 0) & (den_j > 0)
    delta = pl.when(valid).then((num_i / den_i).log() - (num_j / den_j).log())
    out = out.with_columns(delta.alias("delta")).with_columns(
        pl.when(valid).then(pl.col("delta") / (1 / num_i + 1 / num_j).sqrt()).alias("z"),
        pl.col("count").cast(pl.Int64),
    )
    return out.select("group", "term", "count", "delta", "z").sort(
        ["group", "z", "term"], descending=[False, True, False], nulls_last=True)


def _comments(store: Store, f: Filters) -> pl.DataFrame:
    resp, params = _responses_sql(f)
    return store.query(
        f"WITH r AS ({resp}) SELECT response_id, customer_key, nps, touchpoint, channel, survey, comment "
        "FROM r WHERE comment IS NOT NULL", params,
    )


def distinctive_terms(store: Store, f: Filters, *, by: str | pl.DataFrame = "category", top: int = 15,
                      min_count: int = 3, lang: str = "all", prior_strength: float | None = None,
                      stop_words: frozenset[str] = STOP_WORDS) -> Linked:
    """The most distinctive words and two-word phrases of each group's comments.

    Comments of the period's responses (after the filters), grouped by ``by``:
    ``category`` (promoter / passive / detractor by the response's own NPS; comments
    without NPS left out), ``touchpoint``, ``channel``, ``survey``, or a frame
    (customer_key, group) of customer groups (anonymous comments left out and
    counted). ``lang``: ``all``, ``vi`` or ``en`` (:func:`language`). Terms as
    :func:`comment_terms`; unigrams and bigrams are scored separately, each by
    :func:`log_odds` of its group against all the other groups.

    Table: group, kind, term, count (occurrences in the group), z, rank (1 = most
    distinctive within group and kind): per group and kind the ``top`` terms with
    count >= ``min_count`` and z > 0. ``anonymous`` = anonymous comments left out
    (customer groups only); ``unmatched`` = comments without a group.
    """
    c = _comments(store, f)
    if lang != "all":
        vi = pl.col("comment").str.normalize("NFC").str.to_lowercase().str.contains(VI_PATTERN)
        c = c.filter(vi if lang == "vi" else ~vi)
    anonymous = 0
    if isinstance(by, pl.DataFrame):
        g = _groups_frame(by)
        anonymous = int(c["customer_key"].is_null().sum())
        c = c.with_columns(pl.col("customer_key").cast(pl.Int64)).join(g, on="customer_key", how="left")
    elif by == "category":
        c = c.with_columns(_category_expr("nps").alias("group"))
    elif by in BREAKDOWNS:
        c = c.with_columns(pl.col(by).alias("group"))
    else:
        raise ValueError(f"by must be 'category', one of {BREAKDOWNS} or a frame, not {by!r}")
    unmatched = int(c["group"].is_null().sum()) - anonymous
    c = c.filter(pl.col("group").is_not_null()).select("group", "comment")
    schema = {"group": pl.Utf8, "kind": pl.Utf8, "term": pl.Utf8, "count": pl.Int64, "z": pl.Float64,
              "rank": pl.Int64}
    if not c.height:
        return Linked(pl.DataFrame(schema=schema), anonymous, unmatched)
    # Each distinct text is tokenised once, its terms weighted by how often it occurs.
    c = c.group_by("group", "comment").agg(pl.len().alias("_n"))
    t = comment_terms(c, stop_words=stop_words).group_by("group", "kind", "term").agg(
        pl.col("_n").sum().alias("count"))
    parts = []
    for kind in ("unigram", "bigram"):
        k = t.filter(pl.col("kind") == kind)
        if not k.height:
            continue
        s = log_odds(k.select("group", "term", "count"), prior_strength=prior_strength).with_columns(
            pl.lit(kind).alias("kind"))
        s = s.filter((pl.col("count") >= min_count) & (pl.col("z") > 0)).sort(
            ["group", "z", "term"], descending=[False, True, False])
        parts.append(s.with_columns(pl.int_range(1, pl.len() + 1).over("group").cast(pl.Int64).alias("rank"))
                     .filter(pl.col("rank") <= top))
    table = pl.concat(parts).select(list(schema)).cast(schema) if parts else pl.DataFrame(schema=schema)
    return Linked(table.sort(["group", "kind", "rank"], descending=[False, True, False]), anonymous, unmatched)


def fold(text: str) -> str:
    """Case- and diacritics-insensitive form: lower case, marks removed (NFD), đ -> d,
    NFC. ``"Đóng GÓI"`` -> ``"dong goi"``. Matches DuckDB's
    ``replace(strip_accents(lower(x)), 'đ', 'd')``."""
    s = unicodedata.normalize("NFD", text.lower())
    s = "".join(ch for ch in s if unicodedata.category(ch) != "Mn")
    return unicodedata.normalize("NFC", s.replace("đ", "d"))


SEARCH_COLUMNS = ("responded_at", "customer", "nps", "category", "csat", "ces", "touchpoint", "channel", "survey",
                  "comment")


def search_comments(store: Store, f: Filters, query: str = "", *, fold_diacritics: bool = True,
                    category_filter: str | None = None, limit: int = 200) -> CommentSearch:
    """The period's comments containing ``query`` (one phrase, a substring), newest
    first.

    Always case-insensitive (lower case, NFC on both sides); with
    ``fold_diacritics`` also diacritics-insensitive (:func:`fold`: "giao hang" finds
    "Giao hàng", "dong goi" finds "Đóng gói"); without it "hang" does not find "hàng".
    An empty query matches every comment. ``category_filter``: promoter / passive /
    detractor (by the response's NPS). Table (:data:`SEARCH_COLUMNS`): responded_at,
    customer (masked id; null for anonymous), nps, category, csat, ces, touchpoint,
    channel, survey, comment; at most ``limit`` rows. ``matches``: all matching
    comments.
    """
    resp, params = _responses_sql(f)
    if fold_diacritics:
        hay, needle = "replace(strip_accents(lower(comment)), 'đ', 'd')", fold(query.strip())
    else:
        hay, needle = "lower(nfc_normalize(comment))", unicodedata.normalize("NFC", query.strip()).lower()
    conds = ["comment IS NOT NULL", f"contains({hay}, $q)"]
    if category_filter is not None:
        if category_filter not in CATEGORIES:
            raise ValueError(f"category_filter must be one of {CATEGORIES}")
        conds.append(f"nps IS NOT NULL AND {CATEGORY_SQL.format(col='nps')} = $cat")
        params["cat"] = category_filter
    raw = store.query(
        f"WITH r AS ({resp}), m AS (SELECT * FROM r WHERE {' AND '.join(conds)}) "
        "SELECT m.*, c.customer_id, count(*) OVER () AS matches FROM m "
        "LEFT JOIN customers c ON c.customer_key = m.customer_key "
        "ORDER BY m.responded_at DESC, m.response_id DESC LIMIT $limit",
        {**params, "q": needle, "limit": int(limit)},
    )
    matches = int(raw["matches"][0]) if raw.height else 0
    table = raw.with_columns(
        pymap.series(raw.get_column("customer_id"), mask_id, name="customer"),
        pl.col("nps").cast(pl.Int64), pl.col("csat").cast(pl.Int64), pl.col("ces").cast(pl.Int64),
    ).with_columns(_category_expr("nps").alias("category")).select(SEARCH_COLUMNS)
    return CommentSearch(table, matches)
