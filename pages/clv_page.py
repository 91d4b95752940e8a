"""Customer lifetime value: what customers are worth to date and over the next months
(BG/NBD and Gamma-Gamma, metrics.clv), how sure the model is, and whether to trust it
(the holdout check). Controls live in the URL (``c_...``)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import streamlit as st

from data.importer import to_excel_csv
from metrics import clv_view as CV
from metrics import pymap
from metrics import retention as R
from pages.ui import clv_charts as cc
from pages.ui import fmt, frame

ctx = frame.context()
st.title(ctx.t("clv.title"))
if ctx.filters is None or ctx.as_of is None:
    frame.empty_state(ctx)
    st.stop()
st.caption(ctx.t("clv.intro"))
path, version = frame.cache_key()
f, as_of, lang, money = ctx.filters, ctx.as_of, ctx.lang, ctx.money
mf = CV.model_filters(f)  # the models read all history: the period does not apply
first, _ = frame._bounds(path, version)

# -- settings (kept in the URL) ---------------------------------------------------
HORIZONS = (3, 6, 12, 24, 36)
GROUPS = CV.GROUPS
default_cal = CV.default_calibration_end(first, as_of)
DEFAULTS = {"c_h": 12, "c_disc": 10.0, "c_margin": 30.0, "c_group": "segment", "c_log": False,
            "c_cal": default_cal.isoformat()}
frame.page_param("c_h", (), 12)
if st.session_state["c_h"] not in HORIZONS:
    st.session_state["c_h"] = 12
st.session_state["c_disc"] = min(max(float(frame.page_param("c_disc", (), 10.0)), 0.0), 100.0)
st.session_state["c_margin"] = min(max(float(frame.page_param("c_margin", (), 30.0)), 0.0), 100.0)
frame.page_param("c_group", GROUPS, "segment")
frame.page_param("c_log", (), False)
cal_raw = frame.page_param("c_cal", (), default_cal.isoformat())
cal_lo, cal_hi = first + timedelta(days=28), as_of - timedelta(days=14)
if cal_lo >= cal_hi:  # under six weeks of history: nothing to learn from or check against
    st.warning(ctx.t("clv.too_short", days=(as_of - first).days), icon=":material/data_alert:")
    st.stop()
try:
    cal_value = date.fromisoformat(str(cal_raw))
except ValueError:
    cal_value = default_cal
# Kept inside the data's dates on every run (an import or undo may move them).
picked_cal = st.session_state.get("c_cal_pick", cal_value)
st.session_state["c_cal_pick"] = min(max(picked_cal if isinstance(picked_cal, date) else cal_value, cal_lo), cal_hi)

with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    horizon = c1.selectbox(ctx.t("clv.horizon"), HORIZONS, key="c_h",
                           format_func=lambda m: ctx.t("clv.months", n=m))
    discount = c2.number_input(ctx.t("clv.discount"), min_value=0.0, max_value=100.0, step=1.0, key="c_disc",
                               help=ctx.t("clv.discount_help"))
    margin = c3.number_input(ctx.t("clv.margin"), min_value=0.0, max_value=100.0, step=1.0, key="c_margin",
                             help=ctx.t("clv.margin_help"))
    cal_end = c4.date_input(ctx.t("clv.calibration"), key="c_cal_pick", min_value=cal_lo, max_value=cal_hi,
                            format="DD/MM/YYYY", help=ctx.t("clv.calibration_help"))
frame.keep_page_params({"c_h": horizon, "c_disc": float(discount), "c_margin": float(margin),
                        "c_group": st.session_state["c_group"], "c_log": st.session_state["c_log"],
                        "c_cal": cal_end.isoformat()}, DEFAULTS)
settings = CV.Settings(horizon_months=int(horizon), annual_discount_rate=float(discount) / 100,
                       margin_rate=float(margin) / 100)
notes = [frame.filter_caption(ctx), ctx.t("clv.all_history", date=fmt.day(as_of, lang))]
st.caption(" · ".join(n for n in notes if n))

with st.spinner(ctx.t("clv.fitting")):
    scored = frame.clv_scored(path, version, mf, as_of, settings)
frame.stop_unless_fitted(ctx, scored)
customers = scored.customers
with st.spinner(ctx.t("clv.fitting")):
    boot = frame.clv_bootstrap(path, version, mf, as_of, settings)
    check = frame.clv_validation(path, version, mf, cal_end, as_of, CV.Settings(unit=settings.unit))

# -- the headline -----------------------------------------------------------------
total = boot.filter(pl.col("group") == "all").row(0, named=True)
top20 = CV.top_share(customers["total_value"], 0.2)
m1, m2, m3, m4 = st.columns(4)
m1.metric(ctx.t("clv.m_total", n=horizon), money.short(total["total"]),
          help=ctx.t("clv.m_total_help", low=money.short(total["low"]), high=money.short(total["high"])))
m2.metric(ctx.t("clv.m_mean"), money.short(total["mean"]))
m3.metric(ctx.t("clv.m_hist"), money.short(float(customers["historical_clv"].sum())))
m4.metric(ctx.t("clv.m_top20"), fmt.percent(top20, lang, 0))
st.markdown(cc.reading_total(boot, int(horizon), lang, money))
if check.grade:
    icon = {"good": ":material/verified:", "fair": ":material/info:", "poor": ":material/warning:"}[check.grade]
    box = {"good": st.success, "fair": st.info, "poor": st.warning}[check.grade]
    box(cc.reading_validation(check, lang), icon=icon)
st.caption(ctx.t("clv.terms"))

# -- distribution ------------------------------------------------------------------
st.subheader(ctx.t("clv.dist"))
d1, d2 = st.columns([3, 1])
group = d1.selectbox(ctx.t("clv.group_by"), GROUPS, key="c_group", format_func=lambda g: ctx.t(f"clv.group.{g}"))
log = d2.toggle(ctx.t("clv.log"), key="c_log")
st.plotly_chart(cc.distribution(customers, lang, money, log=log), width="stretch")
st.markdown(cc.reading_distribution(customers, lang, money))
st.plotly_chart(cc.boxes(customers, group, lang, money, log=log), width="stretch")
st.caption(ctx.t("clv.terms_short"))

# -- who holds the value -----------------------------------------------------------
st.subheader(ctx.t("clv.lorenz"))
st.plotly_chart(cc.lorenz(CV.lorenz(customers["total_value"]), lang), width="stretch")
st.markdown(cc.reading_lorenz(top20, lang))

# -- by group, with intervals -------------------------------------------------------
st.subheader(ctx.t("clv.groups"))
st.plotly_chart(cc.by_group(boot, group, lang, money), width="stretch")
reading = cc.reading_group(boot, group, lang, money)
if reading:
    st.markdown(reading)
st.caption(ctx.t("clv.interval_note") + " " + ctx.t("clv.terms_short"))
ratios = CV.clv_to_cac(customers, frame.clv_cac(path, version, mf))
st.markdown(f"**{ctx.t('clv.cac')}**")
if ratios.height:
    frame.dataframe(st, pymap.columns(ratios, {
        "channel": lambda c: cc.group_label("acquisition_channel", c, lang),
        "value": money.full, "cac": money.full,
        "ratio": lambda r: fmt.number(r, lang, 1) + " : 1",
    }).select(
        pl.col("channel").alias(ctx.t("clv.col.channel")),
        pl.col("customers").alias(ctx.t("clv.col.customers")),
        pl.col("value").alias(ctx.t("clv.col.value")),
        pl.col("cac").alias(ctx.t("clv.col.cac")),
        pl.col("ratio").alias(ctx.t("clv.col.ratio"))), hide_index=True, width="stretch")
    st.markdown(cc.reading_cac(ratios, lang))
else:
    st.info(ctx.t("clv.no_cac"), icon=":material/info:")

# -- can we trust it? ---------------------------------------------------------------
st.subheader(ctx.t("clv.check"))
st.caption(ctx.t("clv.check_intro", start=fmt.day(cal_end, lang), end=fmt.day(as_of, lang)))
if check.problems or check.error:
    st.warning("\n".join(cc.explain(check.problems, check.shortfalls, check.error, check.error_code,
                                    check.error_values, lang)), icon=":material/data_alert:")
else:
    v1, v2 = st.columns(2)
    v1.plotly_chart(cc.holdout_bars(check, lang), width="stretch")
    v2.plotly_chart(cc.tracking(check, lang), width="stretch")
    if check.grade:
        st.markdown(cc.reading_validation(check, lang))
    reading = cc.reading_tracking(check, lang)
    if reading:
        st.markdown(reading)
    st.caption(ctx.t("clv.grade_rule") + " " + ctx.t("clv.terms_short"))

# -- how the model reads customers -----------------------------------------------------
st.subheader(ctx.t("clv.model_reads"))
mats = CV.model_matrices(scored.bgnbd, customers, unit=settings.unit)
a1, a2 = st.columns(2)
a1.plotly_chart(cc.matrix(mats, "p_alive", lang, settings.unit), width="stretch")
a2.plotly_chart(cc.matrix(mats, "expected", lang, settings.unit), width="stretch")
st.markdown(cc.reading_matrix(mats, lang, settings.unit))
st.caption(ctx.t("clv.terms_short"))
st.plotly_chart(cc.exposure(customers, as_of, lang), width="stretch")
st.caption(ctx.t("clv.exposure_note"))
bg, gg = scored.bgnbd, scored.gg
se_bg, se_gg = bg.standard_errors or {}, gg.standard_errors or {}
params = [(k, v, se_bg.get(k)) for k, v in bg.params.items()] + [(k, v, se_gg.get(k)) for k, v in gg.params.items()]
frame.dataframe(st, pl.DataFrame({
    ctx.t("clv.col.model"): ["BG/NBD"] * 4 + ["Gamma-Gamma"] * 3,
    ctx.t("clv.col.param"): [p[0] for p in params],
    ctx.t("clv.col.estimate"): [fmt.number(p[1], lang, 4) for p in params],
    ctx.t("clv.col.se"): ["—" if p[2] is None else fmt.number(p[2], lang, 4) for p in params],
}), hide_index=True)
st.caption(ctx.t("clv.params_note", corr=fmt.number(scored.correlation, lang, 2), n=fmt.number(bg.n, lang),
                 repeat=fmt.number(gg.n, lang)))

# -- the customers ---------------------------------------------------------------------
st.subheader(ctx.t("clv.customers_top"))
listing = customers.sort("clv", descending=True).select(
    "customer_id", "frequency", "recency", "T",
    "historical_clv", "clv", "p_alive", "expected_purchases", "segment", "acquisition_channel", "region", "tier")
shown = pymap.columns(listing.head(50), {
    "customer_id": R.mask_id,
    "historical_clv": money.full, "clv": money.full,
    "p_alive": lambda p: fmt.percent(p, lang, 0),
    "acquisition_channel": lambda c: cc.group_label("acquisition_channel", c, lang),
    "tier": lambda c: cc.group_label("tier", c, lang),
    "segment": lambda c: cc.group_label("segment", c, lang),
}).with_columns(
    pl.col("expected_purchases").round(2), pl.col("recency", "T").round(0).cast(pl.Int64),
).rename({c: ctx.t(f"clv.col.{c}") for c in listing.columns})
frame.dataframe(st, shown, hide_index=True, width="stretch", height=320)
st.download_button(  # built when clicked: a million rows are not rebuilt on every rerun
    ctx.t("clv.download"),
    lambda: to_excel_csv(frame.export(ctx, "clv_customers", lambda: pymap.columns(
        listing, {"customer_id": R.mask_id}))),
    file_name=f"clv_{as_of.isoformat()}.csv", mime="text/csv", icon=":material/download:")
