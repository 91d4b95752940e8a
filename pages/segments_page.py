"""Segments and personas: who the customers are. RFM scores on the recency x
frequency-monetary grid, the named segments with their size, value, NPS and
suggested action (rules editable on the page), movement between two dates and the
mix over time, and k-means personas (metrics.rfm, metrics.personas). Controls live
in the URL (``s_...``)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import plotly.graph_objects as go
import polars as pl
import streamlit as st

from data.importer import to_excel_csv
from metrics import clv_view as CV
from metrics import personas as P
from metrics import pymap, rfm
from pages.ui import fmt, frame
from pages.ui.charts import _layout
from pages.ui.clv_charts import PALETTE
from pages.ui.i18n import label

ctx = frame.context()
st.title(ctx.t("seg.title"))
if ctx.filters is None or ctx.as_of is None:
    frame.empty_state(ctx)
    st.stop()
st.caption(ctx.t("seg.intro"))
path, version = frame.cache_key()
f, as_of, lang, money = ctx.filters, ctx.as_of, ctx.lang, ctx.money
mf = CV.model_filters(f)  # RFM and personas read all history to the date: the period does not apply
st.caption(ctx.t("seg.as_of", date=fmt.day(as_of, lang)))
en = lang == "en"


def seg_label(code: str | None) -> str:
    if code == rfm.NOT_YET:
        return ctx.t("seg.not_yet")
    s = rfm.SEGMENTS.get(code or "")
    return (s["label_en"] if en else s["label_vi"]) if s else str(code)


# -- the segment rules (editable; kept in the URL as s_rules when changed) ---------------
def encode(rules: list[dict]) -> str:
    def rng(v):  # the whole scale 1-5 is the same as no range
        return "*" if v is None or tuple(v) == (1, 5) else f"{v[0]}-{v[1]}"
    return ";".join(f"{r['name']}:{rng(r.get('r'))}:{rng(r.get('fm'))}" for r in rules)


def decode(text: str) -> list[dict] | None:
    out = []
    try:
        for part in text.split(";"):
            name, r, fm = part.split(":")
            rule: dict = {"name": name}
            for key, v in (("r", r), ("fm", fm)):
                if v != "*":
                    a, b = v.split("-")
                    rule[key] = (int(a), int(b))
            out.append(rule)
    except ValueError:
        return None
    return out if out and not rfm.validate_rules(out) else None


DEFAULT_CODE = encode(rfm.DEFAULT_SEGMENT_RULES)
if "s_rules" not in st.session_state:
    st.session_state["s_rules"] = decode(st.query_params.get("s_rules", "")) or [dict(r) for r in
                                                                                  rfm.DEFAULT_SEGMENT_RULES]
rules: list[dict] = st.session_state["s_rules"]
with st.expander(ctx.t("seg.rules"), icon=":material/tune:"):
    st.caption(ctx.t("seg.rules_help"))
    table = pl.DataFrame({
        "segment": [r["name"] for r in rules],
        "r_min": [r.get("r", (1, 5))[0] for r in rules], "r_max": [r.get("r", (1, 5))[1] for r in rules],
        "fm_min": [r.get("fm", (1, 5))[0] for r in rules], "fm_max": [r.get("fm", (1, 5))[1] for r in rules],
    })
    score = st.column_config.NumberColumn(min_value=1, max_value=5, step=1, required=True)
    # pandas made through Arrow, not Polars' to_pandas (see frame.dataframe)
    edited = st.data_editor(
        table.to_arrow().to_pandas(), key="s_rules_editor", hide_index=True, num_rows="dynamic", width="stretch",
        column_config={"segment": st.column_config.SelectboxColumn(ctx.t("seg.col.segment"), options=list(rfm.SEGMENTS),
                                                                    required=True),
                       "r_min": score, "r_max": score, "fm_min": score, "fm_max": score})
    proposed = [{"name": row["segment"], "r": (int(row["r_min"]), int(row["r_max"])),
                 "fm": (int(row["fm_min"]), int(row["fm_max"]))}
                for row in edited.to_dict("records") if not any(pd.isna(v) for v in row.values())]
    problems = rfm.validate_rules(proposed) if proposed else [ctx.t("seg.rules_empty")]
    if problems:
        st.error(ctx.t("seg.rules_bad") + "\n\n" + "\n".join(f"- {p}" for p in problems), icon=":material/error:")
    elif encode(proposed) != encode(rules):
        st.session_state["s_rules"] = rules = proposed
    if st.button(ctx.t("seg.rules_reset")):
        st.session_state["s_rules"] = rules = [dict(r) for r in rfm.DEFAULT_SEGMENT_RULES]
        st.session_state.pop("s_rules_editor", None)
        st.rerun()
code = encode(rules)
if code == DEFAULT_CODE:
    st.query_params.pop("s_rules", None)
else:
    st.query_params["s_rules"] = code
key_rules = tuple((r["name"], r.get("r"), r.get("fm")) for r in rules)

# -- segments -----------------------------------------------------------------------------
with st.spinner(ctx.t("seg.computing")):
    scored = frame.rfm_scored(path, version, mf, as_of, key_rules)
if scored.height == 0:
    st.info(ctx.t("seg.none"), icon=":material/info:")
    st.stop()
summary = rfm.segment_summary(scored)
extra = scored.select("customer_key", "segment", "margin")
clv = frame.clv_scored(path, version, mf, as_of, CV.Settings())
if clv.ok:
    extra = extra.join(clv.customers.select("customer_key", "clv"), on="customer_key", how="left")
nps = frame.nps_answers(path, version, as_of)
by_seg = extra.group_by("segment").agg(pl.col("margin").mean().alias("hist_clv"),
                                       *([pl.col("clv").mean().alias("pred_clv")] if clv.ok else []))
nps_seg = nps.join(scored.select("customer_key", "segment"), on="customer_key").group_by("segment").agg(
    pl.len().alias("nps_n"), (((pl.col("nps") >= 9).mean() - (pl.col("nps") <= 6).mean()) * 100).alias("nps"))
summary = summary.join(by_seg, on="segment", how="left").join(nps_seg, on="segment", how="left")

st.subheader(ctx.t("seg.segments"))
top = summary.filter(pl.col("customers") > 0).sort("revenue", descending=True)
if top.height:
    lead = top.row(0, named=True)
    st.markdown(ctx.t("seg.read.top", seg=seg_label(lead["segment"]), share=fmt.percent(lead["share"], lang, 0),
                      rev=fmt.percent(lead["revenue_share"], lang, 0),
                      n=fmt.number(scored.height, lang)))
pretty = pymap.rows(
    summary, ["nps", "nps_n"],
    lambda s: "—" if s["nps"] is None else f"{fmt.number(s['nps'], lang, 0)} (n={fmt.number(s['nps_n'], lang)})",
    "_nps").with_columns(pl.col("segment").alias("_action"))
pretty = pymap.columns(pretty, {
    "segment": seg_label, "share": lambda v: fmt.percent(v, lang, 1), "revenue_share": lambda v: fmt.percent(v, lang, 1),
    "hist_clv": money.full, **({"pred_clv": money.full} if clv.ok else {}),
    "_action": lambda c: rfm.SEGMENTS[c]["action_en" if en else "action_vi"]})
cols = [
    pl.col("segment").alias(ctx.t("seg.col.segment")),
    pl.col("customers").alias(ctx.t("seg.col.customers")),
    pl.col("share").alias(ctx.t("seg.col.share")),
    pl.col("revenue_share").alias(ctx.t("seg.col.revenue_share")),
    pl.col("hist_clv").alias(ctx.t("seg.col.hist_clv")),
]
if clv.ok:
    cols.append(pl.col("pred_clv").alias(ctx.t("seg.col.pred_clv")))
cols += [
    pl.col("_nps").alias(ctx.t("seg.col.nps")),
    pl.col("_action").alias(ctx.t("seg.col.action")),
]
frame.dataframe(st, pretty.select(cols), hide_index=True, width="stretch")

grid = rfm.grid_summary(scored)
z = [[0] * 5 for _ in range(5)]
text = [[""] * 5 for _ in range(5)]
for row in grid.iter_rows(named=True):
    i, j = row["fm"] - 1, row["r"] - 1
    z[i][j] = row["customers"]
    text[i][j] = f"{seg_label(row['segment'])}<br>{fmt.number(row['customers'], lang)}<br>{money.short(row['revenue'])}"
gf = go.Figure(go.Heatmap(z=z, x=[f"R{r}" for r in rfm.SCORES], y=[f"FM{m}" for m in rfm.SCORES], text=text,
                          texttemplate="%{text}", colorscale="Blues", showscale=False,
                          hovertemplate="%{x} · %{y}<br>%{text}<extra></extra>"))
gf.update_layout(xaxis={"title": ctx.t("seg.recency_axis"), "type": "category"},
                 yaxis={"title": ctx.t("seg.fm_axis"), "type": "category"}, height=520)
st.plotly_chart(_layout(gf, lang, ctx.t("seg.grid_title")), width="stretch")

# -- movement and mix -------------------------------------------------------------------------
st.subheader(ctx.t("seg.movement"))
st.session_state.setdefault("s_from", frame.page_param("s_from", (), ""))
default_from = max(as_of - timedelta(days=90), ctx.first or as_of)
try:
    d1_default = date.fromisoformat(st.session_state["s_from"]) if st.session_state["s_from"] else default_from
except ValueError:
    d1_default = default_from
d1_default = min(max(d1_default, ctx.first or d1_default), as_of)
m1, m2 = st.columns(2)
d1 = m1.date_input(ctx.t("seg.from"), value=d1_default, min_value=ctx.first, max_value=as_of, format="DD/MM/YYYY")
m2.caption(ctx.t('seg.to', date=fmt.day(as_of, lang)))
frame.keep_page_params({"s_from": "" if d1 == default_from else d1.isoformat()}, {"s_from": ""})
mv = frame.segment_movement(path, version, mf, d1, as_of, key_rules)
if mv.height:
    nodes_a = [s for s in (rfm.NOT_YET, *rfm.SEGMENTS) if s in set(mv["from_segment"])]
    nodes_b = [s for s in rfm.SEGMENTS if s in set(mv["to_segment"])]
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(rfm.SEGMENTS)} | {rfm.NOT_YET: "#B0B7C3"}
    ia = {s: i for i, s in enumerate(nodes_a)}
    ib = {s: len(nodes_a) + i for i, s in enumerate(nodes_b)}
    sk = go.Figure(go.Sankey(
        node={"label": [seg_label(s) for s in nodes_a] + [seg_label(s) for s in nodes_b], "pad": 10,
              "color": [colour[s] for s in nodes_a] + [colour[s] for s in nodes_b]},
        link={"source": [ia[s] for s in mv["from_segment"]], "target": [ib[s] for s in mv["to_segment"]],
              "value": mv["customers"].to_list()}))
    sk.update_layout(height=620)
    st.plotly_chart(_layout(sk, lang, ctx.t("seg.movement_title", a=fmt.day(d1, lang), b=fmt.day(as_of, lang))),
                    width="stretch")
    stay = int(mv.filter(pl.col("from_segment") == pl.col("to_segment"))["customers"].sum())
    new = int(mv.filter(pl.col("from_segment") == rfm.NOT_YET)["customers"].sum())
    total = int(mv["customers"].sum())
    st.markdown(ctx.t("seg.read.movement", stay=fmt.percent(stay / total, lang, 0),
                      moved=fmt.number(total - stay - new, lang), new=fmt.number(new, lang)))
dates = tuple(sorted({min(max(as_of - timedelta(days=61 * i), ctx.first or as_of), as_of) for i in range(7)}))
mix = frame.segment_mix(path, version, mf, dates, key_rules)
if mix.height:
    xf = go.Figure()
    for i, s in enumerate(rfm.SEGMENTS):
        part = mix.filter(pl.col("segment") == s)
        if part.height:
            xf.add_bar(x=part["date"].to_list(), y=part["share"].to_list(), name=seg_label(s),
                       marker_color=PALETTE[i % len(PALETTE)], hovertemplate="%{x}: %{y:.1%}<extra>" + seg_label(s)
                       + "</extra>")
    xf.update_layout(barmode="stack", yaxis={"tickformat": ".0%", "title": ctx.t("seg.col.share")})
    st.plotly_chart(_layout(xf, lang, ctx.t("seg.mix_title")), width="stretch")

# -- personas ------------------------------------------------------------------------------------
st.subheader(ctx.t("seg.personas"))
with st.spinner(ctx.t("seg.personas_computing")):
    got = frame.personas(path, version, mf, as_of)
persona_table = None
if isinstance(got, str):
    st.info(ctx.t("seg.personas_none", why=got), icon=":material/info:")
else:
    feats, fitted = got
    persona_table = P.describe(feats, fitted, segments=scored, nps=nps,
                               predicted=clv.customers.select("customer_key", "clv") if clv.ok else None,
                               labels=label)
    st.markdown(ctx.t("seg.read.personas", k=fitted.k, sil=fmt.number(fitted.silhouettes[fitted.k], lang, 2),
                      n=fmt.number(fitted.fitted_on, lang)))
    per_row = 3
    rows_ = list(persona_table.iter_rows(named=True))
    for start in range(0, len(rows_), per_row):
        cols_ = st.columns(per_row)
        for c, p in zip(cols_, rows_[start:start + per_row]):
            with c.container(border=True):
                st.markdown(f"**{p['name_en'] if en else p['name_vi']}**")
                st.caption(ctx.t("seg.card.size", n=fmt.number(p["customers"], lang),
                                 share=fmt.percent(p["share"], lang, 0),
                                 rev=fmt.percent(p["revenue_share"], lang, 0)))
                st.markdown(ctx.t("seg.card.value", hist=money.short(p["historical_clv"]),
                                  pred="—" if p["predicted_clv"] is None else money.short(p["predicted_clv"]),
                                  nps="—" if p["nps"] is None else fmt.number(p["nps"] * 100, lang, 0),
                                  n=fmt.number(p["nps_n"], lang)))
                st.markdown(ctx.t("seg.card.likes", channel=label("channel", p["channel"] or "", lang),
                                  category=p["category"] or "—", segment=seg_label(p["segment"])))
                if p["action_en"]:
                    st.caption("→ " + (p["action_en"] if en else p["action_vi"]))
    v1, v2 = st.columns([1, 2])
    sil = fitted.silhouettes
    sf = go.Figure(go.Bar(x=list(sil), y=list(sil.values()),
                          marker_color=[PALETTE[0] if k == fitted.k else "#B8C7D9" for k in sil],
                          hovertemplate="k = %{x}: %{y:.3f}<extra></extra>"))
    sf.update_layout(xaxis={"title": ctx.t("seg.k"), "dtick": 1}, yaxis={"title": ctx.t("seg.silhouette")})
    v1.plotly_chart(_layout(sf, lang, ctx.t("seg.silhouette_title")), width="stretch")
    proj = P.projection(feats, fitted)
    names = {p["persona"]: (p["name_en"] if en else p["name_vi"]) for p in rows_}
    pf = go.Figure()
    for j in range(fitted.k):
        part = proj.filter(pl.col("persona") == j)
        pf.add_scattergl(x=part["pc1"].to_list(), y=part["pc2"].to_list(), mode="markers", name=names[j],
                         marker={"size": 4, "opacity": 0.6, "color": PALETTE[j % len(PALETTE)]})
    pf.update_layout(xaxis={"title": "PC1"}, yaxis={"title": "PC2"})
    v2.plotly_chart(_layout(pf, lang, ctx.t("seg.projection_title")), width="stretch")

# -- member lists ------------------------------------------------------------------------------
st.subheader(ctx.t("seg.export"))
choices = [("segment", s) for s in summary.filter(pl.col("customers") > 0)["segment"]]
if persona_table is not None:
    choices += [("persona", int(p)) for p in persona_table["persona"]]


def choice_label(c: tuple) -> str:
    if c[0] == "segment":
        return ctx.t("seg.export_segment", name=seg_label(c[1]))
    row = persona_table.row(c[1], named=True)
    return ctx.t("seg.export_persona", name=row["name_en"] if en else row["name_vi"])


pick = st.selectbox(ctx.t("seg.export_pick"), choices, format_func=choice_label)
if pick is not None:
    if pick[0] == "segment":
        keys = scored.filter(pl.col("segment") == pick[1]).select("customer_key")
    else:
        keys = got[1].assignments.filter(pl.col("persona") == pick[1]).select("customer_key")
    st.caption(ctx.t("seg.export_note", n=fmt.number(keys.height, lang)))
    stem = f"{pick[0]}_{pick[1]}_{as_of.isoformat()}"
    st.download_button(ctx.t("seg.export_csv"), lambda: to_excel_csv(frame.export(ctx, f"{pick[0]}_members", lambda: rfm.members(frame.store(), scored, keys))),
                       file_name=f"{stem}.csv", mime="text/csv", icon=":material/download:", on_click="ignore")
