"""Team: the workspace's members and roles, the audit log, forgetting a customer, and
new workspaces. Every change goes through data.access / data.actions, which check the
role on the server and log it; the page only hides what the role cannot use."""

from __future__ import annotations

import polars as pl
import streamlit as st

from data import actions
from data.access import ROLES, AccessError, Forbidden
from pages.ui import fmt, frame

ctx = frame.context()
who = ctx.who
reg = frame.registry()
st.title(ctx.t("team.title"))
st.caption(ctx.t("team.intro", workspace=who.workspace, role=ctx.t(f"role.{who.role}")))


def _flash(ok: bool, message: str) -> None:
    st.session_state["_cm_team_flash"] = (ok, message)


def _refused() -> None:
    _flash(False, ctx.t("auth.forbidden", role=ctx.t(f"role.{who.role}")))


def _set_member(email: str, role: str | None) -> None:
    try:
        reg.set_member(who, email, role)
    except Forbidden:
        _refused()
        return
    except AccessError as e:
        _flash(False, str(e))
        return
    _flash(True, ctx.t("team.member_saved" if role else "team.member_removed"))


def _forget() -> None:
    ident = st.session_state.get("team_forget", "")
    try:
        removed = actions.forget_customer(who, reg, frame.store(), ident, clear_caches=st.cache_data.clear)
    except Forbidden:
        _refused()
        return
    st.session_state["team_forget"] = ""
    if removed:
        _flash(True, ctx.t("team.forgotten", n=fmt.number(sum(removed.values()), ctx.lang),
                           tables=", ".join(sorted(removed))))
    else:
        _flash(False, ctx.t("team.forget_none"))


def _create() -> None:
    name = st.session_state.get("team_new_ws", "").strip()
    try:
        reg.create_workspace(who, name)
    except Forbidden:
        _refused()
        return
    except AccessError as e:
        _flash(False, str(e))
        return
    _flash(True, ctx.t("team.created", name=name))


flash = st.session_state.pop("_cm_team_flash", None)
if flash:
    (st.success if flash[0] else st.error)(flash[1], icon=":material/check_circle:" if flash[0] else ":material/block:")

admin = who.can("manage_members")
# -- members -------------------------------------------------------------------------------
st.subheader(ctx.t("team.members"))
if who.email == "local":
    st.info(ctx.t("team.local"), icon=":material/computer:")
else:
    members = reg.members(who)
    frame.dataframe(st, pl.DataFrame({ctx.t("team.col.email"): [m[0] for m in members],
                               ctx.t("team.col.role"): [ctx.t(f"role.{m[1]}") for m in members]}),
                 hide_index=True, width="stretch")
    if admin:
        with st.form("team_member", clear_on_submit=True):
            c1, c2 = st.columns([3, 1])
            email = c1.text_input(ctx.t("team.col.email"), placeholder="ten@congty.vn")
            role = c2.selectbox(ctx.t("team.col.role"), [*ROLES, "remove"],
                                format_func=lambda r: ctx.t("team.remove") if r == "remove" else ctx.t(f"role.{r}"))
            if st.form_submit_button(ctx.t("team.save"), type="primary"):
                _set_member(email, None if role == "remove" else role)
                st.rerun()
    st.caption(ctx.t("team.roles_note"))

# -- personal data ---------------------------------------------------------------------------
st.subheader(ctx.t("team.forget"))
st.caption(ctx.t("team.forget_help"))
if admin:
    with st.form("team_forget_form"):
        st.text_input(ctx.t("team.forget_input"), key="team_forget", type="password")
        st.form_submit_button(ctx.t("team.forget_button"), on_click=_forget, type="primary")
else:
    st.caption(ctx.t("team.admin_only"))

# -- audit log ----------------------------------------------------------------------------------
st.subheader(ctx.t("team.audit"))
if admin:
    log = reg.audit_log(who, limit=500)
    frame.dataframe(st, log.rename({c: ctx.t(f"team.log.{c}") for c in log.columns}), hide_index=True, width="stretch",
                 height=360)
    st.caption(ctx.t("team.audit_note"))
else:
    st.caption(ctx.t("team.admin_only"))

# -- workspaces ------------------------------------------------------------------------------------
if who.email != "local" and admin:
    st.subheader(ctx.t("team.workspaces"))
    mine = reg.workspaces_of(who.email)
    st.markdown(" · ".join(f"[{w}](?ws={w})" for w in mine))
    with st.form("team_ws"):
        st.text_input(ctx.t("team.new_ws"), key="team_new_ws", help=ctx.t("team.new_ws_help"))
        st.form_submit_button(ctx.t("team.create"), on_click=_create)
