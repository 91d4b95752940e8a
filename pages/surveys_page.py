"""Surveys: NPS, CSAT and CES with their sample sizes and intervals, what customers
say against what they do, key drivers and verbatims (metrics.surveys). Controls live
in the URL (``v_...``)."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from data.importer import to_excel_csv
from metrics import clv_view as CV
from metrics import personas as P
from metrics import pymap, rfm
from metrics import surveys as S
from pages.ui import fmt, frame
from pages.ui.charts import _layout
from pages.ui.clv_charts import PALETTE
from pages.ui.i18n import label

ctx = frame.context()
st.title(ctx.t("sv.title"))
if ctx.filters is None or ctx.as_of is None:
    frame.empty_state(ctx)
    st.stop()
st.caption(ctx.t("sv.intro"))
path, version = frame.cache_key()
f, as_of, lang, money = ctx.filters, ctx.as_of, ctx.lang, ctx.money
en = lang == "en"
st.caption(frame.filter_caption(ctx))
CAT_COLOURS = {"promoter": "#2E9E5B", "passive": "#C9CED6", "detractor": "#D64541"}
MET = {"nps": ctx.t("sv.nps"), "csat": ctx.t("sv.csat"), "ces": ctx.t("sv.ces")}


def score_text(metric: str, v: float | None, decimals: int = 0) -> str:
    if v is None:
        return "—"
    if metric == "nps":
        return fmt.number(v, lang, decimals)
    if metric == "csat":
        return fmt.percent(v, lang, decimals)
    return fmt.number(v, lang, 2)


def interval_text(metric: str, lo: float | None, hi: float | None) -> str:
    return "—" if lo is None else f"{score_text(metric, lo)} – {score_text(metric, hi)}"


summary, monthly, dist = frame.survey_overview(path, version, f, ctx.comparison)
rows = {r["metric"]: r for r in summary.iter_rows(named=True)}
if all(rows[m]["n"] == 0 for m in S.METRICS):
    st.info(ctx.t("sv.none"), icon=":material/info:")
    st.stop()

# -- the scores ----------------------------------------------------------------------------
cols = st.columns(3)
for c, m in zip(cols, S.METRICS):
    r = rows[m]
    delta = None
    if r["change"] is not None:
        delta = score_text(m, r["change"], 1) if m != "csat" else fmt.percent(r["change"], lang, 1)
        delta = delta.replace("\u2212", "-")  # Streamlit reads the direction from an ASCII sign
        if r["change"] > 0 and not delta.startswith("+"):
            delta = "+" + delta
    c.metric(MET[m], score_text(m, r["value"], 0 if m == "nps" else 1), delta=delta,
             delta_color="inverse" if m == "ces" else "normal",
             help=ctx.t(f"sv.{m}_help", n=fmt.number(r["n"], lang), ci=interval_text(m, r["low"], r["high"])))
    c.caption(ctx.t("sv.n_ci", n=fmt.number(r["n"], lang), ci=interval_text(m, r["low"], r["high"])))
nps = rows["nps"]
if nps["n"]:
    line = ctx.t("sv.read.nps", v=score_text("nps", nps["value"]), lo=score_text("nps", nps["low"]),
                 hi=score_text("nps", nps["high"]), n=fmt.number(nps["n"], lang))
    if nps["change"] is not None and nps["change_low"] is not None:
        moved = nps["change_low"] > 0 or nps["change_high"] < 0
        line += " " + ctx.t("sv.read.change_real" if moved else "sv.read.change_noise",
                            d=fmt.number(nps["change"], lang, 1))
    st.markdown(line)

t1, t2 = st.columns([3, 2])
st.session_state.setdefault("v_metric", frame.page_param("v_metric", S.METRICS, "nps"))
metric = t1.segmented_control(ctx.t("sv.metric"), list(S.METRICS), format_func=MET.get, key="v_metric",
                              required=True) or "nps"
frame.keep_page_params({"v_metric": metric}, {"v_metric": "nps"})
mm = monthly.filter((pl.col("metric") == metric) & (pl.col("n") > 0))
if mm.height:
    tf = go.Figure()
    tf.add_bar(x=mm["month"].to_list(), y=mm["n"].to_list(), name=ctx.t("sv.answers"), yaxis="y2",
               marker_color="#E3E8EF", hovertemplate="%{x|%m/%Y}: n = %{y:,}<extra></extra>")
    tf.add_scatter(x=mm["month"].to_list() + mm["month"].to_list()[::-1],
                   y=mm["high"].to_list() + mm["low"].to_list()[::-1], fill="toself", line={"width": 0},
                   fillcolor="rgba(31,119,180,0.15)", hoverinfo="skip", name=ctx.t("sv.band"))
    tf.add_scatter(x=mm["month"].to_list(), y=mm["value"].to_list(), mode="lines+markers", name=MET[metric],
                   line={"color": PALETTE[0], "width": 3})
    tf.update_layout(yaxis={"title": MET[metric], "tickformat": ".0%" if metric == "csat" else None},
                     yaxis2={"overlaying": "y", "side": "right", "showgrid": False, "title": ctx.t("sv.answers"),
                             "rangemode": "tozero"})
    t1.plotly_chart(_layout(tf, lang, ctx.t("sv.trend_title", m=MET[metric])), width="stretch")
if dist.height and int(dist["n"].sum()):
    df_ = go.Figure(go.Bar(x=dist["score"].to_list(), y=dist["share"].to_list(),
                           marker_color=[CAT_COLOURS[c] for c in dist["category"]],
                           customdata=dist["n"].to_list(),
                           hovertemplate="%{x}: %{y:.1%} (n = %{customdata:,})<extra></extra>"))
    df_.update_layout(xaxis={"dtick": 1, "title": ctx.t("sv.score_axis")}, yaxis={"tickformat": ".0%"})
    t2.plotly_chart(_layout(df_, lang, ctx.t("sv.dist_title")), width="stretch")

# -- breakdowns ------------------------------------------------------------------------------
st.subheader(ctx.t("sv.breakdown"))
BY = ("touchpoint", "channel", "survey", "segment", "persona")
st.session_state.setdefault("v_by", frame.page_param("v_by", BY, "touchpoint"))
by = st.segmented_control(ctx.t("sv.by"), list(BY), format_func=lambda b: ctx.t(f"sv.by.{b}"), key="v_by",
                          required=True) or "touchpoint"
frame.keep_page_params({"v_by": by}, {"v_by": "touchpoint"})
with st.spinner(ctx.t("sv.computing")):
    br = frame.survey_breakdown(path, version, f, by, as_of)
persona_names: dict[str, str] = {}
if by == "persona":
    got = frame.personas(path, version, CV.model_filters(f), as_of)
    if not isinstance(got, str):
        persona_names = {str(j): P.persona_name(got[1].profiles[j], got[1].columns, label)[0 if en else 1]
                         for j in range(got[1].k)}


def group_label(g: str) -> str:
    if by == "segment":
        s = rfm.SEGMENTS.get(g)
        return (s["label_en"] if en else s["label_vi"]) if s else g
    if by == "persona":
        return persona_names.get(g, g)
    if by == "channel":
        return label("channel", g, lang)
    return label(f"touchpoint" if by == "touchpoint" else "survey", g, lang)


wide = br.table.pivot(on="metric", index="group", values=["n", "value", "low", "high"]) if br.table.height else None
if wide is not None and wide.height:
    wide = wide.sort("n_nps", descending=True)
    show = pymap.columns(wide, {"group": group_label})
    for m in S.METRICS:
        show = pymap.rows(
            show, [f"value_{m}", f"low_{m}", f"high_{m}", f"n_{m}"],
            lambda s, m=m: "—" if not s[f"n_{m}"] else
            f"{score_text(m, s[f'value_{m}'], 0 if m == 'nps' else 1)} "
            f"({interval_text(m, s[f'low_{m}'], s[f'high_{m}'])}; n={fmt.number(s[f'n_{m}'], lang)})",
            f"_{m}")
    show = show.select(pl.col("group").alias(ctx.t("sv.col.group")),
                       *[pl.col(f"_{m}").alias(MET[m]) for m in S.METRICS])
    b1, b2 = st.columns([2, 3])
    nn = wide.filter(pl.col("n_nps") > 0)
    if nn.height:
        bf = go.Figure(go.Bar(
            y=[group_label(g) for g in nn["group"]], x=nn["value_nps"].to_list(), orientation="h",
            marker_color=[CAT_COLOURS["promoter"] if v >= 30 else CAT_COLOURS["detractor"] if v < 0 else PALETTE[0]
                          for v in nn["value_nps"]],
            error_x={"type": "data", "symmetric": False,
                     "array": (nn["high_nps"] - nn["value_nps"]).to_list(),
                     "arrayminus": (nn["value_nps"] - nn["low_nps"]).to_list()},
            customdata=nn["n_nps"].to_list(), hovertemplate="%{y}: %{x:.0f} (n = %{customdata:,})<extra></extra>"))
        bf.update_layout(yaxis={"autorange": "reversed"}, xaxis={"title": ctx.t("sv.nps")},
                         height=max(260, 36 * nn.height + 80))
        b1.plotly_chart(_layout(bf, lang, ctx.t("sv.by_title", by=ctx.t(f"sv.by.{by}").lower())), width="stretch")
    frame.dataframe(b2, show, hide_index=True, width="stretch")
    if by in ("segment", "persona") and br.anonymous:
        st.caption(ctx.t("sv.anon_left_out", n=fmt.number(br.anonymous, lang)))
else:
    st.info(ctx.t("sv.by_none"), icon=":material/info:")

# -- say vs do ---------------------------------------------------------------------------------
st.subheader(ctx.t("sv.say_do"))
HORIZONS = (90, 180, 365)
st.session_state.setdefault("v_h", frame.page_param("v_h", HORIZONS, 180))
horizon = st.segmented_control(ctx.t("sv.horizon"), list(HORIZONS), key="v_h", required=True,
                               format_func=lambda h: ctx.t("sv.days", n=h)) or 180
frame.keep_page_params({"v_h": int(horizon)}, {"v_h": 180})
sd = frame.survey_say_do(path, version, f, as_of, int(horizon))
window = S.observed_period(f, as_of=as_of, horizon_days=int(horizon))
tab = sd.table.filter(pl.col("observed") > 0)
if tab.height:
    s1, s2 = st.columns(2)
    cats = tab["category"].to_list()
    names = [ctx.t(f"sv.cat.{c}") for c in cats]
    for col, (val, lo, hi, key, fmt_) in zip((s1, s2), (
            ("retention", "retention_low", "retention_high", "sv.retention", ".0%"),
            ("revenue_after", "revenue_low", "revenue_high", "sv.revenue_after", None))):
        conv = (lambda v: v) if key == "sv.retention" else money.convert
        fig = go.Figure(go.Bar(
            x=names, y=[conv(v) for v in tab[val]], marker_color=[CAT_COLOURS[c] for c in cats],
            error_y={"type": "data", "symmetric": False, "array": [conv(h) - conv(v) for h, v in zip(tab[hi], tab[val])],
                     "arrayminus": [conv(v) - conv(lo_) for v, lo_ in zip(tab[val], tab[lo])]},
            customdata=tab["observed"].to_list(), hovertemplate="%{x}: %{y:,.3~s} (n = %{customdata:,})<extra></extra>"))
        fig.update_layout(yaxis={"tickformat": fmt_, "rangemode": "tozero",
                                 "title": ctx.t(key, n=int(horizon)) + ("" if fmt_ else f" ({money.symbol})")},
                          xaxis={"type": "category"})
        col.plotly_chart(_layout(fig, lang, ctx.t(key, n=int(horizon))), width="stretch")
    by_cat = {r["category"]: r for r in tab.iter_rows(named=True)}
    if "promoter" in by_cat and "detractor" in by_cat:
        p, d = by_cat["promoter"], by_cat["detractor"]
        st.markdown(ctx.t("sv.read.say_do", n=int(horizon), p=fmt.percent(p["retention"], lang, 0),
                          d=fmt.percent(d["retention"], lang, 0), pr=money.short(p["revenue_after"]),
                          dr=money.short(d["revenue_after"]),
                          pc=fmt.percent(p["churn_rate"], lang, 0), dc=fmt.percent(d["churn_rate"], lang, 0)))
    st.caption(ctx.t("sv.say_do_note", a=fmt.day(window[0], lang), b=fmt.day(window[1], lang), n=int(horizon),
                     anon=fmt.number(sd.anonymous, lang), days=f.inactivity_days))
else:
    st.info(ctx.t("sv.say_do_none", a=fmt.day(window[0], lang), b=fmt.day(window[1], lang)), icon=":material/info:")
dec = frame.survey_deciles(path, version, f, as_of)
if dec is not None and dec.table.height:
    dn = dec.table.filter((pl.col("metric") == "nps") & (pl.col("n") > 0)).sort("decile")
    if dn.height:
        cf = go.Figure()
        cf.add_scatter(x=dn["decile"].to_list() + dn["decile"].to_list()[::-1],
                       y=dn["high"].to_list() + dn["low"].to_list()[::-1], fill="toself", line={"width": 0},
                       fillcolor="rgba(31,119,180,0.15)", hoverinfo="skip", showlegend=False)
        cf.add_scatter(x=dn["decile"].to_list(), y=dn["value"].to_list(), mode="lines+markers",
                       line={"color": PALETTE[0], "width": 3}, customdata=dn["n"].to_list(), showlegend=False,
                       hovertemplate="%{x}: NPS %{y:.0f} (n = %{customdata:,})<extra></extra>")
        cf.update_layout(xaxis={"dtick": 1, "title": ctx.t("sv.decile_axis")}, yaxis={"title": ctx.t("sv.nps")})
        st.plotly_chart(_layout(cf, lang, ctx.t("sv.decile_title")), width="stretch")

# -- detractors to call -------------------------------------------------------------------------
st.subheader(ctx.t("sv.detractors"))
det = frame.survey_detractors(path, version, f, as_of)
if det.table.height:
    st.markdown(ctx.t("sv.read.detractors", n=fmt.number(det.total or det.table.height, lang),
                      basis=ctx.t(f"sv.basis.{det.table['basis'][0]}")))
    frame.dataframe(st, pymap.columns(det.table.head(50).with_columns(pl.col("responded_at").dt.date()), {
        "value": money.full, "responded_at": lambda d: fmt.day(d, lang),
        "touchpoint": lambda v: label("touchpoint", v, lang), "last_order": lambda d: fmt.day(d, lang),
    }).select(
        pl.col("customer").alias(ctx.t("sv.col.customer")),
        pl.col("value").alias(ctx.t(f"sv.col.{det.table['basis'][0]}")),
        pl.col("last_score").alias(ctx.t("sv.col.score")),
        pl.col("responded_at").alias(ctx.t("sv.col.answered")),
        pl.col("touchpoint").alias(ctx.t("sv.by.touchpoint")),
        pl.col("comment").alias(ctx.t("sv.col.comment")),
        pl.col("last_order").alias(ctx.t("sv.col.last_order")),
    ), hide_index=True, width="stretch")
    st.download_button(ctx.t("sv.detractors_csv"), lambda: to_excel_csv(frame.export(ctx, "detractors", lambda: S.detractors_export(det.table))),
                       file_name=f"detractors_{f.start.isoformat()}_{f.end.isoformat()}.csv", mime="text/csv",
                       icon=":material/download:", on_click="ignore")
    st.caption(ctx.t("sv.detractors_note", anon=fmt.number(det.anonymous, lang)))
else:
    st.info(ctx.t("sv.detractors_none"), icon=":material/sentiment_satisfied:")

# -- key drivers ------------------------------------------------------------------------------------
st.subheader(ctx.t("sv.drivers"))
kd = frame.survey_drivers(path, version, f)
placed = kd.table.filter(pl.col("rho").is_not_null() & pl.col("performance").is_not_null())
if placed.height:
    qf = go.Figure()
    qf.add_scatter(
        x=placed["performance"].to_list(), y=placed["rho"].to_list(), mode="markers+text",
        text=[label("touchpoint", t, lang) for t in placed["touchpoint"]], textposition="top center",
        marker={"size": [max(10, min(40, n ** 0.5)) for n in placed["n"]], "color": PALETTE[0], "opacity": 0.8},
        error_y={"type": "data", "symmetric": False, "array": (placed["high"] - placed["rho"]).to_list(),
                 "arrayminus": (placed["rho"] - placed["low"]).to_list()},
        customdata=placed["n"].to_list(),
        hovertemplate="%{text}<br>ρ = %{y:.2f} · %{x:.0%} (n = %{customdata:,})<extra></extra>")
    mx, my = float(placed["performance"].median()), float(placed["rho"].median())
    qf.add_vline(x=mx, line={"dash": "dot", "color": "#999"})
    qf.add_hline(y=my, line={"dash": "dot", "color": "#999"})
    qf.update_layout(xaxis={"tickformat": ".0%", "title": ctx.t("sv.performance")},
                     yaxis={"title": ctx.t("sv.importance")}, showlegend=False, height=480)
    st.plotly_chart(_layout(qf, lang, ctx.t("sv.drivers_title")), width="stretch")
    focus = placed.filter(pl.col("quadrant") == "concentrate")
    st.markdown(ctx.t("sv.read.drivers_focus", tp=", ".join(label("touchpoint", t, lang) for t in focus["touchpoint"]))
                if focus.height else ctx.t("sv.read.drivers_none"))
    st.caption(ctx.t("sv.drivers_note", anon=fmt.number(kd.anonymous, lang)))
else:
    st.info(ctx.t("sv.drivers_empty"), icon=":material/info:")

# -- verbatims ------------------------------------------------------------------------------------------
st.subheader(ctx.t("sv.verbatims"))
GROUPINGS = ("category", "touchpoint", "channel")
w1, w2 = st.columns(2)
st.session_state.setdefault("v_words", frame.page_param("v_words", GROUPINGS, "category"))
words_by = w1.segmented_control(ctx.t("sv.words_by"), list(GROUPINGS), key="v_words", required=True,
                                format_func=lambda g: ctx.t(f"sv.words.{g}")) or "category"
LANGS = ("all", "vi", "en")
st.session_state.setdefault("v_lang", frame.page_param("v_lang", LANGS, "all"))
words_lang = w2.segmented_control(ctx.t("sv.words_lang"), list(LANGS), key="v_lang", required=True,
                                  format_func=lambda g: ctx.t(f"sv.lang.{g}")) or "all"
frame.keep_page_params({"v_words": words_by, "v_lang": words_lang}, {"v_words": "category", "v_lang": "all"})
terms = frame.survey_terms(path, version, f, words_by, words_lang).table
if terms.height:
    groups = [g for g in (S.CATEGORIES if words_by == "category" else sorted(set(terms["group"])))
              if g in set(terms["group"])]
    for start in range(0, len(groups), 3):
        cs = st.columns(3)
        for c, g in zip(cs, groups[start:start + 3]):
            part = terms.filter(pl.col("group") == g).sort("z", descending=True).head(10)
            name = ctx.t(f"sv.cat.{g}") if words_by == "category" else label(words_by, g, lang)
            c.markdown(f"**{name}**")
            frame.dataframe(c, part.select(pl.col("term").alias(ctx.t("sv.col.term")),
                                    pl.col("count").alias(ctx.t("sv.col.count")),
                                    pl.col("z").round(1).alias("z")), hide_index=True, width="stretch")
    st.caption(ctx.t("sv.words_note"))
else:
    st.info(ctx.t("sv.words_none"), icon=":material/info:")
st.session_state.setdefault("v_q", frame.page_param("v_q", (), ""))
q1, q2 = st.columns([3, 1])
query = q1.text_input(ctx.t("sv.search"), key="v_q", placeholder=ctx.t("sv.search_placeholder"))
fold = q2.toggle(ctx.t("sv.fold"), value=True)
frame.keep_page_params({"v_q": query}, {"v_q": ""})
found = frame.survey_search(path, version, f, query.strip(), fold)
st.caption(ctx.t("sv.found", n=fmt.number(found.matches, lang)))
if found.table.height:
    frame.dataframe(st, pymap.columns(found.table.with_columns(pl.col("responded_at").dt.date()), {
        "responded_at": lambda d: fmt.day(d, lang), "touchpoint": lambda v: label("touchpoint", v, lang),
    }).select(
        pl.col("responded_at").alias(ctx.t("sv.col.answered")),
        pl.col("customer").fill_null(ctx.t("sv.anonymous")).alias(ctx.t("sv.col.customer")),
        pl.col("nps").alias("NPS"),
        pl.col("touchpoint").alias(ctx.t("sv.by.touchpoint")),
        pl.col("comment").alias(ctx.t("sv.col.comment")),
    ), hide_index=True, width="stretch")
