"""Figure builders and readings for the Retention page: frames in, Plotly figures
and one-sentence readings out. No Streamlit here."""

from __future__ import annotations

from datetime import date

import plotly.graph_objects as go
import polars as pl

from metrics import retention as R
from pages.ui import fmt
from pages.ui.charts import _layout
from pages.ui.i18n import label, t

PALETTE = ["#1F6FB2", "#F28E2B", "#59A14F", "#E15759", "#76B7B2", "#EDC948", "#B07AA1", "#FF9DA7", "#9C755F"]
MONEY_METRICS = ("revenue_per_customer", "cum_revenue_per_customer", "cum_margin_per_customer")


def cohort_label(d: date, grain: str, lang: str) -> str:
    if grain == "month":
        return fmt.month(d, lang)
    if grain == "quarter":
        q = (d.month - 1) // 3 + 1
        return f"Q{q}/{d.year}" if lang == "vi" else f"Q{q} {d.year}"
    return t("ret.week_of", lang, day=fmt.day(d, lang))


def segment_label(split: str, code: str, lang: str) -> str:
    if split in ("acquisition_channel",):
        return label("channel", code, lang)
    if split == "loyalty":
        return t(f"loyalty.{code}", lang) if code in ("member", "non_member") else code
    if code == "all":
        return t("ret.everyone", lang)
    return code


def format_value(metric: str, v: float | None, lang: str, money: fmt.Money, relative: bool = False) -> str:
    if v is None:
        return ""
    if metric in MONEY_METRICS and not relative:
        return money.short(v)
    return fmt.percent(v, lang, 0)


def heatmap(values: pl.DataFrame, metric: str, grain: str, lang: str, money: fmt.Money, *,
            relative: bool = False) -> go.Figure:
    """Cohorts down, periods since acquisition across; cells coloured by the value,
    labelled, with the counts behind each in the hover. Immature cells are empty;
    the incomplete period of each cohort is marked with "…".

    Plotly reports no selection for a heatmap, so each cell also carries an invisible
    square marker (the hover and the click land on it: ``hoverdistance = -1`` picks
    the nearest cell wherever the click falls). Its customdata ends with the cohort
    (ISO date) and the period, read back by :func:`picked_cell`; the clicked cell is
    outlined (Plotly's own selection style). Nothing here depends on the picked
    cell: Streamlit keys a chart's selection by its figure, so a figure that changed
    with the pick would drop the click it reports."""
    cohorts = sorted(values["cohort"].unique().to_list(), reverse=True)
    ks = list(range(int(values["k"].max()) + 1)) if values.height else []
    sizes = dict(values.filter(pl.col("k") == 0).select("cohort", "size").iter_rows())
    ylabels = [f"{cohort_label(c, grain, lang)} · {fmt.number(sizes.get(c, 0), lang)}" for c in cohorts]
    index = {(r["cohort"], r["k"]): r for r in values.iter_rows(named=True)}
    z, text = [], []
    px, py, custom = [], [], []
    for c, ylabel in zip(cohorts, ylabels):
        zr, tr = [], []
        for k in ks:
            r = index.get((c, k))
            if r is None:
                zr.append(None), tr.append("")
                continue
            v = r["value"]
            shown = money.convert(v) if (metric in MONEY_METRICS and not relative and v is not None) else v
            zr.append(shown)
            tr.append(format_value(metric, v, lang, money, relative) + ("…" if not r["complete"] else ""))
            px.append(str(k)), py.append(ylabel)
            custom.append([fmt.number(r["numerator"], lang) if metric in R.SHARE_METRICS else money.full(r["numerator"]),
                           fmt.number(r["denominator"], lang) if metric != "net_revenue_retention"
                           else money.full(r["denominator"]),
                           t("ret.incomplete", lang) if not r["complete"] else "", tr[-1], c.isoformat(), k])
        z.append(zr), text.append(tr)
    share = metric in R.SHARE_METRICS or metric == "net_revenue_retention" or relative
    height = max(320, 28 * len(cohorts) + 120)
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(k) for k in ks], y=ylabels, text=text, texttemplate="%{text}", hoverinfo="skip",
        colorscale="Blues", zmin=0 if share else None,
        zmax=1 if (metric in R.SHARE_METRICS and not relative) else None,
        colorbar={"tickformat": ".0%" if share else ",.0f"},
    ))
    fig.add_scatter(
        x=px, y=py, mode="markers", customdata=custom, showlegend=False, name="",
        marker={"symbol": "square-open", "size": 22, "color": "#E4572E", "line": {"width": 3}, "opacity": 0},
        selected={"marker": {"opacity": 1}}, unselected={"marker": {"opacity": 0}},
        hovertemplate=(f"%{{y}}<br>{t('ret.period_k', lang)} %{{x}}: %{{customdata[3]}}<br>"
                       f"%{{customdata[0]}} / %{{customdata[1]}}<br>%{{customdata[2]}}<extra></extra>"),
    )
    fig.update_layout(xaxis={"title": t(f"ret.since.{grain}", lang), "side": "top", "type": "category",
                             "categoryorder": "array", "categoryarray": [str(k) for k in ks]},
                      yaxis={"type": "category", "autorange": "reversed", "categoryorder": "array",
                             "categoryarray": ylabels},
                      height=height)
    fig = _layout(fig, lang, t(f"ret.metric.{metric}", lang) + (f" · {t('ret.relative', lang)}" if relative else ""))
    fig.update_layout(hovermode="closest", hoverdistance=-1, clickmode="event+select", dragmode=False, height=height)
    return fig


def picked_cell(event: object) -> tuple[date, int] | None:
    """The (cohort, period) of the heatmap cell a click selected, from the event
    ``st.plotly_chart(..., on_select="rerun")`` returns; None when none is."""
    try:
        points = event["selection"]["points"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    for p in points or []:
        data = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(data, list | tuple) and len(data) >= 6:
            try:
                return date.fromisoformat(str(data[4])), int(data[5])
            except (TypeError, ValueError):
                return None
    return None


def curves(curve: pl.DataFrame, per_cohort: pl.DataFrame | None, metric: str, grain: str, split: str, lang: str,
           money: fmt.Money) -> go.Figure:
    """One line per segment (or the average), with its 95% band; faint lines for the
    individual cohorts when not split. Only complete cells are drawn."""
    fig = go.Figure()
    scale = money.convert(1.0) if metric in MONEY_METRICS else 1.0
    if per_cohort is not None:
        done = per_cohort.filter(pl.col("complete") & pl.col("value").is_not_null())
        for (c,), part in sorted(done.partition_by("cohort", as_dict=True).items())[-12:]:
            fig.add_scatter(x=part["k"].to_list(), y=[v * scale for v in part["value"]], mode="lines",
                            line={"color": "#B8C7D9", "width": 1}, name=cohort_label(c, grain, lang),
                            legendgroup="cohorts", showlegend=False, hoverinfo="skip")
    for i, ((seg,), part) in enumerate(sorted(curve.partition_by("segment", as_dict=True).items())):
        colour = PALETTE[i % len(PALETTE)]
        name = t("ret.average", lang) if split == "none" else segment_label(split, seg, lang)
        ks = part["k"].to_list()
        if part["low"].is_not_null().any():
            lo = [None if v is None else v * scale for v in part["low"]]
            hi = [None if v is None else v * scale for v in part["high"]]
            fig.add_scatter(x=ks + ks[::-1], y=hi + lo[::-1], fill="toself", fillcolor=colour, opacity=0.18,
                            line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=name)
        fig.add_scatter(x=ks, y=[None if v is None else v * scale for v in part["value"]], mode="lines+markers",
                        name=name, legendgroup=name, line={"color": colour, "width": 2.5},
                        customdata=part.select("cohorts", "customers").rows(),
                        hovertemplate=(f"{name} · {t('ret.period_k', lang)} %{{x}}: %{{y:{'.1%' if metric not in MONEY_METRICS else ',.0f'}}}"
                                       f"<br>{t('ret.cohorts_n', lang)} %{{customdata[0]}}, n = %{{customdata[1]:,}}<extra></extra>"))
    fig.update_layout(xaxis={"title": t(f"ret.since.{grain}", lang), "dtick": 1},
                      yaxis={"tickformat": ".0%" if metric not in MONEY_METRICS else ",.0f", "rangemode": "tozero"})
    return _layout(fig, lang, t("ret.curves_title", lang, metric=t(f"ret.metric.{metric}", lang)))


def n_trend(trend: pl.DataFrame, n: int, metric: str, grain: str, split: str, lang: str, money: fmt.Money) -> go.Figure:
    fig = go.Figure()
    scale = money.convert(1.0) if metric in MONEY_METRICS else 1.0
    for i, ((seg,), part) in enumerate(sorted(trend.partition_by("segment", as_dict=True).items())):
        name = t("ret.everyone", lang) if split == "none" else segment_label(split, seg, lang)
        fig.add_scatter(x=[cohort_label(c, grain, lang) for c in part["cohort"]],
                        y=[None if v is None else v * scale for v in part["value"]], mode="lines+markers", name=name,
                        line={"color": PALETTE[i % len(PALETTE)]}, customdata=part["size"].to_list(),
                        hovertemplate=f"%{{x}}: %{{y:{'.1%' if metric not in MONEY_METRICS else ',.0f'}}} (n = %{{customdata:,}})<extra>{name}</extra>")
    fig.update_layout(xaxis={"type": "category"},
                      yaxis={"tickformat": ".0%" if metric not in MONEY_METRICS else ",.0f", "rangemode": "tozero"})
    return _layout(fig, lang, t("ret.trend_title", lang, n=n, grain=t(f"ret.grain.{grain}", lang).lower(),
                                metric=t(f"ret.metric.{metric}", lang)))


def flow_chart(flow: pl.DataFrame, lang: str) -> go.Figure:
    """Per month: + new and + reactivated up, - churned down, the base at the start
    as a line, and the churn rate on a second axis."""
    months = [fmt.month(d, lang) for d in flow["month"]]
    fig = go.Figure()
    fig.add_bar(x=months, y=flow["new"].to_list(), name=t("ret.flow.new", lang), marker_color="#F28E2B")
    fig.add_bar(x=months, y=flow["reactivated"].to_list(), name=t("ret.flow.reactivated", lang), marker_color="#59A14F")
    fig.add_bar(x=months, y=[-v for v in flow["churned"]], name=t("ret.flow.churned", lang), marker_color="#E15759",
                customdata=flow["churned"].to_list(), hovertemplate="%{customdata:,}<extra></extra>")
    fig.add_scatter(x=months, y=flow["base_start"].to_list(), name=t("ret.flow.base_start", lang),
                    mode="lines+markers", line={"color": "#1F6FB2", "width": 2})
    fig.add_scatter(x=months, y=[None if v is None else 100 * v for v in flow["churn_rate"]], yaxis="y2",
                    name=t("ret.flow.churn_rate", lang), mode="lines+markers", line={"color": "#2E2E2E", "dash": "dot"},
                    hovertemplate="%{y:.1f}%<extra></extra>")
    fig.update_layout(barmode="relative", yaxis={"tickformat": ",.0f"},
                      yaxis2={"overlaying": "y", "side": "right", "ticksuffix": "%", "tickformat": ".0f", "rangemode": "tozero",
                              "showgrid": False, "title": t("ret.flow.churn_rate", lang)})
    return _layout(fig, lang, t("ret.flow_title", lang))


def lifecycle_chart(life: pl.DataFrame, lang: str) -> go.Figure:
    months = [fmt.month(d, lang) + ("…" if not c else "") for d, c in zip(life["month"], life["complete"])]
    fig = go.Figure()
    for col, colour in (("new", "#F28E2B"), ("returning", "#1F6FB2"), ("resurrected", "#59A14F")):
        fig.add_bar(x=months, y=life[col].to_list(), name=t(f"ret.life.{col}", lang), marker_color=colour)
    fig.add_bar(x=months, y=[-v for v in life["dormant"]], name=t("ret.life.dormant", lang), marker_color="#BAB0AC",
                customdata=life["dormant"].to_list(), hovertemplate="%{customdata:,}<extra></extra>")
    fig.update_layout(barmode="relative", yaxis={"tickformat": ",.0f"})
    return _layout(fig, lang, t("ret.life_title", lang))


def km_chart(km: pl.DataFrame, split: str, lang: str, horizon: int = 365) -> go.Figure:
    """The share who have bought a second time by each day (1 - Kaplan-Meier), per
    segment, with the 95% band, as a step function."""
    fig = go.Figure()
    km = km.filter(pl.col("days") <= horizon)
    for i, ((seg,), part) in enumerate(sorted(km.partition_by("segment", as_dict=True).items())):
        colour = PALETTE[i % len(PALETTE)]
        name = t("ret.everyone", lang) if split == "none" else segment_label(split, seg, lang)
        x = [0, *part["days"].to_list()]
        y = [0.0, *part["repeated"].to_list()]
        hi = [0.0, *[None if v is None else 1 - v for v in part["low"]]]
        lo = [0.0, *[None if v is None else 1 - v for v in part["high"]]]
        fig.add_scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor=colour, opacity=0.18,
                        line={"width": 0, "shape": "hv"}, hoverinfo="skip", showlegend=False)
        fig.add_scatter(x=x, y=y, mode="lines", line={"color": colour, "shape": "hv", "width": 2.5}, name=name,
                        hovertemplate=f"%{{x}} {t('ret.days', lang)}: %{{y:.1%}}<extra>{name}</extra>")
    fig.update_layout(xaxis={"title": t("ret.days_since_first", lang)},
                      yaxis={"tickformat": ".0%", "range": [0, 1]})
    return _layout(fig, lang, t("ret.km_title", lang))


def gaps_chart(gaps: dict, window: int, suggested: int | None, lang: str, horizon: int = 365) -> go.Figure:
    bins = gaps["bins"].filter(pl.col("gap") <= horizon)
    fig = go.Figure()
    fig.add_bar(x=bins["gap"].to_list(), y=bins["n"].to_list(), name=t("ret.gaps_n", lang), marker_color="#76B7B2",
                hovertemplate=f"%{{x}} {t('ret.days', lang)}: %{{y:,}}<extra></extra>")
    fig.add_vline(x=window, line={"color": "#1F6FB2", "dash": "dash"},
                  annotation_text=t("ret.window_now", lang, days=window), annotation_position="top right")
    if suggested is not None and suggested != window:
        fig.add_vline(x=suggested, line={"color": "#E15759", "dash": "dot"},
                      annotation_text=t("ret.window_suggested", lang, days=suggested), annotation_position="top left")
    fig.update_layout(xaxis={"title": t("ret.days_between", lang)}, yaxis={"tickformat": ",.0f"}, bargap=0)
    fig = _layout(fig, lang, t("ret.gaps_title", lang))
    fig.update_layout(hovermode="closest")
    return fig


def repeat_chart(rates: pl.DataFrame, grain: str, split: str, lang: str) -> go.Figure:
    fig = go.Figure()
    for i, ((seg,), part) in enumerate(sorted(rates.partition_by("segment", as_dict=True).items())):
        name = t("ret.everyone", lang) if split == "none" else segment_label(split, seg, lang)
        err_hi = [h - r for h, r in zip(part["high"], part["rate"])]
        err_lo = [r - lo for lo, r in zip(part["low"], part["rate"])]
        fig.add_bar(x=[cohort_label(c, grain, lang) for c in part["cohort"]], y=part["rate"].to_list(), name=name,
                    marker_color=PALETTE[i % len(PALETTE)], customdata=part.select("repeaters", "size").rows(),
                    error_y={"type": "data", "array": err_hi, "arrayminus": err_lo, "thickness": 1},
                    hovertemplate="%{x}: %{y:.1%} (%{customdata[0]:,} / %{customdata[1]:,})<extra>" + name + "</extra>")
    fig.update_layout(barmode="group", xaxis={"type": "category"}, yaxis={"tickformat": ".0%", "rangemode": "tozero"})
    return _layout(fig, lang, t("ret.repeat_title", lang))


# -- readings ------------------------------------------------------------------------
def reading_cohorts(values: pl.DataFrame, metric: str, n: int, grain: str, lang: str, money: fmt.Money) -> str | None:
    """The latest cohort that has completed period n, against the cohort one year
    before when there is one, else against the average of the others."""
    done = values.filter((pl.col("k") == n) & pl.col("complete") & pl.col("value").is_not_null()).sort("cohort")
    if done.height == 0:
        return None
    last = done.row(-1, named=True)
    year_before = last["cohort"].replace(year=last["cohort"].year - 1) if not (
        last["cohort"].month == 2 and last["cohort"].day == 29) else None
    prev = done.filter(pl.col("cohort") == year_before) if year_before else done.head(0)
    base = dict(cohort=cohort_label(last["cohort"], grain, lang), value=format_value(metric, last["value"], lang, money),
                n=n, grain=t(f"ret.grain.{grain}", lang).lower(), metric=t(f"ret.metric.{metric}", lang).lower())
    if prev.height and metric not in MONEY_METRICS:
        diff = last["value"] - prev["value"][0]
        key = "ret.read.cohort_up" if diff >= 0 else "ret.read.cohort_down"
        return t(key, lang, **base, diff=fmt.points(abs(diff), lang, signed=False))
    return t("ret.read.cohort", lang, **base)


def reading_trend(trend: pl.DataFrame, n: int, metric: str, grain: str, lang: str, money: fmt.Money) -> str:
    """Is period-n getting better? The earliest cohorts against the latest
    (:func:`metrics.retention.trend_change`)."""
    ch = R.trend_change(trend)
    base = dict(n=n, grain=t(f"ret.grain.{grain}", lang).lower(), metric=t(f"ret.metric.{metric}", lang).lower())
    if ch is None:
        return t("ret.read.trend_none", lang, **base)

    def span(pair: tuple) -> str:
        a, b = (cohort_label(d, grain, lang) for d in pair)
        return a if a == b else f"{a} – {b}"

    if ch["change"] is None:
        return t("ret.read.trend_one", lang, **base, cohort=span(ch["last"]),
                 value=format_value(metric, ch["late"], lang, money))
    diff = ch["change"]
    money_metric = metric in MONEY_METRICS
    size = money.short(abs(diff)) if money_metric else fmt.points(abs(diff), lang, signed=False)
    flat = abs(diff) < (0.005 if not money_metric else 0.005 * max(abs(ch["early"]), 1e-9))
    key = "ret.read.trend_flat" if flat else ("ret.read.trend_up" if diff > 0 else "ret.read.trend_down")
    return t(key, lang, **base, early=format_value(metric, ch["early"], lang, money), first=span(ch["first"]),
             late=format_value(metric, ch["late"], lang, money), last=span(ch["last"]), diff=size,
             cohorts=ch["cohorts"])


def reading_curve(curve: pl.DataFrame, metric: str, grain: str, lang: str, money: fmt.Money) -> str | None:
    pooled = curve.filter((pl.col("k") > 0) & pl.col("value").is_not_null()).sort("k")
    if pooled.height == 0:
        return None
    first = pooled.filter(pl.col("k") == pooled["k"].min())
    k_last = int(pooled["k"].max())
    last = pooled.filter(pl.col("k") == k_last)
    if metric not in R.SHARE_METRICS:
        return t("ret.read.curve_value", lang, metric=t(f"ret.metric.{metric}", lang).lower(),
                 v1=format_value(metric, first["value"].mean(), lang, money), k=k_last,
                 v2=format_value(metric, last["value"].mean(), lang, money), grain=t(f"ret.grain.{grain}", lang).lower())
    return t("ret.read.curve", lang, v1=fmt.percent(first["value"].mean(), lang), k=k_last,
             v2=fmt.percent(last["value"].mean(), lang), grain=t(f"ret.grain.{grain}", lang).lower())


def reading_flow(flow: pl.DataFrame, lang: str) -> str | None:
    if flow.height == 0:
        return None
    r = flow.row(-1, named=True)
    return t("ret.read.flow", lang, month=fmt.month(r["month"], lang), s=fmt.number(r["base_start"], lang),
             e=fmt.number(r["base_end"], lang), new=fmt.number(r["new"], lang), back=fmt.number(r["reactivated"], lang),
             churned=fmt.number(r["churned"], lang), rate=fmt.percent(r["churn_rate"], lang))


def reading_lifecycle(life: pl.DataFrame, lang: str) -> str | None:
    full = life.filter(pl.col("complete"))
    if full.height == 0:
        return None
    r = full.row(-1, named=True)
    return t("ret.read.life", lang, month=fmt.month(r["month"], lang), ret=fmt.number(r["returning"], lang),
             res=fmt.number(r["resurrected"], lang), dormant=fmt.number(r["dormant"], lang), new=fmt.number(r["new"], lang))


def reading_km(km: pl.DataFrame, lang: str, day: int = 90) -> str | None:
    if km.height == 0:
        return None
    everyone = km.group_by("segment").agg(
        pl.col("repeated").filter(pl.col("days") <= day).max().alias("by_day"),
        pl.col("days").filter(pl.col("survival") <= 0.5).min().alias("median"),
        pl.col("at_risk").max().alias("n")).sort("n", descending=True)
    r = everyone.row(0, named=True)
    if r["by_day"] is None:
        return None
    text = t("ret.read.km", lang, share=fmt.percent(r["by_day"], lang), days=day)
    if r["median"] is not None:
        text += " " + t("ret.read.km_median", lang, median=r["median"])
    return text


def reading_gaps(gaps: dict, window: int, suggested: int | None, lang: str) -> str | None:
    if suggested is None:
        return None
    text = t("ret.read.gaps", lang, p50=gaps["p50"], p90=gaps["p90"], suggested=suggested,
             pairs=fmt.number(gaps["pairs"], lang))
    return text + " " + (t("ret.read.gaps_same", lang) if suggested == window
                         else t("ret.read.gaps_now", lang, window=window))


def reading_repeat(rates: pl.DataFrame, grain: str, lang: str) -> str | None:
    if rates.height == 0:
        return None
    pooled = rates.group_by("cohort").agg(pl.col("repeaters").sum(), pl.col("size").sum()).sort("cohort")
    old = pooled.row(0, named=True)
    return t("ret.read.repeat", lang, cohort=cohort_label(old["cohort"], grain, lang),
             rate=fmt.percent(old["repeaters"] / old["size"] if old["size"] else None, lang))
