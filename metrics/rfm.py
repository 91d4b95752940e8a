"""RFM: recency, frequency and monetary quintile scores, and the named segments.

Definitions (shared/DESIGN.md, "RFM"):

- **Customers scored**: every customer with at least one completed order on or
  before ``as_of``, after the global channel, region and loyalty filters. All history
  up to ``as_of`` counts; the filters' own period is ignored (like the CLV models).
- **recency_days** = ``as_of`` minus the (local) date of the last completed order, in
  whole days (0 = bought on ``as_of``); **frequency** = completed orders (each order
  counts, several on one day too); **monetary** = their revenue; ``margin`` = their
  gross margin (an order without one counts ``revenue x margin_rate``).
- **Quintile scores** r, f, m in 1..5, 5 the best (most recent, most frequent,
  highest spend). With the customers ordered from worst to best on the value and
  ``rank_min`` the 1-based rank that ties share (SQL ``RANK()``: the lowest position
  of the tied group), over ``n`` customers::

      score = 1 + floor(5 x (rank_min - 1) / n)

  i.e. ``1 + floor(5 x the share of customers strictly worse)``. Without ties these
  are exact quintiles (n = 10 gives 1,1,2,2,3,3,4,4,5,5); equal values always get
  the same score; the worst value always scores 1 and only values with at least 80%
  of customers strictly below them score 5. With heavy ties the tied group keeps
  the score of its lowest position and the scores it spans stay empty: when 60% of
  customers have one order, they all score f = 1 and two orders score
  ``1 + floor(5 x 0.6) = 4`` (a two-time buyer is better than 60% of the base).
  Worse = a larger recency_days, a smaller frequency, a smaller monetary.
- **FM** = ``floor((f + m + 1) / 2)``: the mean of f and m rounded half up (f = 2,
  m = 3 gives 3; Python's ``round`` would give 2).
- **Segments**: rules on the R x FM grid, evaluated in order, the first match wins
  (:data:`DEFAULT_SEGMENT_RULES`; a rule without ``r`` or ``fm`` matches any score on
  that axis, so a rule without either is a catch-all). The default grid is the widely
  used 5 x 5 recency vs frequency-monetary layout of the eleven standard segments
  (rows FM 5 to 1, columns R 1 to 5)::

      FM 5  cant_lose    cant_lose    loyal           champions   champions
      FM 4  at_risk      at_risk      loyal           champions   champions
      FM 3  at_risk      at_risk      need_attention  potential   potential
      FM 2  hibernating  hibernating  about_to_sleep  potential   potential
      FM 1  lost         hibernating  about_to_sleep  promising   new
            R 1          R 2          R 3             R 4         R 5

  (potential = potential_loyalist). Each segment has labels and a suggested action in
  English and Vietnamese (:data:`SEGMENTS`).

SQL (DuckDB) computes the per-customer values and the ranks in one pass (standard
window functions); Polars assigns the segments and summarises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import polars as pl

from data.store import Store
from metrics import pymap
from metrics.filters import Filters, instant
from metrics.kpis import DEFAULT_MARGIN_RATE

SCORES = (1, 2, 3, 4, 5)
RFM_COLUMNS = {
    "customer_key": pl.Int32, "last_order": pl.Date, "recency_days": pl.Int64, "frequency": pl.Int64,
    "monetary": pl.Float64, "margin": pl.Float64, "r": pl.Int64, "f": pl.Int64, "m": pl.Int64,
}

# Segment code -> labels and suggested action, in the grid's order from best to worst.
SEGMENTS: dict[str, dict[str, str]] = {
    "champions": {
        "label_en": "Champions", "label_vi": "Nhà vô địch",
        "action_en": "Reward them; invite them to the referral and brand ambassador programme; "
                     "early access to new products.",
        "action_vi": "Tri ân; mời tham gia chương trình giới thiệu và đại sứ thương hiệu; "
                     "cho trải nghiệm sản phẩm mới sớm.",
    },
    "loyal": {
        "label_en": "Loyal", "label_vi": "Khách hàng trung thành",
        "action_en": "Upsell higher-value products; offer a loyalty tier upgrade; ask for reviews.",
        "action_vi": "Bán thêm sản phẩm giá trị cao hơn; nâng hạng thành viên; mời đánh giá sản phẩm.",
    },
    "potential_loyalist": {
        "label_en": "Potential Loyalist", "label_vi": "Tiềm năng trung thành",
        "action_en": "Offer loyalty programme membership; recommend related products.",
        "action_vi": "Mời tham gia chương trình thành viên; gợi ý sản phẩm liên quan.",
    },
    "new": {
        "label_en": "New", "label_vi": "Khách hàng mới",
        "action_en": "Onboarding content and a welcome series; make the first purchase a success.",
        "action_vi": "Gửi nội dung hướng dẫn và chuỗi thư chào mừng; giúp lần mua đầu tiên thành công.",
    },
    "promising": {
        "label_en": "Promising", "label_vi": "Triển vọng",
        "action_en": "Build brand awareness; a small incentive for the second purchase.",
        "action_vi": "Tăng nhận biết thương hiệu; ưu đãi nhỏ cho lần mua thứ hai.",
    },
    "need_attention": {
        "label_en": "Need Attention", "label_vi": "Cần quan tâm",
        "action_en": "Limited-time offers based on past purchases; reactivate before they slip away.",
        "action_vi": "Ưu đãi có thời hạn dựa trên lịch sử mua hàng; kích hoạt lại trước khi khách rời đi.",
    },
    "about_to_sleep": {
        "label_en": "About to Sleep", "label_vi": "Sắp ngủ đông",
        "action_en": "Share popular products with a discount; reconnect before they go dormant.",
        "action_vi": "Giới thiệu sản phẩm bán chạy kèm giảm giá; kết nối lại trước khi khách ngủ đông.",
    },
    "at_risk": {
        "label_en": "At Risk", "label_vi": "Có nguy cơ rời bỏ",
        "action_en": "Personalised win-back messages and offers; ask what went wrong.",
        "action_vi": "Gửi thông điệp và ưu đãi cá nhân hoá để kéo khách quay lại; hỏi lý do khách không mua nữa.",
    },
    "cant_lose": {
        "label_en": "Can't Lose Them", "label_vi": "Không thể để mất",
        "action_en": "Win them back in person: a call or a premium offer; do not lose them to a competitor.",
        "action_vi": "Liên hệ trực tiếp, gọi điện hoặc ưu đãi đặc biệt để giành lại; đừng để mất vào tay đối thủ.",
    },
    "hibernating": {
        "label_en": "Hibernating", "label_vi": "Ngủ đông",
        "action_en": "A reactivation offer with relevant products; otherwise keep contact low-cost.",
        "action_vi": "Ưu đãi kích hoạt lại với sản phẩm phù hợp; nếu không, giữ liên lạc với chi phí thấp.",
    },
    "lost": {
        "label_en": "Lost", "label_vi": "Đã mất",
        "action_en": "Low-cost reactivation, or let them go; do not spend heavily.",
        "action_vi": "Chiến dịch kích hoạt lại chi phí thấp, hoặc chấp nhận để khách đi; không chi nhiều.",
    },
}

# The default R x FM grid (see the module docstring): first match wins; the last rule
# is the catch-all, which in this grid receives exactly R 1-2 x FM 1-2 less the Lost
# corner (R 1, FM 1).
DEFAULT_SEGMENT_RULES: list[dict[str, Any]] = [
    {"name": "champions", "r": (4, 5), "fm": (4, 5)},
    {"name": "loyal", "r": (3, 3), "fm": (4, 5)},
    {"name": "potential_loyalist", "r": (4, 5), "fm": (2, 3)},
    {"name": "new", "r": (5, 5), "fm": (1, 1)},
    {"name": "promising", "r": (4, 4), "fm": (1, 1)},
    {"name": "need_attention", "r": (3, 3), "fm": (3, 3)},
    {"name": "about_to_sleep", "r": (3, 3), "fm": (1, 2)},
    {"name": "cant_lose", "r": (1, 2), "fm": (5, 5)},
    {"name": "at_risk", "r": (1, 2), "fm": (3, 4)},
    {"name": "lost", "r": (1, 1), "fm": (1, 1)},
    {"name": "hibernating"},
]

RULE_KEYS = ("name", "r", "fm")


# ---------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------
def rfm_sql(f: Filters, *, as_of: date) -> tuple[str, dict[str, Any]]:
    """SQL and parameters of :func:`rfm_scores` (the caller binds ``margin_rate``)."""
    base, params = f.orders_sql()
    params = {**params, "as_of": as_of, "next": instant(as_of + timedelta(days=1))}
    sql = f"""
WITH o AS ({base}),
c AS (
    SELECT customer_key, CAST(max(ordered_at) AS DATE) AS last_order, count(*) AS frequency,
           sum(revenue) AS monetary, sum(margin) AS margin
    FROM o WHERE ordered_at < $next
    GROUP BY customer_key
),
k AS (
    SELECT *, CAST(CAST($as_of AS DATE) - last_order AS BIGINT) AS recency_days, count(*) OVER () AS n FROM c
)
SELECT customer_key, last_order, recency_days, CAST(frequency AS BIGINT) AS frequency,
       CAST(monetary AS DOUBLE) AS monetary, CAST(margin AS DOUBLE) AS margin,
       CAST(1 + floor(5.0 * (rank() OVER (ORDER BY recency_days DESC) - 1) / n) AS BIGINT) AS r,
       CAST(1 + floor(5.0 * (rank() OVER (ORDER BY frequency) - 1) / n) AS BIGINT) AS f,
       CAST(1 + floor(5.0 * (rank() OVER (ORDER BY monetary) - 1) / n) AS BIGINT) AS m
FROM k ORDER BY customer_key"""
    return sql, params


def rfm_scores(store: Store, f: Filters, *, as_of: date, margin_rate: float = DEFAULT_MARGIN_RATE) -> pl.DataFrame:
    """Per customer with a completed order on or before ``as_of`` (filters' channels,
    regions and loyalty apply; all history up to ``as_of``): customer_key,
    last_order (date), recency_days (``as_of`` - last order date), frequency
    (completed orders), monetary (their revenue), margin (their gross margin, or
    revenue x ``margin_rate`` where an order has none), and the quintile scores r, f,
    m in 1..5 (5 = most recent / most frequent / highest spend):
    ``score = 1 + floor(5 x (rank_min - 1) / n)`` with the customers ranked from worst
    to best and ties sharing their lowest rank (see the module docstring)."""
    sql, params = rfm_sql(f, as_of=as_of)
    out = store.query(sql, {**params, "margin_rate": margin_rate})
    if out.height == 0:
        return pl.DataFrame(schema=RFM_COLUMNS)
    return out.select(list(RFM_COLUMNS)).cast(RFM_COLUMNS)  # type: ignore[arg-type]


def fm_score(f: Any, m: Any) -> Any:
    """FM = floor((f + m + 1) / 2): the mean of the f and m scores rounded half up.
    Works on ints and on Polars expressions or Series."""
    return (f + m + 1) // 2


# ---------------------------------------------------------------------------------
# Segment rules
# ---------------------------------------------------------------------------------
def _range(rule: Mapping[str, Any], axis: str) -> tuple[int, int]:
    got = rule.get(axis)
    return (1, 5) if got is None else (int(got[0]), int(got[1]))


def _range_problem(value: Any) -> str | None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return "must be a pair (low, high)"
    lo, hi = value
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)):
        return "must hold whole numbers"
    if not (1 <= lo <= hi <= 5):
        return f"({lo}, {hi}) must satisfy 1 <= low <= high <= 5"
    return None


def validate_rules(rules: Sequence[Mapping[str, Any]]) -> list[str]:
    """Problems with a segment rule list, in plain English (empty = usable).

    A rule is a mapping with ``name`` (a code of :data:`SEGMENTS`) and optional
    ``r`` and ``fm`` ranges ``(low, high)``, whole numbers with
    ``1 <= low <= high <= 5`` (a missing range = any score). Rules are evaluated in
    order and the first match wins. Reported: a list that is empty or not a list of
    mappings, unknown names or keys, bad ranges, rules that never apply (earlier rules
    take all their cells) and grid cells (R, FM) that no rule assigns (gaps).
    """
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence) or not rules:
        return ["The segment rules must be a non-empty list of rules."]
    problems: list[str] = []
    valid: list[tuple[int, str, tuple[int, int], tuple[int, int]]] = []
    for i, rule in enumerate(rules, start=1):
        if not isinstance(rule, Mapping):
            problems.append(f"Rule {i} is not a mapping with a name and score ranges.")
            continue
        name = rule.get("name")
        label = f"Rule {i} ({name})" if name else f"Rule {i}"
        ok = True
        if name not in SEGMENTS:
            problems.append(f"{label}: unknown segment name; use one of {', '.join(SEGMENTS)}.")
            ok = False
        extra = sorted(set(rule) - set(RULE_KEYS), key=str)
        if extra:
            problems.append(f"{label}: unknown keys {', '.join(map(str, extra))}; a rule has name, r and fm.")
            ok = False
        for axis in ("r", "fm"):
            if axis in rule and rule[axis] is not None:
                why = _range_problem(rule[axis])
                if why:
                    problems.append(f"{label}: the {axis} range {why}.")
                    ok = False
        if ok:
            valid.append((i, str(name), _range(rule, "r"), _range(rule, "fm")))
    taken: set[tuple[int, int]] = set()
    for i, name, (r0, r1), (f0, f1) in valid:
        cells = {(r, fm) for r in range(r0, r1 + 1) for fm in range(f0, f1 + 1)}
        if not cells - taken:
            problems.append(f"Rule {i} ({name}) never applies: earlier rules take all its cells.")
        taken |= cells
    if len(valid) == len(rules):
        gaps = [(r, fm) for fm in SCORES for r in SCORES if (r, fm) not in taken]
        for r, fm in gaps:
            problems.append(f"The cell R = {r}, FM = {fm} is not assigned to any segment.")
    return problems


def segment_grid(rules: Sequence[Mapping[str, Any]] = DEFAULT_SEGMENT_RULES) -> pl.DataFrame:
    """The 25 cells of the R x FM grid with the segment the rules give each: columns
    r, fm, segment (null where no rule applies). Rules are assumed valid."""
    rows = []
    for r in SCORES:
        for fm in SCORES:
            seg = None
            for rule in rules:
                (r0, r1), (f0, f1) = _range(rule, "r"), _range(rule, "fm")
                if r0 <= r <= r1 and f0 <= fm <= f1:
                    seg = str(rule["name"])
                    break
            rows.append({"r": r, "fm": fm, "segment": seg})
    return pl.DataFrame(rows, schema={"r": pl.Int64, "fm": pl.Int64, "segment": pl.Utf8})


def assign_segments(scores: pl.DataFrame, rules: Sequence[Mapping[str, Any]] = DEFAULT_SEGMENT_RULES) -> pl.DataFrame:
    """``scores`` (with integer columns r, f, m in 1..5) plus ``fm`` =
    floor((f + m + 1) / 2) and ``segment``: the name of the first rule whose ``r``
    and ``fm`` ranges hold the customer's scores. Raises ValueError with the
    :func:`validate_rules` problems when the rules are not usable."""
    problems = validate_rules(rules)
    if problems:
        raise ValueError("The segment rules are not usable:\n" + "\n".join(problems))
    grid = segment_grid(rules)
    out = scores.with_columns(fm_score(pl.col("f").cast(pl.Int64), pl.col("m").cast(pl.Int64)).alias("fm"))
    out = out.with_columns(pl.col("r").cast(pl.Int64).alias("_r"))
    return (out.join(grid.rename({"r": "_r"}), on=["_r", "fm"], how="left", maintain_order="left")
            .drop("_r"))


def rfm_segments(store: Store, f: Filters, *, as_of: date, margin_rate: float = DEFAULT_MARGIN_RATE,
                 rules: Sequence[Mapping[str, Any]] = DEFAULT_SEGMENT_RULES) -> pl.DataFrame:
    """:func:`rfm_scores` with :func:`assign_segments`: the scores plus fm and segment."""
    return assign_segments(rfm_scores(store, f, as_of=as_of, margin_rate=margin_rate), rules)


def segment_summary(scored: pl.DataFrame) -> pl.DataFrame:
    """One row per segment of :data:`SEGMENTS` (in that order, segments without
    customers included with 0 and null means): segment, label_en, label_vi,
    customers, share (of all scored customers), revenue (sum of monetary),
    revenue_share (of all revenue; null when it is 0), and the means of recency_days,
    frequency and monetary. ``scored`` comes from :func:`assign_segments`."""
    total_n = scored.height
    total_rev = float(scored["monetary"].sum()) if total_n else 0.0
    agg = scored.group_by("segment").agg(
        pl.len().alias("customers"), pl.col("monetary").sum().alias("revenue"),
        pl.col("recency_days").mean().alias("mean_recency_days"),
        pl.col("frequency").mean().alias("mean_frequency"),
        pl.col("monetary").mean().alias("mean_monetary"),
    )
    base = pl.DataFrame({
        "segment": list(SEGMENTS),
        "label_en": [s["label_en"] for s in SEGMENTS.values()],
        "label_vi": [s["label_vi"] for s in SEGMENTS.values()],
    })
    out = base.join(agg, on="segment", how="left", maintain_order="left").with_columns(
        pl.col("customers").fill_null(0).cast(pl.Int64), pl.col("revenue").fill_null(0.0).cast(pl.Float64))
    return out.with_columns(
        (pl.col("customers") / total_n if total_n else pl.lit(0.0)).alias("share"),
        (pl.col("revenue") / total_rev if total_rev else pl.lit(None, dtype=pl.Float64)).alias("revenue_share"),
    ).select("segment", "label_en", "label_vi", "customers", "share", "revenue", "revenue_share",
             "mean_recency_days", "mean_frequency", "mean_monetary")


# ---------------------------------------------------------------------------------
# The grid, movement between dates, the mix over time, member lists
# ---------------------------------------------------------------------------------
NOT_YET = "not_yet"  # movement: no completed order by the first date


def grid_summary(scored: pl.DataFrame) -> pl.DataFrame:
    """The 25 R x FM cells of :func:`assign_segments` output: r, fm, segment (the
    most common in the cell; the rules give one per cell), customers, revenue (sum
    of monetary), margin; cells without customers have 0."""
    cells = pl.DataFrame({"r": [r for r in SCORES for _ in SCORES], "fm": [fm for _ in SCORES for fm in SCORES]},
                         schema={"r": pl.Int64, "fm": pl.Int64})
    agg = scored.group_by(pl.col("r").cast(pl.Int64), pl.col("fm").cast(pl.Int64)).agg(
        pl.len().cast(pl.Int64).alias("customers"), pl.col("monetary").sum().alias("revenue"),
        pl.col("margin").sum().alias("margin"), pl.col("segment").mode().first().alias("segment"))
    return cells.join(agg, on=["r", "fm"], how="left").with_columns(
        pl.col("customers").fill_null(0), pl.col("revenue").fill_null(0.0), pl.col("margin").fill_null(0.0)
    ).sort("fm", "r", descending=[True, False])


def segment_movement(store: Store, f: Filters, d1: date, d2: date, *, margin_rate: float = DEFAULT_MARGIN_RATE,
                     rules: Sequence[Mapping[str, Any]] = DEFAULT_SEGMENT_RULES) -> pl.DataFrame:
    """How customers moved between segments from ``d1`` to ``d2`` (each date's own
    RFM scores over all customers then; :data:`NOT_YET` = no completed order by
    ``d1``): from_segment, to_segment, customers. Every customer scored at ``d2``
    appears once, so the flows into each segment sum to its size at ``d2``."""
    a = rfm_segments(store, f, as_of=d1, margin_rate=margin_rate, rules=rules).select(
        "customer_key", pl.col("segment").alias("from_segment"))
    b = rfm_segments(store, f, as_of=d2, margin_rate=margin_rate, rules=rules).select(
        "customer_key", pl.col("segment").alias("to_segment"))
    j = b.join(a, on="customer_key", how="left").with_columns(pl.col("from_segment").fill_null(NOT_YET))
    order = {s: i for i, s in enumerate((NOT_YET, *SEGMENTS))}
    return (j.group_by("from_segment", "to_segment").agg(pl.len().cast(pl.Int64).alias("customers"))
            .with_columns(pl.col("from_segment").replace_strict(order, default=len(order)).alias("_a"),
                          pl.col("to_segment").replace_strict(order, default=len(order)).alias("_b"))
            .sort("_a", "_b").drop("_a", "_b"))


def segment_mix(store: Store, f: Filters, dates: Sequence[date], *, margin_rate: float = DEFAULT_MARGIN_RATE,
                rules: Sequence[Mapping[str, Any]] = DEFAULT_SEGMENT_RULES) -> pl.DataFrame:
    """The segment mix at each date (RFM scored at that date): date, segment,
    customers, share (of the customers scored that day)."""
    parts = []
    for d in dates:
        s = rfm_segments(store, f, as_of=d, margin_rate=margin_rate, rules=rules)
        if s.height:
            parts.append(s.group_by("segment").agg(pl.len().cast(pl.Int64).alias("customers")).with_columns(
                pl.lit(d).alias("date"), (pl.col("customers") / s.height).alias("share")))
    if not parts:
        return pl.DataFrame(schema={"date": pl.Date, "segment": pl.Utf8, "customers": pl.Int64, "share": pl.Float64})
    return pl.concat(parts).select("date", "segment", "customers", "share").sort("date", "segment")


def members(store: Store, scored: pl.DataFrame, keys: pl.DataFrame | None = None, *, limit: int | None = None
            ) -> pl.DataFrame:
    """A member list for export, masked (ids, names, emails, phones as in
    :mod:`metrics.retention`): customer_id, name, email, phone, region,
    acquisition_channel, r, f, m, segment, last_order, frequency, monetary, margin;
    the customers of ``scored`` (optionally only those in ``keys``: customer_key),
    highest monetary first."""
    from metrics.retention import mask_email, mask_id, mask_name, mask_phone

    part = scored if keys is None else scored.join(keys.select("customer_key"), on="customer_key", how="semi")
    part = part.sort("monetary", descending=True)
    if limit is not None:
        part = part.head(limit)
    info = store.query("SELECT customer_key, customer_id, name, email, phone, region, acquisition_channel "
                       "FROM customers").with_columns(pl.col("customer_key").cast(part.schema["customer_key"]))
    out = part.join(info, on="customer_key", how="left", maintain_order="left")
    out = pymap.columns(out, {"customer_id": mask_id, "name": mask_name, "email": mask_email, "phone": mask_phone})
    return out.select(
        "customer_id", "name", "email", "phone",
        "region", "acquisition_channel", "r", "f", "m", "segment", "last_order", "frequency", "monetary", "margin")
