"""Data: what is loaded, the import history, and the demo data."""

from __future__ import annotations

import time

import polars as pl
import streamlit as st

from pages.ui import fmt, frame

ctx = frame.context()
st.title(ctx.t("data.title"))
s = frame.store()
if flash := st.session_state.pop("_cm_flash", None):
    st.success(flash, icon=":material/check_circle:")

st.subheader(ctx.t("data.loaded"))
st.markdown(ctx.t("data.where", path=s.path, version=s.schema_version()))
info = s.table_info()
st.dataframe(
    pl.DataFrame(
        {
            ctx.t("data.table"): [ctx.t(f"table.{i.name}") for i in info],
            ctx.t("data.rows"): [fmt.number(i.rows, ctx.lang) for i in info],
            ctx.t("data.first"): [fmt.day(i.first.date() if hasattr(i.first, "date") else i.first, ctx.lang) for i in info],
            ctx.t("data.last"): [fmt.day(i.last.date() if hasattr(i.last, "date") else i.last, ctx.lang) for i in info],
        }
    ),
    hide_index=True,
    width="stretch",
)

st.subheader(ctx.t("data.imports"))
imports = s.imports()
if imports.height == 0:
    st.caption(ctx.t("data.no_imports"))
else:
    last = imports.row(0, named=True)
    st.markdown(
        ctx.t("data.last_import", kind=last["kind"], file=last["file_name"] or "—",
              rows=fmt.number(last["rows_loaded"], ctx.lang),
              when=fmt.day(last["started_at"].date(), ctx.lang) + last["started_at"].strftime(" %H:%M"))
    )
    cols = ["import_id", "kind", "file_name", "rows_loaded", "rows_rejected", "mode", "started_at", "status"]
    st.dataframe(
        imports.select(cols).rename({c: ctx.t(f"data.col.{c}") for c in cols}),
        hide_index=True,
        width="stretch",
    )

st.subheader(ctx.t("data.demo"))
st.caption(ctx.t("data.demo_help"))
with st.form("demo"):
    a, b = st.columns(2)
    n = a.number_input(ctx.t("data.customers"), min_value=100, max_value=1_000_000, value=20_000, step=1_000)
    seed = b.number_input(ctx.t("data.seed"), min_value=0, max_value=2**31 - 1, value=7, step=1)
    confirm = st.checkbox(ctx.t("data.confirm"), value=s.is_empty())
    go = st.form_submit_button(ctx.t("data.rebuild"), type="primary", disabled=False)
if go and confirm:
    from data import demo  # the generator is only needed here

    started = time.perf_counter()
    with st.spinner(ctx.t("data.building", n=fmt.number(n, ctx.lang))):
        truth = demo.build(s, customers=int(n), seed=int(seed))
    st.session_state["_cm_flash"] = (
        ctx.t("data.built", orders=fmt.number(truth["counts"]["orders"], ctx.lang),
              customers=fmt.number(truth["counts"]["customers"], ctx.lang),
              secs=fmt.number(time.perf_counter() - started, ctx.lang, 1))
    )
    st.rerun()
