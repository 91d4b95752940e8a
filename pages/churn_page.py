"""Churn risk: who is slipping away, what they are worth, and a list to act on
(metrics.churn on the BG/NBD and Gamma-Gamma models of the CLV page). Controls live
in the URL (``k_...``)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import plotly.graph_objects as go
import polars as pl
import streamlit as st

from data.importer import to_excel_csv
from metrics import churn, pymap, rfm
from metrics import clv_view as CV
from metrics import retention as R
from pages.ui import fmt, frame
from pages.ui.charts import _layout
from pages.ui.clv_charts import PALETTE
from pages.ui.i18n import label

ctx = frame.context()
st.title(ctx.t("churn.title"))
if ctx.filters is None or ctx.as_of is None:
    frame.empty_state(ctx)
    st.stop()
st.caption(ctx.t("churn.intro"))
path, version = frame.cache_key()
f, as_of, lang, money = ctx.filters, ctx.as_of, ctx.lang, ctx.money
mf = CV.model_filters(f)  # the models read all history: the period does not apply
first, _ = frame._bounds(path, version)
# The CLV page's model settings when set there (kept in the URL), else its defaults,
# so both pages value a customer alike.
settings = CV.Settings(
    horizon_months=int(st.session_state.get("c_h", 12)),
    annual_discount_rate=float(st.session_state.get("c_disc", 10.0)) / 100,
    margin_rate=float(st.session_state.get("c_margin", 30.0)) / 100)

# -- controls (kept in the URL) ---------------------------------------------------
DEFAULTS = {"k_thr": 50, "k_min": 0, "k_top": 10, "k_seg": "", "k_chan": "", "k_hold": 10}
st.session_state["k_thr"] = min(max(int(frame.page_param("k_thr", (), 50)), 5), 95)
st.session_state["k_min"] = max(int(frame.page_param("k_min", (), 0)), 0)
st.session_state["k_top"] = min(max(int(frame.page_param("k_top", (), 10)), 1), 50)
st.session_state["k_hold"] = min(max(int(frame.page_param("k_hold", (), 10)), 0), 50)
segments = list(rfm.SEGMENTS)
seg_raw = [v for v in str(frame.page_param("k_seg", (), "")).split("|") if v in segments]
if "k_seg_pick" not in st.session_state:
    st.session_state["k_seg_pick"] = seg_raw

with st.spinner(ctx.t("clv.fitting")):
    scored = frame.clv_scored(path, version, mf, as_of, settings)
frame.stop_unless_fitted(ctx, scored)
with st.spinner(ctx.t("churn.scoring")):
    lst = frame.churn_list(path, version, mf, as_of, settings)
channels = sorted(v for v in lst["last_channel"].unique().to_list() if v is not None)
chan_raw = [v for v in str(frame.page_param("k_chan", (), "")).split("|") if v in channels]
if "k_chan_pick" not in st.session_state:
    st.session_state["k_chan_pick"] = chan_raw

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    threshold = c1.slider(ctx.t("churn.threshold"), min_value=5, max_value=95, step=5, key="k_thr", format="%d%%",
                          help=ctx.t("churn.threshold_help"))
    min_value = c2.number_input(ctx.t("churn.min_value", unit=money.symbol), min_value=0, key="k_min",
                                step=100_000 if money.convert(1.0) == 1.0 else 10,
                                help=ctx.t("churn.min_value_help"))
    top = c3.slider(ctx.t("churn.top"), min_value=1, max_value=50, step=1, key="k_top", format="%d%%")
    d1, d2 = st.columns(2)
    picked_seg = d1.multiselect(ctx.t("churn.segments"), segments, key="k_seg_pick", placeholder=ctx.t("side.all"),
                                format_func=lambda s: rfm.SEGMENTS[s][f"label_{lang}"])
    picked_chan = d2.multiselect(ctx.t("churn.channels"), channels, key="k_chan_pick", placeholder=ctx.t("side.all"),
                                 format_func=lambda c: label("channel", c, lang))
frame.keep_page_params({"k_thr": threshold, "k_min": int(min_value), "k_top": top, "k_seg": "|".join(picked_seg),
                        "k_chan": "|".join(picked_chan), "k_hold": st.session_state["k_hold"]}, DEFAULTS)
st.caption(" · ".join(n for n in (
    frame.filter_caption(ctx), ctx.t("clv.all_history", date=fmt.day(as_of, lang)),
    ctx.t("churn.settings", n=settings.horizon_months, disc=fmt.number(100 * settings.annual_discount_rate, lang, 1),
          margin=fmt.number(100 * settings.margin_rate, lang, 1))) if n))

# min_value is in the display currency; the list is in VND.
min_vnd = float(min_value) / money.convert(1.0)
view = lst
if picked_seg:
    view = view.filter(pl.col("segment").is_in(picked_seg))
if picked_chan:
    view = view.filter(pl.col("last_channel").is_in(picked_chan))
summary = churn.risk_summary(view, threshold / 100, min_vnd)
at_risk = view.filter((pl.col("churn_risk") >= threshold / 100) & (pl.col("historical_margin") >= min_vnd))

# -- headline ------------------------------------------------------------------------
m1, m2, m3, m4 = st.columns(4)
m1.metric(ctx.t("churn.m_at_risk"), fmt.number(summary["at_risk"], lang),
          help=ctx.t("churn.m_at_risk_help", share=fmt.percent(summary["at_risk_share"], lang, 1)))
m2.metric(ctx.t("churn.m_var"), money.short(summary["value_at_risk"]), help=ctx.t("churn.m_var_help"))
m3.metric(ctx.t("churn.m_hist"), money.short(summary["historical"]))
m4.metric(ctx.t("churn.m_customers"), fmt.number(summary["customers"], lang))
st.markdown(ctx.t("churn.read.headline", n=fmt.number(summary["at_risk"], lang),
                  share=fmt.percent(summary["at_risk_share"], lang, 0), threshold=threshold,
                  value=money.short(summary["value_at_risk"]), hist=money.short(summary["historical"])))
st.caption(ctx.t("churn.terms"))

# -- risk bands and the distribution -----------------------------------------------------
st.subheader(ctx.t("churn.bands"))
bands = summary["bands"]
b1, b2 = st.columns(2)
names = [churn.BAND_LABELS[b][0 if lang == "en" else 1] for b in bands["band"]]
fig = go.Figure()
fig.add_bar(x=names, y=bands["customers"].to_list(), marker_color=["#76B041", "#FFB000", "#E4572E"],
            customdata=[money.short(v) for v in bands["value_at_risk"]],
            hovertemplate="%{x}: %{y:,} · " + ctx.t("churn.m_var") + " %{customdata}<extra></extra>")
fig.update_layout(yaxis={"title": ctx.t("clv.customers")}, xaxis={"type": "category"})
b1.plotly_chart(_layout(fig, lang, ctx.t("churn.bands_title", low=int(churn.LOW_RISK_BELOW * 100),
                                         high=int(churn.HIGH_RISK_FROM * 100))), width="stretch")
counts, edges = np.histogram(view["churn_risk"].to_numpy(), bins=20, range=(0.0, 1.0))
hist = go.Figure(go.Bar(x=((edges[:-1] + edges[1:]) / 2).tolist(), y=counts.tolist(), width=0.05,
                        marker_color=PALETTE[0], hovertemplate="%{x:.0%}: %{y:,}<extra></extra>"))
hist.add_vline(x=threshold / 100, line={"color": "#E4572E", "dash": "dash"},
               annotation_text=ctx.t("churn.threshold_line", t=threshold))
hist.update_layout(xaxis={"title": ctx.t("churn.risk_axis"), "tickformat": ".0%"},
                   yaxis={"title": ctx.t("clv.customers")})
b2.plotly_chart(_layout(hist, lang, ctx.t("churn.dist_title")), width="stretch")
high = bands.filter(pl.col("band") == "high").row(0, named=True)
st.markdown(ctx.t("churn.read.bands", n=fmt.number(high["customers"], lang), value=money.short(high["value_at_risk"]),
                  share=fmt.percent(high["customers"] / max(summary["customers"], 1), lang, 0)))
one_time = view.filter(pl.col("usual_gap_days").is_null()).height
st.caption(ctx.t("churn.one_time", n=fmt.number(one_time, lang)))

# -- does targeting work? (holdout) ------------------------------------------------------
st.subheader(ctx.t("churn.precision"))
cal_end = CV.default_calibration_end(first, as_of)
shares = tuple(sorted({0.05, 0.1, 0.2, 0.3, 0.5, top / 100}))
prec = (frame.churn_precision(path, version, mf, cal_end, as_of, shares, CV.Settings(unit=settings.unit))
        if cal_end > first + timedelta(days=28) else "")
if isinstance(prec, str) or prec.height == 0:
    st.info(ctx.t("churn.no_precision") + (f" ({prec})" if isinstance(prec, str) and prec else ""),
            icon=":material/info:")
else:
    pf = go.Figure()
    pf.add_scatter(x=prec["share"].to_list(), y=prec["precision"].to_list(), mode="lines+markers",
                   name=ctx.t("churn.precision_line"), line={"color": PALETTE[1], "width": 3},
                   error_y={"type": "data", "symmetric": False,
                            "array": (prec["high"] - prec["precision"]).to_list(),
                            "arrayminus": (prec["precision"] - prec["low"]).to_list()})
    pf.add_hline(y=float(prec["base_rate"][0]), line={"color": "#999", "dash": "dot"},
                 annotation_text=ctx.t("churn.base_line"))
    pf.update_layout(xaxis={"title": ctx.t("churn.share_axis"), "tickformat": ".0%"},
                     yaxis={"title": ctx.t("churn.lapsed_axis"), "tickformat": ".0%", "range": [0, 1.02]})
    st.plotly_chart(_layout(pf, lang, ctx.t("churn.precision_title", start=fmt.day(cal_end, lang),
                                            end=fmt.day(as_of, lang))), width="stretch")
    row = prec.filter((pl.col("share") - top / 100).abs() < 1e-9).row(0, named=True)
    st.markdown(ctx.t("churn.read.precision", top=top, n=fmt.number(row["targeted"], lang),
                      p=fmt.percent(row["precision"], lang, 0), low=fmt.percent(row["low"], lang, 0),
                      high=fmt.percent(row["high"], lang, 0), base=fmt.percent(row["base_rate"], lang, 0),
                      lift=fmt.number(row["lift"], lang, 1)))
    st.caption(ctx.t("churn.precision_note"))

# -- the list -------------------------------------------------------------------------------
st.subheader(ctx.t("churn.list"))
ranked = at_risk.sort("value_at_risk", descending=True)
if ranked.height == 0:
    st.info(ctx.t("churn.none"), icon=":material/check_circle:")
else:
    shown = pymap.columns(ranked.head(200), {
        "customer_id": R.mask_id, "last_channel": lambda c: label("channel", c, lang),
    }).select(
        pl.col("customer_id").alias(ctx.t("churn.col.customer")),
        pl.col("segment").replace_strict({k: v[f"label_{lang}"] for k, v in rfm.SEGMENTS.items()}, default=None,
                                         return_dtype=pl.Utf8).alias(ctx.t("churn.col.segment")),
        (pl.col("churn_risk") * 100).round(0).alias(ctx.t("churn.col.risk")),
        pl.col("expected_90d").round(2).alias(ctx.t("churn.col.expected")),
        pl.col("days_since_last").alias(ctx.t("churn.col.since")),
        pl.col("usual_gap_days").round(0).alias(ctx.t("churn.col.gap")),
        pl.col("orders").alias(ctx.t("churn.col.orders")),
        (pl.col("historical_margin") * money.convert(1.0)).round(0).alias(ctx.t("churn.col.hist", unit=money.symbol)),
        (pl.col("predicted_clv") * money.convert(1.0)).round(0).alias(ctx.t("churn.col.clv", unit=money.symbol)),
        (pl.col("value_at_risk") * money.convert(1.0)).round(0).alias(ctx.t("churn.col.var", unit=money.symbol)),
        pl.col("last_channel").alias(ctx.t("churn.col.channel")),
        pl.col("latest_nps").alias(ctx.t("churn.col.nps")),
        pl.col("expected_next_order").dt.strftime("%d/%m/%Y").alias(ctx.t("churn.col.next")),
        pl.col("segment").replace_strict({k: v[f"action_{lang}"] for k, v in rfm.SEGMENTS.items()}, default=None,
                                         return_dtype=pl.Utf8).alias(ctx.t("churn.col.action")),
    )
    st.caption(ctx.t("churn.list_note", n=fmt.number(ranked.height, lang), shown=fmt.number(shown.height, lang)))
    money_cols = [ctx.t(k, unit=money.symbol) for k in ("churn.col.hist", "churn.col.clv", "churn.col.var")]
    frame.dataframe(st, shown, hide_index=True, width="stretch", height=420,
                 column_config={c: st.column_config.NumberColumn(format="localized") for c in money_cols})

    # -- export for a win-back campaign ---------------------------------------------------
    st.markdown(f"**{ctx.t('churn.export')}**")
    e1, e2 = st.columns(2)
    hold = e1.number_input(ctx.t("churn.holdout"), min_value=0, max_value=50, step=5, key="k_hold",
                           help=ctx.t("churn.holdout_help"))
    admin = ctx.who is not None and ctx.who.can("export_unmasked")
    if not admin:
        st.session_state["k_contacts"] = False
    contacts = e2.toggle(ctx.t("churn.contacts"), key="k_contacts", disabled=not admin,
                         help=ctx.t("churn.contacts_help" if admin else "churn.contacts_admin_only"))
    source = ranked
    if contacts:
        full = frame.churn_list(path, version, mf, as_of, settings, unmasked=True)
        source = full.filter(pl.col("customer_key").is_in(ranked["customer_key"].implode())).sort(
            "value_at_risk", descending=True)
    seed = as_of.toordinal()
    flag = churn.holdout_flag(source["customer_id"], hold / 100, seed)
    group_label = {True: ctx.t("churn.control"), False: ctx.t("churn.contact")}

    def export() -> pl.DataFrame:  # built when a download is clicked, not on every rerun
        return churn.export_frame(source, include_contact=contacts, lang=lang).with_columns(
            flag.replace_strict(group_label, return_dtype=pl.Utf8).alias(ctx.t("churn.col.group")))

    st.caption(ctx.t("churn.export_note", n=fmt.number(source.height, lang), held=fmt.number(int(flag.sum()), lang),
                     seed=seed, masked=ctx.t("churn.unmasked" if contacts else "churn.masked")))
    x1, x2 = st.columns(2)
    stem = f"churn_risk_{as_of.isoformat()}_{threshold}"
    x1.download_button(ctx.t("churn.csv"), lambda: to_excel_csv(frame.export(ctx, "churn_list", export, unmasked=contacts)), file_name=f"{stem}.csv", mime="text/csv",
                       icon=":material/download:", key="k_csv")
    x2.download_button(ctx.t("churn.xlsx"), lambda: churn.to_xlsx(frame.export(ctx, "churn_list", export, unmasked=contacts)), file_name=f"{stem}.xlsx",
                       mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                       icon=":material/table_view:", key="k_xlsx")
    if source.height > 20_000:
        st.caption(ctx.t("churn.xlsx_slow"))
