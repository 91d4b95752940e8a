"""Figures and plain-language readings of the CLV page (no data access here)."""

from __future__ import annotations

from datetime import date

import numpy as np
import plotly.graph_objects as go
import polars as pl

from metrics import clv_view as CV
from metrics import rfm
from pages.ui import fmt
from pages.ui.charts import _layout
from pages.ui.i18n import STRINGS, label, t

PALETTE = ["#1F77B4", "#E4572E", "#17BECF", "#76B041", "#9467BD", "#FFB000", "#8C564B", "#E377C2"]
GROUP_LABEL_PREFIX = {"acquisition_channel": "channel", "tier": "tier"}


def _in_sentence(name: str) -> str:
    """A label inside a sentence: its first letter lower-cased, unless it starts an
    acronym ("RFM segment" stays, "Acquisition channel" -> "acquisition channel";
    the acronym in "Phân khúc RFM" is kept)."""
    return name if name[1:2].isupper() else name[:1].lower() + name[1:]


def group_label(group: str, value: str, lang: str) -> str:
    """A group value as people read it: a channel's or tier's name, a cohort's month."""
    if group == "cohort":
        try:
            return fmt.month(date.fromisoformat(str(value)[:10]), lang)
        except ValueError:
            return str(value)
    if group == "segment":
        return rfm.SEGMENTS.get(str(value), {}).get(f"label_{lang}", str(value))
    if group in GROUP_LABEL_PREFIX:
        return label(GROUP_LABEL_PREFIX[group], str(value), lang)
    return str(value)


def distribution(customers: pl.DataFrame, lang: str, money: fmt.Money, *, log: bool, bins: int = 60) -> go.Figure:
    """Histograms of historical and predicted CLV per customer on shared bins (log10
    of the value with ``log``; customers with no value then sit in the first bin).
    Binned here, so the figure stays small at any number of customers."""
    series = []
    for col in ("historical_clv", "clv"):
        v = customers[col].to_numpy().astype(float) * money.convert(1.0)
        series.append(np.log10(np.clip(v, 1.0, None)) if log else v)
    lo = min(float(np.nanmin(a)) for a in series)
    hi = max(float(np.nanmax(a)) for a in series)
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    mids, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    fig = go.Figure()
    for values, name, colour in zip(series, (t("clv.historical", lang), t("clv.predicted", lang)), PALETTE[:2]):
        counts, _ = np.histogram(values[np.isfinite(values)], bins=edges)
        fig.add_bar(x=mids.tolist(), y=counts.tolist(), width=width, name=name, opacity=0.6, marker_color=colour,
                    hovertemplate="%{y:,}<extra>" + name + "</extra>")
    fig.update_layout(barmode="overlay", bargap=0, yaxis={"title": t("clv.customers", lang)},
                      xaxis={"title": t("clv.value_log" if log else "clv.value", lang, unit=money.symbol)})
    if log:
        ticks = list(range(int(np.floor(lo)), int(np.ceil(hi)) + 1))
        fig.update_xaxes(tickvals=ticks, ticktext=[money.short(10 ** k / money.convert(1.0)) for k in ticks])
    fig = _layout(fig, lang, t("clv.dist_title", lang))
    fig.update_layout(hovermode="closest")
    return fig


def boxes(customers: pl.DataFrame, group: str, lang: str, money: fmt.Money, *, log: bool) -> go.Figure:
    """Predicted CLV per customer by group as box plots from exact quartiles (whiskers
    at the furthest values within 1.5 IQR; outliers not drawn, so the figure stays
    small at any number of customers)."""
    scale = money.convert(1.0)
    stats = customers.group_by(pl.col(group).cast(pl.Utf8).alias("g")).agg(
        pl.col("clv").quantile(0.25, "linear").alias("q1"), pl.col("clv").median().alias("med"),
        pl.col("clv").quantile(0.75, "linear").alias("q3"), pl.col("clv").mean().alias("mean"),
        pl.col("clv").alias("v")).sort("g")
    fig = go.Figure()
    for i, r in enumerate(stats.iter_rows(named=True)):
        iqr = r["q3"] - r["q1"]
        v = np.asarray(r["v"], dtype=float)
        low = float(v[v >= r["q1"] - 1.5 * iqr].min())
        high = float(v[v <= r["q3"] + 1.5 * iqr].max())
        fig.add_trace(go.Box(
            x=[group_label(group, r["g"], lang)], q1=[r["q1"] * scale], median=[r["med"] * scale],
            q3=[r["q3"] * scale], lowerfence=[low * scale], upperfence=[high * scale], mean=[r["mean"] * scale],
            marker_color=PALETTE[i % len(PALETTE)], showlegend=False, name=group_label(group, r["g"], lang)))
    fig.update_layout(yaxis={"title": t("clv.predicted", lang), "type": "log" if log else "linear"})
    fig = _layout(fig, lang, t("clv.box_title", lang, group=_in_sentence(t(f"clv.group.{group}", lang))))
    fig.update_layout(hovermode="closest")
    return fig


def lorenz(curve: pl.DataFrame, lang: str) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=curve["share_customers"].to_list(), y=curve["share_value"].to_list(), mode="lines",
                    name=t("clv.lorenz_value", lang), line={"color": PALETTE[0], "width": 3},
                    hovertemplate="%{x:.0%} → %{y:.0%}<extra></extra>")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name=t("clv.lorenz_equal", lang),
                    line={"color": "#999", "dash": "dot"}, hoverinfo="skip")
    fig.update_layout(xaxis={"title": t("clv.lorenz_x", lang), "tickformat": ".0%"},
                      yaxis={"title": t("clv.lorenz_y", lang), "tickformat": ".0%"})
    fig = _layout(fig, lang, t("clv.lorenz_title", lang))
    fig.update_layout(hovermode="closest")
    return fig


def by_group(boot: pl.DataFrame, group: str, lang: str, money: fmt.Money) -> go.Figure:
    """Mean predicted CLV per customer by group, with its 95% interval."""
    part = boot.filter(pl.col("group") == group).sort("value")
    scale = money.convert(1.0)
    names = [group_label(group, v, lang) for v in part["value"]]
    mean = [v * scale for v in part["mean"]]
    fig = go.Figure(go.Bar(
        x=names, y=mean, marker_color=PALETTE[0], customdata=part.select("customers").to_series().to_list(),
        error_y={"type": "data", "symmetric": False,
                 "array": [(h - m) * scale for h, m in zip(part["mean_high"], part["mean"])],
                 "arrayminus": [(m - lo) * scale for lo, m in zip(part["mean_low"], part["mean"])]},
        hovertemplate="%{x}: %{y:,.0f} (n = %{customdata:,})<extra></extra>"))
    fig.update_layout(xaxis={"type": "category"}, yaxis={"title": t("clv.mean_predicted", lang, unit=money.symbol)})
    fig = _layout(fig, lang, t("clv.group_title", lang, group=_in_sentence(t(f"clv.group.{group}", lang))))
    fig.update_layout(hovermode="closest")
    return fig


def holdout_bars(v: CV.Validation, lang: str) -> go.Figure:
    b = v.by_frequency
    fig = go.Figure()
    fig.add_bar(x=b["bucket"].to_list(), y=b["actual"].to_list(), name=t("clv.actual", lang), marker_color=PALETTE[0],
                customdata=b["customers"].to_list(), hovertemplate="%{x}: %{y:.2f} (n = %{customdata:,})<extra></extra>")
    fig.add_bar(x=b["bucket"].to_list(), y=b["predicted"].to_list(), name=t("clv.model", lang),
                marker_color=PALETTE[1], hovertemplate="%{x}: %{y:.2f}<extra></extra>")
    fig.update_layout(barmode="group", xaxis={"title": t("clv.cal_purchases", lang), "type": "category"},
                      yaxis={"title": t("clv.holdout_purchases", lang)})
    return _layout(fig, lang, t("clv.holdout_title", lang))


def tracking(v: CV.Validation, lang: str) -> go.Figure:
    tr = v.tracking
    days = [v.calibration_end.toordinal() + d for d in tr["day"].to_list()]
    xs = [date.fromordinal(d) for d in days]
    fig = go.Figure()
    fig.add_scatter(x=xs, y=tr["actual"].to_list(), mode="lines", name=t("clv.actual", lang),
                    line={"color": PALETTE[0], "width": 3})
    fig.add_scatter(x=xs, y=tr["predicted"].to_list(), mode="lines", name=t("clv.model", lang),
                    line={"color": PALETTE[1], "dash": "dash", "width": 2})
    fig.update_layout(yaxis={"title": t("clv.cum_purchases", lang), "rangemode": "tozero"})
    return _layout(fig, lang, t("clv.tracking_title", lang))


def matrix(m: dict, which: str, lang: str, unit: str) -> go.Figure:
    """P(alive) or expected purchases over frequency (rows) and recency (columns)."""
    z = m[which]
    fig = go.Figure(go.Heatmap(
        z=z.tolist(), x=[round(float(r), 1) for r in m["recency"]], y=[int(f) for f in m["frequency"]],
        colorscale="Blues" if which == "expected" else "RdYlGn", zmin=0, zmax=1 if which == "p_alive" else None,
        colorbar={"tickformat": ".0%" if which == "p_alive" else ".1f"},
        hovertemplate=(t("clv.matrix_hover", lang) + ("%{z:.0%}" if which == "p_alive" else "%{z:.2f}")
                       + "<extra></extra>")))
    fig.update_layout(xaxis={"title": t("clv.recency_axis", lang, unit=t(f"clv.unit.{unit}", lang))},
                      yaxis={"title": t("clv.frequency_axis", lang)}, height=460)
    fig = _layout(fig, lang, t(f"clv.matrix_{which}", lang, T=fmt.number(m["T"], lang, 0),
                               unit=t(f"clv.unit.{unit}", lang)))
    fig.update_layout(hovermode="closest", height=460)
    return fig


def exposure(customers: pl.DataFrame, as_of: date, lang: str, n: int = 40, seed: int = 3) -> go.Figure:
    """A sample of customers: a line from the first purchase to the date (T), a dot on
    the last purchase (recency), sorted by first purchase."""
    sample = customers.sample(min(n, customers.height), seed=seed).sort("first_purchase")
    fig = go.Figure()
    for i, r in enumerate(sample.iter_rows(named=True)):
        fig.add_scatter(x=[r["first_purchase"], as_of], y=[i, i], mode="lines", line={"color": "#B8C7D9", "width": 2},
                        showlegend=False, hoverinfo="skip")
    fig.add_scatter(x=sample["first_purchase"].to_list(), y=list(range(sample.height)), mode="markers",
                    marker={"color": PALETTE[0], "size": 7}, name=t("clv.first_purchase", lang))
    fig.add_scatter(x=sample["last_purchase"].to_list(), y=list(range(sample.height)), mode="markers",
                    marker={"color": PALETTE[1], "size": 9, "symbol": "diamond"}, name=t("clv.last_purchase", lang),
                    customdata=sample["frequency"].to_list(),
                    hovertemplate="%{x|%d/%m/%Y} · " + t("clv.frequency", lang) + " %{customdata}<extra></extra>")
    fig.update_layout(yaxis={"visible": False}, height=max(360, 12 * sample.height + 120))
    fig = _layout(fig, lang, t("clv.exposure_title", lang))
    fig.update_layout(hovermode="closest", height=max(360, 12 * sample.height + 120))
    return fig


# -- readings ------------------------------------------------------------------------
def reading_total(boot: pl.DataFrame, horizon: int, lang: str, money: fmt.Money) -> str:
    row = boot.filter(pl.col("group") == "all").row(0, named=True)
    return t("clv.read.total", lang, total=money.short(row["total"]), low=money.short(row["low"]),
             high=money.short(row["high"]), n=fmt.number(row["customers"], lang), months=horizon,
             mean=money.short(row["mean"]))


def reading_distribution(customers: pl.DataFrame, lang: str, money: fmt.Money) -> str:
    clv = customers["clv"]
    return t("clv.read.dist", lang, median=money.short(float(clv.median())), mean=money.short(float(clv.mean())),
             hist=money.short(float(customers["historical_clv"].median())))


def reading_lorenz(share: float, lang: str) -> str:
    return t("clv.read.lorenz", lang, share=fmt.percent(share, lang, 0))


def reading_group(boot: pl.DataFrame, group: str, lang: str, money: fmt.Money) -> str | None:
    part = boot.filter(pl.col("group") == group).sort("mean", descending=True)
    if part.height < 2:
        return None
    top, low = part.row(0, named=True), part.row(-1, named=True)
    return t("clv.read.group", lang, top=group_label(group, top["value"], lang), top_v=money.short(top["mean"]),
             low=group_label(group, low["value"], lang), low_v=money.short(low["mean"]),
             ratio=fmt.number(top["mean"] / low["mean"], lang, 1) if low["mean"] > 0 else "—")


def reading_validation(v: CV.Validation, lang: str) -> str:
    err = v.aggregate_error or 0.0
    return t(f"clv.read.grade_{v.grade}", lang, predicted=fmt.number(v.predicted, lang, 0),
             actual=fmt.number(v.actual, lang, 0), err=fmt.percent(abs(err), lang, 1),
             direction=t("clv.over" if err > 0 else "clv.under", lang), group=fmt.percent(v.group_error or 0.0, lang, 0),
             start=fmt.day(v.calibration_end, lang), end=fmt.day(v.holdout_end, lang))


def reading_tracking(v: CV.Validation, lang: str) -> str | None:
    tr = v.tracking
    if tr is None or tr.height == 0:
        return None
    mid = tr.row(tr.height // 2, named=True)
    return t("clv.read.tracking", lang, day=fmt.day(date.fromordinal(v.calibration_end.toordinal() + mid["day"]), lang),
             actual=fmt.number(mid["actual"], lang, 0), predicted=fmt.number(mid["predicted"], lang, 0))


def reading_matrix(m: dict, lang: str, unit: str) -> str:
    """Who the model thinks has left: P(alive) of a customer with the most purchases
    whose last one was at the start, against one who bought recently."""
    top = int(m["frequency"][-1])
    old, recent = float(m["p_alive"][-1][0]), float(m["p_alive"][-1][-1])
    return t("clv.read.matrix", lang, f=top, old=fmt.percent(old, lang, 0), recent=fmt.percent(recent, lang, 0),
             T=fmt.number(m["T"], lang, 0), unit=t(f"clv.unit.{unit}", lang))


def reading_cac(ratios: pl.DataFrame, lang: str) -> str | None:
    if ratios.height == 0:
        return None
    top = ratios.row(0, named=True)
    return t("clv.read.cac", lang, channel=label("channel", top["channel"], lang),
             ratio=fmt.number(top["ratio"], lang, 1))


def explain(problems: list[str], shortfalls: list[tuple[str, dict]], error: str | None, code: str | None,
            values: dict, lang: str) -> list[str]:
    """Why a model cannot be shown, in ``lang``: the coded reasons translated (the
    English text of :mod:`metrics.clv` for any reason without a translation)."""
    out = []
    for (c, vals), text in zip(shortfalls, problems):
        key = f"clv.short.{c}"
        out.append(t(key, lang, n=fmt.number(vals["n"], lang), need=fmt.number(vals["need"], lang))
                   if key in STRINGS else text)
    if error:
        key = f"clv.err.{code}"
        out.append(t(key, lang, **{k: fmt.number(v, lang, 2) for k, v in values.items()})
                   if code and key in STRINGS else error)
    return out
