"""Overview: the headline numbers at a glance, each against the comparison period."""

from __future__ import annotations

import polars as pl
import streamlit as st

from metrics.catalogue import CATALOGUE, HEADLINE_KPI, OVERVIEW_KPIS
from pages.ui import charts, fmt, frame

ctx = frame.context()
st.title(ctx.t("ov.title"))

if ctx.filters is None:
    frame.empty_state(ctx)
    st.stop()

path, version = frame.cache_key()
result = frame.overview(path, version, ctx.filters, ctx.comparison)
kpis = {r["kpi"]: r for r in result.kpis.to_dicts()}
st.caption(frame.filter_caption(ctx))

if not kpis["orders"]["value"]:
    st.info(ctx.t("empty.filtered"), icon=":material/filter_alt_off:")

head = kpis[HEADLINE_KPI]
if head["value"] is not None:
    line = ctx.t("ov.headline", share=fmt.percent(head["value"], ctx.lang))
    if head["previous"] is not None:
        line += ctx.t("ov.headline_cmp", prev=fmt.percent(head["previous"], ctx.lang))
    st.markdown(line)

full = result.monthly.filter(pl.col("complete"))
st.subheader(ctx.t("ov.kpis"))
cols_per_row = 5
for i in range(0, len(OVERVIEW_KPIS), cols_per_row):
    for col, key in zip(st.columns(cols_per_row), OVERVIEW_KPIS[i : i + cols_per_row]):
        m, r = CATALOGUE[key], kpis[key]
        help_text = m.definition(ctx.lang)
        if r["ci_low"] is not None:
            lo, hi = (fmt.kpi_value(m.unit, v, ctx.lang, ctx.money) for v in (r["ci_low"], r["ci_high"]))
            help_text += " " + ctx.t("ov.ci", lo=lo, hi=hi, n=fmt.number(r["n"], ctx.lang))
        elif m.unit in ("score", "scale") or key == "csat":
            help_text += " " + ctx.t("ov.sample", n=fmt.number(r["n"] or 0, ctx.lang))
        title = m.label(ctx.lang)
        if key in ("nps", "csat", "ces"):
            title += " · " + ctx.t("ov.n", n=fmt.number(r["n"] or 0, ctx.lang))
        trend = [v for v in full[key].to_list() if v is not None]
        if m.unit == "money":
            trend = [ctx.money.convert(v) for v in trend]
        with col:
            st.metric(
                title,
                fmt.kpi_value(m.unit, r["value"], ctx.lang, ctx.money),
                delta=fmt.kpi_change(m.unit, r["value"], r["previous"], ctx.lang),
                delta_color="normal" if m.higher_is_better else "inverse",
                delta_description=ctx.t("ov.vs") if r["previous"] is not None else None,
                help=help_text,
                border=True,
                chart_data=trend if len(trend) >= 2 else None,
                chart_type="bar" if m.unit in ("money", "count") and key != "customer_base" else "line",
            )
if full.height:
    st.caption(ctx.t("ov.trend", n=full.height, month=fmt.month(full["month"][-1], ctx.lang)))
else:
    st.caption(ctx.t("ov.no_trend"))

st.plotly_chart(charts.new_vs_returning(result.monthly, ctx.lang, ctx.money), width="stretch")
reading = charts.reading_new_vs_returning(result.history, ctx.lang)
if reading:
    st.markdown(reading)
st.caption(frame.filter_caption(ctx))

with st.expander(ctx.t("ov.glossary")):
    st.table(
        pl.DataFrame(
            {
                ctx.t("ov.metric"): [CATALOGUE[k].label(ctx.lang) for k in CATALOGUE],
                ctx.t("ov.definition"): [CATALOGUE[k].definition(ctx.lang) for k in CATALOGUE],
            }
        ).to_arrow()  # Arrow, not Polars' to_pandas (see frame.dataframe)
    )
