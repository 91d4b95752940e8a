"""Data: what is loaded, the import history, and the demo data."""

from __future__ import annotations

import time

import polars as pl
import streamlit as st

from data import actions, importer
from data.access import Forbidden
from data.kinds import KINDS
from data.parse import FileProblem
from data.presets import PRESETS
from pages.ui import fmt, frame

ctx = frame.context()
s = frame.store()


# -- actions: callbacks run before the page draws, so it shows their result ---------
def _flash(ok: bool, message: str) -> None:
    st.session_state["_cm_flash"] = (ok, message)


def _load(report: importer.Report, mode: str, accept: bool) -> None:
    try:
        with st.spinner(ctx.t("imp.loading")):
            iid = actions.load_import(ctx.who, frame.registry(), s, report, mode=mode, accept_valid=accept)
    except FileProblem as e:
        _flash(False, ctx.t("imp.rejected_file", reason=str(e)))
        return
    except Forbidden:
        _flash(False, ctx.t("auth.forbidden", role=ctx.t(f"role.{ctx.who.role}")))
        return
    loaded = s.imports().filter(pl.col("import_id") == iid)["rows_loaded"][0]
    st.session_state.pop("_cm_report", None)
    _flash(True, ctx.t("imp.loaded", n=fmt.number(loaded, ctx.lang),
                       table=ctx.t(f"table.{KINDS[report.kind].table}"), id=iid))


def _undo(import_id: int) -> None:
    try:
        done = actions.undo_import(ctx.who, frame.registry(), s, import_id)
    except Forbidden:
        _flash(False, ctx.t("auth.forbidden", role=ctx.t(f"role.{ctx.who.role}")))
        return
    except ValueError as e:
        _flash(False, ctx.t("imp.undo_refused", reason=str(e)))
        return
    _flash(True, ctx.t("imp.undone", id=import_id, removed=fmt.number(done["removed"], ctx.lang),
                       restored=fmt.number(done["restored"], ctx.lang)))


def _rebuild() -> None:
    if not st.session_state.get("demo_confirm"):
        return
    started = time.perf_counter()
    try:
        truth = actions.rebuild_demo(ctx.who, frame.registry(), s, customers=int(st.session_state["demo_customers"]),
                                     seed=int(st.session_state["demo_seed"]))
    except Forbidden:
        _flash(False, ctx.t("auth.forbidden", role=ctx.t(f"role.{ctx.who.role}")))
        return
    _flash(True, ctx.t("data.built", orders=fmt.number(truth["counts"]["orders"], ctx.lang),
                       customers=fmt.number(truth["counts"]["customers"], ctx.lang),
                       secs=fmt.number(time.perf_counter() - started, ctx.lang, 1)))


st.title(ctx.t("data.title"))
if flash := st.session_state.pop("_cm_flash", None):
    ok, message = flash
    (st.success if ok else st.error)(message, icon=":material/check_circle:" if ok else ":material/error:")

spark = getattr(s, "engine", "duckdb") == "spark"
st.subheader(ctx.t("data.loaded"))
if spark:
    st.markdown(ctx.t("data.where_spark", engine=s.describe(), where=s.where()))
else:
    st.markdown(ctx.t("data.where", path=s.path, version=s.schema_version()))
info = s.table_info()
frame.dataframe(st, 
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

# -- import a file -----------------------------------------------------------------
st.subheader(ctx.t("imp.title"))
if spark and (why := s.writable()):  # a catalog, a remote or read-only location: no upload
    st.info(ctx.t("data.spark_read_only", where=s.where(), why=why), icon=":material/cloud:")
    st.stop()
st.caption(ctx.t("imp.help"))
if spark:
    st.caption(ctx.t("data.spark_writes", where=s.where()))
with st.form("import"):
    upload = st.file_uploader(ctx.t("imp.file"), type=["csv", "tsv", "txt", "xlsx"])
    a, b, c = st.columns(3)
    kind = a.selectbox(ctx.t("imp.kind"), list(KINDS), format_func=lambda k: KINDS[k].label(ctx.lang))
    preset = a.selectbox(ctx.t("imp.preset"), ["auto", "generic", *PRESETS],
                         format_func=lambda p: ctx.t(f"imp.preset.{p}") if p in ("auto", "generic") else PRESETS[p].label)
    mode = b.radio(ctx.t("imp.mode"), ["append", "replace"], format_func=lambda m: ctx.t(f"imp.mode.{m}"))
    day_first = c.checkbox(ctx.t("imp.day_first"), value=True)
    checked = st.form_submit_button(ctx.t("imp.check"), type="primary")


def _check(raw: bytes, name: str, kind: str, preset: str, day_first: bool, mode: str,
           explicit: dict[str, str] | None = None) -> None:
    """Check a file; keep the report, or the mapping step it needs, in the session.
    The checked rows wait in a scratch database inside the store until loaded."""
    if (old := st.session_state.pop("_cm_report", None)) is not None:
        old[0].close()
    st.session_state.pop("_cm_mapping", None)
    bar = st.progress(0.0, text=ctx.t("imp.checking"))
    try:
        try:
            report = importer.check_file(
                raw, name, kind, settings=importer.Settings(day_first=day_first), explicit=explicit,
                preset=None if preset == "auto" else preset,
                remembered=lambda sig: s.remembered_mapping(kind, sig), store=s,
                progress=lambda p, step: bar.progress(min(max(p, 0.0), 1.0), text=ctx.t(f"imp.step.{step}")))
        except importer.MappingNeeded as e:
            st.session_state["_cm_mapping"] = (e, raw, name, kind, preset, day_first, mode)
        except FileProblem as e:
            st.error(ctx.t("imp.rejected_file", reason=str(e)), icon=":material/block:")
        else:
            st.session_state["_cm_report"] = (report, mode)
    finally:
        bar.empty()


if checked and upload is not None:
    _check(upload.getvalue(), upload.name, kind, preset, day_first, mode)
if (need := st.session_state.get("_cm_mapping")) is not None:
    problem, raw, name, m_kind, m_preset, m_day_first, m_mode = need
    st.warning(ctx.t("imp.mapping_needed", fields=", ".join(problem.missing)), icon=":material/table_rows:")
    with st.form("mapping"):
        chosen = {}
        for f in problem.missing:
            options = problem.suggestions[f] + [h for h in problem.headers if h not in problem.suggestions[f]]
            chosen[f] = st.selectbox(f, options, index=0 if problem.suggestions[f] else None, key=f"map_{f}")
        remember = st.checkbox(ctx.t("imp.remember"), value=True)
        apply = st.form_submit_button(ctx.t("imp.apply_mapping"), type="primary")
    if apply:
        explicit = {f: h for f, h in chosen.items() if h}
        if remember and len(explicit) == len(problem.missing):
            s.remember_mapping(m_kind, problem.signature, explicit)
        _check(raw, name, m_kind, m_preset, m_day_first, m_mode, explicit)
if (pending := st.session_state.get("_cm_report")) is not None:
    report, mode = pending
    st.markdown(ctx.t("imp.summary", file=report.file_name, read=fmt.number(report.rows_read, ctx.lang),
                      bad=fmt.number(len(report.rejected_lines), ctx.lang)))
    for note in report.notes:
        st.info(note, icon=":material/info:")
    with st.expander(ctx.t("imp.mapping")):
        frame.dataframe(st, pl.DataFrame({ctx.t("imp.field"): list(report.mapping), ctx.t("imp.header"): list(report.mapping.values())}),
                     hide_index=True)
        if report.ignored:
            st.caption(ctx.t("imp.ignored", cols=", ".join(report.ignored)))
    if not report.ok:
        st.markdown(f"**{ctx.t('imp.counts')}**")
        frame.dataframe(st, report.counts().rename({"rule": ctx.t("col.rule"), "column": ctx.t("col.column"), "rows": ctx.t("col.rows")}),
                     hide_index=True)
        st.markdown(f"**{ctx.t('imp.problems')}**")
        frame.dataframe(st, report.problems.head(1000).rename({c: ctx.t(f"col.{c}") for c in report.problems.columns}),
                     hide_index=True, width="stretch")
        st.download_button(ctx.t("imp.download"), report.problems_csv(), file_name=f"{report.file_name}.problems.csv",
                           mime="text/csv")
    accept = st.checkbox(ctx.t("imp.accept_valid")) if not report.ok else False
    st.button(ctx.t("imp.load", n=fmt.number(report.valid_count(), ctx.lang)), disabled=not (report.ok or accept),
              on_click=_load, args=(report, mode, accept))

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
    frame.dataframe(st, 
        imports.select(cols).rename({c: ctx.t(f"data.col.{c}") for c in cols}),
        hide_index=True,
        width="stretch",
    )
    undoable = imports.filter((pl.col("status") == "loaded") & (pl.col("kind") != "demo"))["import_id"].to_list()
    if undoable:
        u1, u2 = st.columns([3, 1], vertical_alignment="bottom")
        pick = u1.selectbox(ctx.t("imp.undo"), undoable, format_func=lambda i: f"#{i}")
        u2.button(ctx.t("imp.undo_button"), on_click=_undo, args=(int(pick),))
    quarantined = s.quarantine()
    if quarantined.height:
        with st.expander(ctx.t("imp.quarantine", n=fmt.number(quarantined.height, ctx.lang))):
            frame.dataframe(st, quarantined, hide_index=True, width="stretch")

if spark:  # the demo data goes to a lake with `python -m data.lake export`
    st.stop()
st.subheader(ctx.t("data.demo"))
st.caption(ctx.t("data.demo_help"))
with st.form("demo"):
    a, b = st.columns(2)
    a.number_input(ctx.t("data.customers"), min_value=100, max_value=1_000_000, value=20_000, step=1_000,
                   key="demo_customers")
    b.number_input(ctx.t("data.seed"), min_value=0, max_value=2**31 - 1, value=7, step=1, key="demo_seed")
    st.checkbox(ctx.t("data.confirm"), value=s.is_empty(), key="demo_confirm")
    st.form_submit_button(ctx.t("data.rebuild"), type="primary", on_click=_rebuild)
