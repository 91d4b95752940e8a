"""Retention: are customers coming back, and which ones? Cohorts, curves, the month-N
trend, repeat rates, the customer-base flow, the lifecycle split, the time to a second
purchase, and the customers behind any cell. Controls live in the URL (``r_...``)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from data.importer import to_excel_csv
from metrics import pymap
from metrics import retention as R
from pages.ui import fmt, frame
from pages.ui import retention_charts as rc
from pages.ui.i18n import label

ctx = frame.context()
st.title(ctx.t("ret.title"))
if ctx.filters is None or ctx.as_of is None:
    frame.empty_state(ctx)
    st.stop()
st.caption(ctx.t("ret.intro"))
path, version = frame.cache_key()
f, as_of, lang = ctx.filters, ctx.as_of, ctx.lang

# -- controls (kept in the URL) ---------------------------------------------------
DEFAULTS = {"r_grain": "month", "r_entry": "first", "r_split": "none", "r_metric": "retention",
            "r_mean": "weighted", "r_rel": False, "r_n": 3, "r_vals": ""}
grain = frame.page_param("r_grain", R.GRAINS, "month")
frame.page_param("r_entry", R.ENTRIES, "first")
frame.page_param("r_split", R.SPLITS, "none")
frame.page_param("r_metric", R.METRICS, "retention")
frame.page_param("r_mean", ("weighted", "simple"), "weighted")
frame.page_param("r_rel", (), False)
st.session_state["r_n"] = min(max(int(frame.page_param("r_n", (), 3)), 1), 104)
frame.page_param("r_vals", (), "")

with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    grain = c1.selectbox(ctx.t("ret.grain"), R.GRAINS, key="r_grain", format_func=lambda g: ctx.t(f"ret.grain.{g}"))
    entry = c2.selectbox(ctx.t("ret.entry"), R.ENTRIES, key="r_entry", format_func=lambda e: ctx.t(f"ret.entry.{e}"))
    split = c3.selectbox(ctx.t("ret.split"), R.SPLITS, key="r_split", format_func=lambda s: ctx.t(f"ret.split.{s}"))
    known = frame.segment_values(path, version, split) if split != "none" else []
    chosen_raw = [v for v in str(st.session_state.get("r_vals", "")).split("|") if v in known]
    if "r_vals_pick" not in st.session_state or st.session_state.get("_r_vals_split") != split:
        st.session_state["r_vals_pick"] = chosen_raw
        st.session_state["_r_vals_split"] = split
    picked = c4.multiselect(ctx.t("ret.values"), known, key="r_vals_pick", disabled=split == "none",
                            format_func=lambda v: rc.segment_label(split, v, lang), placeholder=ctx.t("side.all"))
    st.session_state["r_vals"] = "|".join(picked)
    d1, d2, d3, d4 = st.columns([2, 1, 1, 1])
    metric = d1.selectbox(ctx.t("ret.metric"), R.METRICS, key="r_metric", format_func=lambda m: ctx.t(f"ret.metric.{m}"))
    mean = d2.segmented_control(ctx.t("ret.mean"), ["weighted", "simple"], key="r_mean", required=True,
                                format_func=lambda m: ctx.t(f"ret.mean.{m}")) or "weighted"
    n = int(d3.number_input(ctx.t("ret.trend_n"), min_value=1, max_value=104, step=1, key="r_n"))
    relative = d4.toggle(ctx.t("ret.relative_toggle"), key="r_rel")
frame.keep_page_params({"r_grain": grain, "r_entry": entry, "r_split": split, "r_metric": metric, "r_mean": mean,
                        "r_rel": relative, "r_n": n, "r_vals": "|".join(picked)}, DEFAULTS)

spec = R.CohortSpec(grain=grain, entry=entry, split=split, values=tuple(picked))
money_needed = metric not in R.SHARE_METRICS
with st.spinner(ctx.t("ret.title")):
    view = frame.retention(path, version, f, spec, as_of, money_needed)
table = view.table
notes = [frame.filter_caption(ctx)]
if picked:
    notes.append(ctx.t("ret.kept", values=", ".join(rc.segment_label(split, v, lang) for v in picked)))
if entry == "recurring":
    notes.append(ctx.t("ret.recurring_note"))
st.caption(" · ".join(notes))

if table.height == 0:
    st.info(ctx.t("ret.no_cohorts"), icon=":material/filter_alt_off:")
    st.stop()

# -- the cohort table -------------------------------------------------------------
st.subheader(ctx.t("ret.heatmap"))
by_segment = R.cohort_values(table, metric)
values = R.cohort_values(R.combine_segments(table), metric) if split != "none" else by_segment
shown = R.relative_to_previous(values) if relative else values
heat = rc.heatmap(shown, metric, grain, lang, ctx.money, relative=relative)
# A click on a cell picks it below. The chart's key changes when a picker changes
# the cell, which clears the click's outline (it would point at another cell).
clicked = rc.picked_cell(st.plotly_chart(heat, width="stretch", on_select="rerun", selection_mode="points",
                                         key=f"r_heat_{st.session_state.get('_r_heat_gen', 0)}"))
if clicked is None:
    st.session_state.pop("_r_heat_applied", None)
elif clicked != st.session_state.get("_r_heat_applied"):
    # A new click (applied once: a later change of a picker is not undone by it).
    st.session_state["_r_heat_applied"] = clicked
    st.session_state["r_cell_cohort"], st.session_state["r_cell_k"] = clicked
st.markdown(rc.reading_cohorts(values, metric, n, grain, lang, ctx.money)
            or ctx.t("ret.read.trend_none", n=n, grain=ctx.t(f"ret.grain.{grain}").lower()))
st.caption(ctx.t("ret.heatmap_note") + (" " + ctx.t("ret.combined", split=ctx.t(f"ret.split.{split}").lower())
                                        if split != "none" else ""))
export = by_segment.join(table, on=["cohort", "segment", "k"], how="left", suffix="_t").select(
    "cohort", "segment", "k", "size", "active", "retained_later", "repeaters", "orders", "revenue", "margin",
    pl.col("value").alias(metric), "complete")
st.download_button(ctx.t("ret.download"), lambda: to_excel_csv(frame.export(ctx, "cohorts", lambda: export)), file_name=f"cohorts_{grain}_{metric}.csv",
                   mime="text/csv", icon=":material/download:")

# -- curves, the month-N trend, repeat rates -------------------------------------
st.subheader(ctx.t("ret.curves"))
curve = R.average_curve(by_segment, weighted=mean == "weighted", by_segment=split != "none",
                        share=metric in R.SHARE_METRICS)
st.plotly_chart(rc.curves(curve, values if split == "none" else None, metric, grain, split, lang, ctx.money),
                width="stretch")
reading = rc.reading_curve(curve, metric, grain, lang, ctx.money)
if reading:
    st.markdown(reading)

st.subheader(ctx.t("ret.trend"))
trend = R.n_period_trend(by_segment, n)
st.plotly_chart(rc.n_trend(trend, n, metric, grain, split, lang, ctx.money), width="stretch")
st.markdown(rc.reading_trend(trend, n, metric, grain, lang, ctx.money))

st.subheader(ctx.t("ret.repeat"))
rates = R.repeat_rates(table)
st.plotly_chart(rc.repeat_chart(rates, grain, split, lang), width="stretch")
reading = rc.reading_repeat(rates, grain, lang)
if reading:
    st.markdown(reading)

# -- the customer base, month by month --------------------------------------------
st.subheader(ctx.t("ret.flow"))
if view.flow.height:
    st.plotly_chart(rc.flow_chart(view.flow, lang), width="stretch")
    reading = rc.reading_flow(view.flow, lang)
    if reading:
        st.markdown(reading)
    st.caption(ctx.t("ret.flow_note", w=f.inactivity_days))
    with st.expander(ctx.t("ret.flow_table")):
        frame.dataframe(st, 
            pymap.columns(view.flow, {"month": lambda d: fmt.month(d, lang)}).select(
                pl.col("month").alias(ctx.t("ret.flow.month")),
                pl.col("base_start").alias(ctx.t("ret.flow.base_start")),
                pl.col("new").alias(ctx.t("ret.flow.new")),
                pl.col("reactivated").alias(ctx.t("ret.flow.reactivated")),
                pl.col("churned").alias(ctx.t("ret.flow.churned")),
                pl.col("base_end").alias(ctx.t("ret.flow.base_end")),
                (pl.col("churn_rate") * 100).round(1).alias(ctx.t("ret.flow.churn_rate") + " %"),
                (pl.col("retention_rate") * 100).round(1).alias(ctx.t("ret.flow.retention_rate") + " %"),
                (pl.col("classic_retention") * 100).round(1).alias(ctx.t("ret.flow.classic") + " %"),
            ),
            hide_index=True, width="stretch")
else:
    st.info(ctx.t("ret.no_flow"))

st.subheader(ctx.t("ret.life"))
st.plotly_chart(rc.lifecycle_chart(view.lifecycle, lang), width="stretch")
reading = rc.reading_lifecycle(view.lifecycle, lang)
if reading:
    st.markdown(reading)

# -- time to the second purchase --------------------------------------------------
st.subheader(ctx.t("ret.repeat_time"))
with st.container():
    if view.km.height:
        st.plotly_chart(rc.km_chart(view.km, split, lang), width="stretch")
        reading = rc.reading_km(view.km, lang)
        if reading:
            st.markdown(reading)
    else:
        st.info(ctx.t("ret.no_km"))
with st.container():
    gaps = view.gaps
    suggested = R.suggested_window(gaps)
    if gaps["pairs"]:
        st.plotly_chart(rc.gaps_chart(gaps, f.inactivity_days, suggested, lang), width="stretch")
        reading = rc.reading_gaps(gaps, f.inactivity_days, suggested, lang)
        if reading:
            st.markdown(reading)
        if gaps["sample_every"] > 1:
            st.caption(ctx.t("ret.gaps_sample", k=gaps["sample_every"], n=fmt.number(gaps["pairs"], lang)))
        if suggested is not None and suggested != f.inactivity_days:
            def _use(days: int = suggested) -> None:
                st.session_state["window"] = days

            st.button(ctx.t("ret.use_window", days=suggested), on_click=_use, icon=":material/tune:")
    else:
        st.info(ctx.t("ret.no_gaps"))

# -- the customers behind a cell --------------------------------------------------
st.subheader(ctx.t("ret.cell"))
st.caption(ctx.t("ret.cell_hint"))
cohorts = sorted(values["cohort"].unique().to_list(), reverse=True)
labels = {c: rc.cohort_label(c, grain, lang) for c in cohorts}
if st.session_state.get("r_cell_cohort") not in cohorts:  # the latest cohort with a period 1
    st.session_state["r_cell_cohort"] = cohorts[1] if len(cohorts) > 1 else cohorts[0]


def _picked_by_hand() -> None:
    st.session_state["_r_heat_gen"] = st.session_state.get("_r_heat_gen", 0) + 1
    st.session_state.pop("_r_heat_applied", None)


e1, e2, e3 = st.columns([2, 1, 1])
cohort = e1.selectbox(ctx.t("ret.cell_cohort"), cohorts, key="r_cell_cohort", format_func=labels.get,
                      on_change=_picked_by_hand)
max_k = int(values.filter(pl.col("cohort") == cohort)["k"].max())
st.session_state["r_cell_k"] = min(int(st.session_state.get("r_cell_k", 1)), max_k)
k = int(e2.number_input(ctx.t("ret.cell_k"), min_value=0, max_value=max_k, step=1, key="r_cell_k",
                        on_change=_picked_by_hand))
later = e3.toggle(ctx.t("ret.cell_later"), key="r_cell_later")
people = frame.cell_customers(path, version, f, spec, cohort, k, later, None)
if people.height:
    st.markdown(ctx.t("ret.cell_caption", n=fmt.number(people.height, lang), cohort=labels[cohort], k=k,
                      later=ctx.t("ret.cell_later_suffix") if later else ""))
    if people.height >= 5000:
        st.caption(ctx.t("ret.cell_limit", n=fmt.number(people.height, lang)))
    pretty = pymap.columns(people, {
        "acquisition_channel": lambda c: label("channel", c, lang), "revenue": ctx.money.full,
    }).with_columns(
        pl.col("first_order").dt.strftime("%d/%m/%Y %H:%M"),
    ).rename({c: ctx.t(f"ret.col.{c}") for c in people.columns})
    frame.dataframe(st, pretty, hide_index=True, width="stretch", height=300)
    st.download_button(ctx.t("ret.cell_download"), lambda: to_excel_csv(frame.export(ctx, "cohort_customers", lambda: people)),
                       file_name=f"customers_{cohort.isoformat()}_k{k}{'_later' if later else ''}.csv",
                       mime="text/csv", icon=":material/download:", key="r_cell_download")
else:
    st.info(ctx.t("ret.cell_none"))
