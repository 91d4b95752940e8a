"""The metric suite: every computation the pages make, as plain calls on a store.

Used by tests/test_spark.py (each result must be the same on DuckDB and on Spark, and
every query the suite issues must translate) and by tests/benchmark.py (each page's
computation on both engines). The calls follow pages/ui/frame.py's cached functions,
with the pages' default settings and a few non-default ones (segment splits, week
cohorts, money retention, filters on channel and region).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from metrics import churn, kpis, rfm
from metrics import clv_view as CV
from metrics import loyalty as L
from metrics import personas as P
from metrics import retention as R
from metrics import surveys as S
from metrics.filters import Filters, ViewState, comparison_period


@dataclass(frozen=True)
class Setting:
    first: date
    last: date
    f: Filters
    comparison: tuple[date, date] | None


def setting(store, **view: Any) -> Setting:
    """The default view (its period ends on the data's last day), with ``view`` changes."""
    first, last = kpis.data_bounds(store)
    state = ViewState(**view)
    f = state.filters(as_of=last, first=first)
    return Setting(first, last, f, comparison_period(f.start, f.end, state.comparison))


def _rules() -> list[dict]:
    return [dict(r) for r in rfm.DEFAULT_SEGMENT_RULES]


def _segments(store, s: Setting) -> pl.DataFrame:
    return rfm.rfm_segments(store, CV.model_filters(s.f), as_of=s.last, rules=_rules()).select(
        "customer_key", pl.col("segment").alias("group"))


def _scored(store, s: Setting) -> CV.Scored:
    return CV.score(store, CV.model_filters(s.f), as_of=s.last, settings=CV.Settings())


# page -> [(name, call(store, setting))]
SUITE: dict[str, list[tuple[str, Callable[[Any, Setting], Any]]]] = {
    "overview": [
        ("bounds", lambda st, s: kpis.data_bounds(st)),
        ("overview", lambda st, s: kpis.overview(st, s.f, comparison=s.comparison)),
        ("distinct_channels", lambda st, s: st.query(
            "SELECT DISTINCT coalesce(acquisition_channel, 'unknown') AS v FROM customers ORDER BY v")),
        ("loyalty_values", lambda st, s: st.query("SELECT unnest(['member', 'non_member']) AS v")),
    ],
    "retention": [
        ("retention_month", lambda st, s: R.retention_view(st, s.f, R.CohortSpec(), as_of=s.last)),
        ("retention_money_channel", lambda st, s: R.retention_view(
            st, s.f, R.CohortSpec(split="acquisition_channel"), as_of=s.last, money=True)),
        ("retention_week_recurring", lambda st, s: R.retention_view(
            st, s.f, R.CohortSpec(grain="week", entry="recurring"), as_of=s.last)),
        ("retention_quarter_region", lambda st, s: R.retention_view(
            st, s.f, R.CohortSpec(grain="quarter", split="region"), as_of=s.last)),
        ("cell_customers", lambda st, s: R.cell_customers(
            st, s.f, R.CohortSpec(), cohort=s.f.start.replace(day=1), k=1)),
    ],
    "clv": [
        ("clv_fit", lambda st, s: CV.fit(st, CV.model_filters(s.f), as_of=s.last)),
        ("clv_score", _scored),
        ("clv_validate", lambda st, s: CV.validate(
            st, CV.model_filters(s.f), calibration_end=s.last - timedelta(days=180), holdout_end=s.last)),
        ("clv_cac", lambda st, s: CV.acquisition_costs(st, s.f)),
    ],
    "churn": [
        ("risk_list", lambda st, s: _risk_list(st, s)),
        ("targeting_precision", lambda st, s: churn.targeting_precision(
            st, CV.model_filters(s.f), calibration_end=s.last - timedelta(days=90), holdout_end=s.last,
            shares=(0.1, 0.2))),
    ],
    "loyalty": [
        ("loyalty_view", lambda st, s: L.loyalty_view(
            st, s.f, as_of=s.last, value_per_point=10.0, margin_rate=0.3, extra_cost=0.0, window_months=3)),
        ("loyalty_summary", lambda st, s: L.customer_summary(st, s.f, start=s.f.start, end=s.f.end, margin_rate=0.3)),
        ("tier_movement", lambda st, s: L.tier_movement(st, s.f, s.f.start, s.f.end, rule=None, margin_rate=0.3)),
    ],
    "segments": [
        ("rfm_segments", lambda st, s: rfm.rfm_segments(st, CV.model_filters(s.f), as_of=s.last, rules=_rules())),
        ("segment_movement", lambda st, s: rfm.segment_movement(
            st, CV.model_filters(s.f), s.last - timedelta(days=180), s.last, rules=_rules())),
        ("segment_mix", lambda st, s: rfm.segment_mix(
            st, CV.model_filters(s.f), (s.last - timedelta(days=365), s.last - timedelta(days=180), s.last),
            rules=_rules())),
        ("persona_features", lambda st, s: P.features(st, CV.model_filters(s.f), as_of=s.last)),
        ("nps_answers", lambda st, s: P.nps_answers(st, as_of=s.last)),
    ],
    "surveys": [
        ("score_summary", lambda st, s: S.score_summary(st, s.f, comparison=s.comparison)),
        ("monthly_scores", lambda st, s: S.monthly_scores(st, s.f)),
        ("nps_distribution", lambda st, s: S.nps_distribution(st, s.f)),
        *[(f"scores_by_{by}", lambda st, s, by=by: S.scores_by(st, s.f, by)) for by in S.BREAKDOWNS],
        ("scores_by_segment", lambda st, s: S.scores_by_customer_group(st, s.f, _segments(st, s))),
        ("say_vs_do", lambda st, s: S.say_vs_do(
            st, replace(s.f, **dict(zip(("start", "end"), S.observed_period(s.f, as_of=s.last, horizon_days=180)))),
            as_of=s.last, horizon_days=180)),
        ("clv_deciles", lambda st, s: S.scores_by_clv_decile(
            st, s.f, _scored(st, s).customers.select("customer_key", "clv"))),
        ("detractors", lambda st, s: S.detractors_to_call(
            st, s.f, clv=_scored(st, s).customers.select("customer_key", "clv"), limit=200)),
        ("key_drivers", lambda st, s: S.key_drivers(st, s.f)),
        ("terms", lambda st, s: S.distinctive_terms(st, s.f, by="category", top=10, lang="vi")),
        ("search", lambda st, s: S.search_comments(st, s.f, "giao", fold_diacritics=True, limit=200)),
    ],
}


def _risk_list(store, s: Setting) -> pl.DataFrame | None:
    scored = _scored(store, s)
    if not scored.ok:
        return None
    settings = CV.Settings()
    return churn.risk_list(store, CV.model_filters(s.f), as_of=s.last, bgnbd=scored.bgnbd, gg=scored.gg,
                           margin_rate=settings.margin_rate, horizon_months=settings.horizon_months,
                           monthly_discount_rate=CV.monthly_rate(settings.annual_discount_rate), unit=settings.unit)


# -- comparing results across engines ------------------------------------------------------
def differences(a: Any, b: Any, path: str = "", rel: float = 1e-9) -> list[str]:
    """Where two results differ: counts and text exactly, numbers to ``rel`` relative
    (``rel`` absolute near zero), frames column by column in their order."""
    if isinstance(a, pl.DataFrame) and isinstance(b, pl.DataFrame):
        return _frame_differences(a, b, path, rel)
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b) and not isinstance(a, type):
        if type(a) is not type(b):
            return [f"{path}: {type(a).__name__} vs {type(b).__name__}"]
        out = []
        for fld in dataclasses.fields(a):
            out += differences(getattr(a, fld.name), getattr(b, fld.name), f"{path}.{fld.name}", rel)
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(map(str, set(a) ^ set(b)))} differ"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}[{k!r}]", rel)]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", rel)]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return differences(list(np.asarray(a).ravel()), list(np.asarray(b).ravel()), path, rel)
    if isinstance(a, pl.Series) and isinstance(b, pl.Series):
        return differences(a.to_frame("v"), b.to_frame("v"), path, rel)
    if _number(a) and _number(b):
        return [] if _close(float(a), float(b), rel) else [f"{path}: {a!r} vs {b!r}"]
    if hasattr(a, "__dict__") and type(a) is type(b) and not isinstance(a, (str, date)):
        return differences(vars(a), vars(b), path, rel)
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _close(x: float, y: float, rel: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y or abs(x - y) <= rel * max(abs(x), abs(y), 1.0)


def align(a: pl.DataFrame, b: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``b`` with 64-bit words of flags read back as unsigned where ``a`` has them so
    (Spark has no unsigned integers: the same bits come back as BIGINT)."""
    fix = [pl.col(c).reinterpret(signed=False) for c in a.columns
           if c in b.columns and a.schema[c] == pl.UInt64 and b.schema[c] == pl.Int64]
    return a, (b.with_columns(fix) if fix else b)


def _frame_differences(a: pl.DataFrame, b: pl.DataFrame, path: str, rel: float) -> list[str]:
    if a.columns != b.columns:
        return [f"{path}: columns {a.columns} vs {b.columns}"]
    if a.height != b.height:
        return [f"{path}: {a.height} rows vs {b.height}"]
    a, b = align(a, b)
    out = []
    for c in a.columns:
        x, y = a[c], b[c]
        if x.dtype.is_numeric() and y.dtype.is_numeric():
            xf, yf = x.cast(pl.Float64).to_numpy(), y.cast(pl.Float64).to_numpy()
            both_nan = np.isnan(xf) & np.isnan(yf)
            ok = both_nan | (np.abs(xf - yf) <= rel * np.maximum(np.maximum(np.abs(xf), np.abs(yf)), 1.0))
            ok |= xf == yf
            if not ok.all():
                i = int(np.argmin(ok))
                out.append(f"{path}.{c}: row {i}: {x[i]!r} vs {y[i]!r} ({int((~ok).sum())} rows differ)")
        elif x.dtype != y.dtype and not (x.dtype.is_numeric() and y.dtype.is_numeric()):
            if x.cast(pl.Utf8, strict=False).to_list() != y.cast(pl.Utf8, strict=False).to_list():
                out.append(f"{path}.{c}: dtype {x.dtype} vs {y.dtype}")
        elif x.to_list() != y.to_list():
            i = next(i for i, (p, q) in enumerate(zip(x.to_list(), y.to_list())) if p != q)
            out.append(f"{path}.{c}: row {i}: {x[i]!r} vs {y[i]!r}")
    return out
