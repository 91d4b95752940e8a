"""Loyalty and referral programmes: does the programme pay for itself? The causal
answer with its interval beside the naive one, programme health, points liability
and breakage, and the referral programme (metrics.loyalty). Controls live in the URL
(``l_...``)."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from metrics import loyalty as L
from pages.ui import fmt, frame
from pages.ui.charts import _layout
from pages.ui.clv_charts import PALETTE
from pages.ui.i18n import label

ctx = frame.context()
st.title(ctx.t("loy.title"))
if ctx.filters is None or ctx.as_of is None:
    frame.empty_state(ctx)
    st.stop()
st.caption(ctx.t("loy.intro"))
path, version = frame.cache_key()
f, as_of, lang, money = ctx.filters, ctx.as_of, ctx.lang, ctx.money

# -- what-if inputs (kept in the URL; money in VND) ----------------------------------
DEFAULTS = {"l_vpp": 100.0, "l_margin": 30.0, "l_extra": 0.0, "l_win": 6}
st.session_state["l_vpp"] = min(max(float(frame.page_param("l_vpp", (), 100.0)), 0.0), 1e6)
st.session_state["l_margin"] = min(max(float(frame.page_param("l_margin", (), 30.0)), 0.0), 100.0)
st.session_state["l_extra"] = min(max(float(frame.page_param("l_extra", (), 0.0)), 0.0), 1e13)
st.session_state["l_win"] = min(max(int(frame.page_param("l_win", (), 6)), 3), 12)
with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    vpp = c1.number_input(ctx.t("loy.vpp"), min_value=0.0, step=10.0, key="l_vpp", help=ctx.t("loy.vpp_help"))
    margin = c2.number_input(ctx.t("loy.margin"), min_value=0.0, max_value=100.0, step=1.0, key="l_margin",
                             help=ctx.t("clv.margin_help"))
    extra = c3.number_input(ctx.t("loy.extra"), min_value=0.0, step=1_000_000.0, key="l_extra",
                            help=ctx.t("loy.extra_help"))
    window = c4.number_input(ctx.t("loy.window"), min_value=3, max_value=12, step=1, key="l_win",
                             help=ctx.t("loy.window_help"))
frame.keep_page_params({"l_vpp": float(vpp), "l_margin": float(margin), "l_extra": float(extra),
                        "l_win": int(window)}, DEFAULTS)
st.caption(frame.filter_caption(ctx))

with st.spinner(ctx.t("loy.computing")):
    view = frame.loyalty(path, version, f, as_of, float(vpp), float(margin) / 100, float(extra), int(window))
if not view.has_members:
    st.info(ctx.t("loy.no_members"), icon=":material/loyalty:")
    st.stop()
causal, roi = view.causal, view.roi

# -- the answer -----------------------------------------------------------------------
st.subheader(ctx.t("loy.answer"))
if roi.status == "ok" and roi.return_per_unit is not None:
    key = {"pays": "loy.verdict.pays", "loses": "loy.verdict.loses"}.get(roi.verdict, "loy.verdict.unclear")
    line = ctx.t(key, r=fmt.number(roi.return_per_unit, lang, 1), lo=fmt.number(roi.return_low, lang, 1),
                 hi=fmt.number(roi.return_high, lang, 1))
    box = {"pays": st.success, "loses": st.error}.get(roi.verdict, st.warning)
    box(line, icon=":material/balance:")
elif roi.status == "unknown":
    st.info(ctx.t("loy.verdict.unknown"), icon=":material/help:")
else:
    st.info(ctx.t("loy.verdict.no_effect"), icon=":material/help:")
m1, m2, m3, m4 = st.columns(4)
m1.metric(ctx.t("loy.m_roi"), "—" if roi.roi is None else fmt.percent(roi.roi, lang, 0),
          help=None if roi.roi_low is None else ctx.t("loy.interval", lo=fmt.percent(roi.roi_low, lang, 0),
                                                      hi=fmt.percent(roi.roi_high, lang, 0)))
m2.metric(ctx.t("loy.m_incremental"), "—" if roi.incremental is None else money.short(roi.incremental))
m3.metric(ctx.t("loy.m_cost"), "—" if roi.cost is None else money.short(roi.cost),
          help=ctx.t("loy.cost_help", fees=money.short(roi.fees), rewards=money.short(roi.rewards),
                     extra=money.short(roi.extra_cost)))
m4.metric(ctx.t("loy.m_payback"), "—" if roi.payback is None else ctx.t("clv.months", n=roi.payback))
if roi.cost_scope == "filtered":
    st.caption(ctx.t("loy.cost_scope"))

# -- causal against naive ---------------------------------------------------------------
st.subheader(ctx.t("loy.causal"))
if causal.status == "ok" and causal.effect is not None:
    fig = go.Figure()
    names = [ctx.t("loy.naive_gap"), ctx.t("loy.effect")]
    values = [causal.naive_gap or 0.0, causal.effect]
    fig.add_bar(x=names, y=[money.convert(v) for v in values], marker_color=["#B8C7D9", PALETTE[0]],
                error_y={"type": "data", "symmetric": False, "array": [0, money.convert(causal.high - causal.effect)],
                         "arrayminus": [0, money.convert(causal.effect - causal.low)]},
                hovertemplate="%{x}: %{y:,.0f}<extra></extra>")
    fig.update_layout(yaxis={"title": ctx.t("loy.per_member_month", unit=money.symbol)}, xaxis={"type": "category"})
    st.plotly_chart(_layout(fig, lang, ctx.t("loy.causal_title", n=int(window))), width="stretch")
    st.markdown(ctx.t("loy.read.effect", effect=money.short(causal.effect), lo=money.short(causal.low),
                      hi=money.short(causal.high), n=fmt.number(causal.matched, lang),
                      naive=money.short(causal.naive_gap or 0.0)))
    reason = L.naive_reason(causal, lang, money=money.short)
    if reason:
        st.markdown(reason)
    if causal.pre_trend is not None:
        ok = causal.pre_trend_low is not None and causal.pre_trend_low <= 0 <= causal.pre_trend_high
        st.caption(ctx.t("loy.pretrend_ok" if ok else "loy.pretrend_warn", v=money.short(causal.pre_trend),
                         lo=money.short(causal.pre_trend_low), hi=money.short(causal.pre_trend_high)))
    st.caption(ctx.t("loy.method", n=int(window), eligible=fmt.number(causal.eligible, lang),
                     members=fmt.number(causal.members, lang), unmatched=fmt.number(causal.unmatched, lang)))
else:
    st.info(ctx.t(f"loy.causal_{causal.status}"), icon=":material/info:")

# -- programme health ---------------------------------------------------------------------
st.subheader(ctx.t("loy.health"))
h1, h2 = st.columns(2)
en = view.enrolment
ef = go.Figure()
ef.add_bar(x=en["month"].to_list(), y=en["new_members"].to_list(), name=ctx.t("loy.new_members"),
           marker_color=PALETTE[0])
ef.add_scatter(x=en["month"].to_list(), y=en["members"].to_list(), name=ctx.t("loy.members"), yaxis="y2",
               mode="lines", line={"color": PALETTE[1], "width": 3})
ef.update_layout(yaxis={"title": ctx.t("loy.new_members")},
                 yaxis2={"title": ctx.t("loy.members"), "overlaying": "y", "side": "right", "rangemode": "tozero"})
h1.plotly_chart(_layout(ef, lang, ctx.t("loy.enrolment_title")), width="stretch")
pm = view.points_monthly
pf = go.Figure()
for col, colour in (("earned", PALETTE[0]), ("redeemed", PALETTE[3]), ("expired", PALETTE[1])):
    pf.add_bar(x=pm["month"].to_list(), y=pm[col].to_list(), name=ctx.t(f"loy.points.{col}"), marker_color=colour)
pf.update_layout(barmode="group", yaxis={"title": ctx.t("loy.points_axis")})
h2.plotly_chart(_layout(pf, lang, ctx.t("loy.points_title")), width="stretch")
pts, brk = view.points, view.breakage
share = view.active_share.filter(pl.col("share").is_not_null())
p1, p2, p3, p4 = st.columns(4)
p1.metric(ctx.t("loy.m_active_share"), "—" if share.height == 0 else fmt.percent(share["share"][-1], lang, 0))
p2.metric(ctx.t("loy.m_redemption"), "—" if pts.redemption_rate is None else fmt.percent(pts.redemption_rate, lang, 0))
p3.metric(ctx.t("loy.m_liability"), money.short(pts.liability), help=ctx.t("loy.liability_help",
          n=fmt.number(pts.outstanding, lang), vpp=fmt.number(view.value_per_point, lang)))
p4.metric(ctx.t("loy.m_net_liability"), money.short(brk.net_liability),
          help=ctx.t("loy.breakage_help", b=fmt.percent(brk.outstanding_breakage, lang, 0)))
if pts.earned:
    st.markdown(ctx.t("loy.read.points", rate=fmt.percent(pts.redemption_rate, lang, 0), liab=money.short(pts.liability),
                      b=fmt.percent(brk.outstanding_breakage, lang, 0), net=money.short(brk.net_liability)))
mv = view.tier_movement.filter(pl.col("customers") > 0)
if mv.height:
    nodes = sorted(set(mv["from_tier"]) | set(mv["to_tier"]))
    left = right = [label("tier", n, lang) for n in nodes]  # before on the left, after on the right
    idx = {n: i for i, n in enumerate(nodes)}
    sk = go.Figure(go.Sankey(node={"label": left + right, "pad": 14},
                             link={"source": [idx[a] for a in mv["from_tier"]],
                                   "target": [len(nodes) + idx[b] for b in mv["to_tier"]],
                                   "value": mv["customers"].to_list()}))
    st.plotly_chart(_layout(sk, lang, ctx.t("loy.tiers_title", a=fmt.day(view.start, lang), b=fmt.day(view.end, lang))),
                    width="stretch")
    if view.tier_note == "recorded":
        st.caption(ctx.t("loy.tiers_note"))

# -- members and non-members, naively --------------------------------------------------------
st.subheader(ctx.t("loy.naive"))
nv = view.naive
st.dataframe(nv.select(
    pl.col("group").map_elements(lambda g: ctx.t(f"loy.group.{g}"), return_dtype=pl.Utf8).alias(ctx.t("loy.col.group")),
    pl.col("customers").alias(ctx.t("loy.col.customers")),
    pl.col("spend_per_customer").map_elements(money.full, return_dtype=pl.Utf8).alias(ctx.t("loy.col.spend")),
    pl.col("frequency").round(2).alias(ctx.t("loy.col.frequency")),
    pl.col("aov").map_elements(money.full, return_dtype=pl.Utf8).alias(ctx.t("loy.col.aov")),
    pl.col("historical_clv").map_elements(money.full, return_dtype=pl.Utf8).alias(ctx.t("loy.col.clv")),
    pl.col("repeat_rate").map_elements(lambda v: fmt.percent(v, lang, 0), return_dtype=pl.Utf8)
    .alias(ctx.t("loy.col.repeat")),
), hide_index=True, width="stretch")
st.caption(ctx.t("loy.naive_note"))

# -- referrals --------------------------------------------------------------------------------
st.subheader(ctx.t("loy.referrals"))
ref = view.referrals
bm = ref.by_month.filter(pl.col("new_customers") > 0)
if bm.height:
    rf = go.Figure()
    rf.add_scatter(x=bm["month"].to_list(), y=bm["rate"].to_list(), mode="lines+markers", name=ctx.t("loy.ref_rate"),
                   line={"color": PALETTE[0]})
    rf.update_layout(yaxis={"tickformat": ".0%", "rangemode": "tozero", "title": ctx.t("loy.ref_rate")})
    st.plotly_chart(_layout(rf, lang, ctx.t("loy.ref_title")), width="stretch")
if ref.rate is not None:
    st.markdown(ctx.t("loy.read.referral", rate=fmt.percent(ref.rate, lang, 1), n=fmt.number(ref.referred, lang),
                      new=fmt.number(ref.new_customers, lang),
                      cost=money.short(ref.reward_per_referred) if ref.reward_per_referred is not None else "—"))
if ref.comparison.height:
    st.dataframe(ref.comparison.select(
        pl.col("group").map_elements(lambda g: ctx.t(f"loy.ref_group.{g}"), return_dtype=pl.Utf8)
        .alias(ctx.t("loy.col.group")),
        pl.col("customers").alias(ctx.t("loy.col.customers")),
        pl.col("repeat_rate").map_elements(lambda v: fmt.percent(v, lang, 0), return_dtype=pl.Utf8)
        .alias(ctx.t("loy.col.repeat")),
        pl.col("historical_clv").map_elements(money.full, return_dtype=pl.Utf8).alias(ctx.t("loy.col.clv")),
    ), hide_index=True, width="stretch")
if ref.advocates.height:
    st.markdown(f"**{ctx.t('loy.advocates')}**")
    st.dataframe(ref.advocates.head(20).select(
        pl.col("referrer").alias(ctx.t("loy.col.referrer")), pl.col("referred").alias(ctx.t("loy.col.referred")),
        pl.col("referred_margin").map_elements(money.full, return_dtype=pl.Utf8).alias(ctx.t("loy.col.ref_margin")),
    ), hide_index=True, width="stretch")
