"""Loyalty and referral programmes: does the programme pay for itself? The causal
answer with its interval beside the naive one, programme health, points liability
and breakage, and the referral programme (metrics.loyalty). Controls live in the URL
(``l_...``)."""

from __future__ import annotations

from datetime import date, timedelta

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from data.importer import to_excel_csv, to_xlsx
from metrics import loyalty as L
from metrics import pymap
from pages.ui import fmt, frame
from pages.ui.charts import _layout
from pages.ui.clv_charts import PALETTE
from pages.ui.i18n import label

# One colour per tier, the same on both sides of the Sankey.
TIER_COLOURS = {L.NO_TIER: "#B0B7C3", "member": "#4C78A8", "silver": "#9AA5B1", "gold": "#E0A526",
                "platinum": "#6F4E9B"}


def _fade(hex_colour: str, alpha: float = 0.35) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


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
mo = roi.monthly
if roi.status == "ok" and mo.height and roi.cost is not None:
    cf = go.Figure()
    cf.add_scatter(x=mo["month"].to_list(), y=[money.convert(v) for v in mo["cum_incremental"]], mode="lines",
                   name=ctx.t("loy.cum_incremental"), line={"color": PALETTE[0], "width": 3})
    cf.add_scatter(x=mo["month"].to_list(), y=[money.convert(v) for v in mo["cum_cost"]], mode="lines",
                   name=ctx.t("loy.cum_cost"), line={"color": PALETTE[3], "width": 3, "dash": "dot"})
    cf.update_layout(yaxis={"title": money.symbol, "rangemode": "tozero"})
    st.plotly_chart(_layout(cf, lang, ctx.t("loy.payback_title")), width="stretch")
    st.markdown(ctx.t("loy.read.payback", n=roi.payback) if roi.payback is not None else ctx.t("loy.read.no_payback"))

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
st.markdown(f"**{ctx.t('loy.tiers_heading')}**")
st.session_state["l_t1"] = frame.page_param("l_t1", (), "")
st.session_state["l_t2"] = frame.page_param("l_t2", (), "")
st.session_state["l_rule"] = frame.page_param("l_rule", (), "")


def _day(text: str, default: date) -> date:
    try:
        return min(max(date.fromisoformat(text), ctx.first or default), as_of) if text else default
    except ValueError:
        return default


from_default = max(view.start - timedelta(days=1), ctx.first or view.start)  # the day before the period
t1, t2, t3 = st.columns([1, 1, 2])
d1 = t1.date_input(ctx.t("loy.tier_from"), value=_day(st.session_state["l_t1"], from_default),
                   min_value=ctx.first, max_value=as_of, format="DD/MM/YYYY")
d2 = t2.date_input(ctx.t("loy.tier_to"), value=_day(st.session_state["l_t2"], view.end),
                   min_value=ctx.first, max_value=as_of, format="DD/MM/YYYY")
rule_text = t3.text_input(ctx.t("loy.tier_rule"), key="l_rule", placeholder=ctx.t("loy.tier_rule_placeholder"),
                          help=ctx.t("loy.tier_rule_help"))
frame.keep_page_params({"l_t1": "" if d1 == from_default else d1.isoformat(),
                        "l_t2": "" if d2 == view.end else d2.isoformat(), "l_rule": rule_text},
                       {"l_t1": "", "l_t2": "", "l_rule": ""})
rule = None
if rule_text.strip():
    try:
        rule = L.parse_tier_rule(rule_text)
    except L.TierRuleError as e:
        st.error(ctx.t("loy.tier_rule_bad", why=str(e)), icon=":material/error:")
if d2 < d1:
    d1, d2 = d2, d1
mv = frame.loyalty_tiers(path, version, f, d1, d2, rule, float(margin) / 100).filter(pl.col("customers") > 0)
if mv.height:
    nodes = sorted(set(mv["from_tier"]) | set(mv["to_tier"]),
                   key=lambda n: ((L.NO_TIER, *L.TIERS).index(n) if n in (L.NO_TIER, *L.TIERS) else 99, n))
    names = [label("tier", n, lang) for n in nodes]
    idx = {n: i for i, n in enumerate(nodes)}
    colours = [TIER_COLOURS.get(n, PALETTE[(i + 4) % len(PALETTE)]) for i, n in enumerate(nodes)]
    sk = go.Figure(go.Sankey(node={"label": [f"{n} ({fmt.day(d1, lang)})" for n in names]
                                   + [f"{n} ({fmt.day(d2, lang)})" for n in names], "pad": 14,
                                   "color": colours + colours},
                             link={"source": [idx[a] for a in mv["from_tier"]],
                                   "target": [len(nodes) + idx[b] for b in mv["to_tier"]],
                                   "value": mv["customers"].to_list(),
                                   "color": [_fade(TIER_COLOURS.get(b, "#999999")) for b in mv["to_tier"]]}))
    st.plotly_chart(_layout(sk, lang, ctx.t("loy.tiers_title", a=fmt.day(d1, lang), b=fmt.day(d2, lang))),
                    width="stretch")
    moved = mv.filter((pl.col("from_tier") != pl.col("to_tier")) & (pl.col("from_tier") != L.NO_TIER))
    st.markdown(ctx.t("loy.read.tiers", joined=fmt.number(int(mv.filter(pl.col("from_tier") == L.NO_TIER)
                                                              ["customers"].sum()), lang),
                      moved=fmt.number(int(moved["customers"].sum()), lang)))
    st.caption(ctx.t("loy.tiers_note" if rule is None else "loy.tiers_rule_note"))
else:
    st.caption(ctx.t("loy.tiers_none"))

# -- members and non-members, naively --------------------------------------------------------
st.subheader(ctx.t("loy.naive"))
nv = view.naive
pred = frame.loyalty_predicted(path, version, f, as_of, float(vpp), float(margin) / 100, float(extra), int(window))
if pred is not None:
    nv = nv.join(pred.select("group", "predicted_clv", "p_alive"), on="group", how="left")
fns = {"group": lambda g: ctx.t(f"loy.group.{g}"), "customers": lambda n: fmt.number(n, lang),
       "spend_per_customer": money.full, "aov": money.full,
       "historical_clv": money.full, "repeat_rate": lambda v: fmt.percent(v, lang, 0)}
cols = [
    pl.col("group").alias(ctx.t("loy.col.group")),
    pl.col("customers").alias(ctx.t("loy.col.customers")),
    pl.col("spend_per_customer").alias(ctx.t("loy.col.spend")),
    pl.col("frequency").round(2).alias(ctx.t("loy.col.frequency")),
    pl.col("aov").alias(ctx.t("loy.col.aov")),
    pl.col("historical_clv").alias(ctx.t("loy.col.clv")),
]
if pred is not None:
    fns |= {"predicted_clv": money.full, "p_alive": lambda v: fmt.percent(v, lang, 0)}
    cols += [pl.col("predicted_clv").alias(ctx.t("loy.col.pred_clv")),
             pl.col("p_alive").alias(ctx.t("loy.col.p_alive"))]
cols.append(pl.col("repeat_rate").alias(ctx.t("loy.col.repeat")))
table = pymap.columns(nv, fns).select(cols)
frame.dataframe(st, table, hide_index=True, width="stretch")
st.caption(ctx.t("loy.naive_note") + ("" if pred is not None else " " + ctx.t("loy.no_pred")))
cv = view.curves.filter(pl.col("customers") > 0)
if cv.height:
    rc = go.Figure()
    for i, g in enumerate(L.GROUPS):
        part = cv.filter(pl.col("group") == g).sort("k")
        if part.height:
            rc.add_scatter(x=part["k"].to_list(), y=part["share"].to_list(), mode="lines+markers",
                           name=ctx.t(f"loy.group.{g}"), line={"color": PALETTE[i], "width": 3},
                           customdata=part["customers"].to_list(),
                           hovertemplate="%{x}: %{y:.1%} (n=%{customdata:,})<extra>%{fullData.name}</extra>")
    rc.update_layout(xaxis={"title": ctx.t("loy.months_since_first"), "dtick": 1},
                     yaxis={"tickformat": ".0%", "rangemode": "tozero", "title": ctx.t("loy.retained")})
    st.plotly_chart(_layout(rc, lang, ctx.t("loy.curves_title")), width="stretch")
    k3 = cv.filter(pl.col("k") == 3)
    if k3.height == 3:
        by = {g: v for g, v in zip(k3["group"], k3["share"])}
        st.markdown(ctx.t("loy.read.curves", r=fmt.percent(by["redeeming"], lang, 0),
                          nr=fmt.percent(by["non_redeeming"], lang, 0), nm=fmt.percent(by["non_member"], lang, 0)))
st.download_button(ctx.t("loy.naive_csv"), lambda: to_excel_csv(frame.export(ctx, "loyalty_naive", lambda: table)), file_name="loyalty_members_vs_non_members.csv",
                   mime="text/csv", icon=":material/download:", on_click="ignore")

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
if ref.cost is not None and ref.incremental is not None:
    r1, r2, r3, r4 = st.columns(4)
    r1.metric(ctx.t("loy.m_ref_roi"), "—" if ref.roi is None else fmt.percent(ref.roi, lang, 0),
              help=None if ref.roi_low is None else ctx.t("loy.interval", lo=fmt.percent(ref.roi_low, lang, 0),
                                                          hi=fmt.percent(ref.roi_high, lang, 0)))
    r2.metric(ctx.t("loy.m_ref_incremental"), money.short(ref.incremental))
    r3.metric(ctx.t("loy.m_ref_cost"), money.short(ref.cost),
              help=ctx.t("loy.ref_cost_help", rewards=money.short(ref.rewards), fees=money.short(ref.fees)))
    r4.metric(ctx.t("loy.m_ref_per"), "—" if ref.reward_per_referred is None else money.short(ref.reward_per_referred))
    key = {"pays": "loy.ref_verdict.pays", "loses": "loy.ref_verdict.loses"}.get(ref.verdict, "loy.ref_verdict.unclear")
    st.markdown(ctx.t(key, roi=fmt.percent(ref.roi, lang, 0),
                      lo="—" if ref.roi_low is None else fmt.percent(ref.roi_low, lang, 0),
                      hi="—" if ref.roi_high is None else fmt.percent(ref.roi_high, lang, 0)))
    if ref.roi_all_incremental is not None:
        st.caption(ctx.t("loy.ref_all", roi=fmt.percent(ref.roi_all_incremental, lang, 0)))
elif ref.referred:
    st.info(ctx.t("loy.ref_unknown"), icon=":material/help:")
if ref.comparison.height:
    frame.dataframe(st, pymap.columns(ref.comparison, {
        "group": lambda g: ctx.t(f"loy.ref_group.{g}"), "customers": lambda n: fmt.number(n, lang),
        "repeat_rate": lambda v: fmt.percent(v, lang, 0), "historical_clv": money.full,
    }).select(
        pl.col("group").alias(ctx.t("loy.col.group")),
        pl.col("customers").alias(ctx.t("loy.col.customers")),
        pl.col("repeat_rate").alias(ctx.t("loy.col.repeat")),
        pl.col("historical_clv").alias(ctx.t("loy.col.clv")),
    ), hide_index=True, width="stretch")
if ref.advocates.height:
    st.markdown(f"**{ctx.t('loy.advocates')}**")
    frame.dataframe(st, pymap.columns(ref.advocates.head(20), {"referred_margin": money.full}).select(
        pl.col("referrer").alias(ctx.t("loy.col.referrer")), pl.col("referred").alias(ctx.t("loy.col.referred")),
        pl.col("referred_margin").alias(ctx.t("loy.col.ref_margin")),
    ), hide_index=True, width="stretch")
    st.caption(ctx.t("loy.advocates_masked"))

# -- everything on the page, for a spreadsheet -----------------------------------------------
def _workbook() -> dict[str, pl.DataFrame]:
    tables = L.export_tables(view)
    frame.export(ctx, "loyalty_workbook", lambda: tables["advocates"])  # the one sheet with customers (masked)
    return tables


st.divider()
st.download_button(ctx.t("loy.workbook"), lambda: to_xlsx(_workbook()),
                   file_name=f"loyalty_{view.start.isoformat()}_{view.end.isoformat()}.xlsx",
                   mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                   icon=":material/download:", on_click="ignore", help=ctx.t("loy.workbook_help"))
