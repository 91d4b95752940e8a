"""The frame every page shares: the store, the sidebar filters, the URL state, and the
cached metric calls. Pages read :func:`context` and call the cached functions here."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, timedelta

import polars as pl
import streamlit as st

from data import access, config
from data.access import LOCAL_USER, LOCAL_WORKSPACE, Principal, Registry
from data.config import db_path
from data.store import Store
from metrics import kpis
from metrics import churn
from metrics import clv_view as CV
from metrics import loyalty as L
from metrics import personas as P
from metrics import rfm
from metrics import surveys as S
from metrics import retention as R
from metrics.filters import (
    COMPARISONS, LOYALTY, PERIODS, Filters, ViewState, comparison_period,
)
from pages.ui import clv_charts, fmt, warmup
from pages.ui.i18n import LANGUAGES, label, t

CONTEXT_KEY = "_cm_context"
# URL parameters a page keeps for its own controls (the sidebar leaves them alone).
PAGE_PREFIXES = ("r_", "c_", "k_", "l_", "s_", "v_")


@st.cache_resource(show_spinner=False)
def get_store(path: str) -> Store:
    """One read-write DuckDB connection per workspace file and process, shared by
    every session of that workspace; each query takes its own cursor inside the
    store. Hardened: it reads no file outside the import scratch directory.

    With the Spark engine configured (data.config.engine_settings) ``path`` is
    ``spark:<where the tables are>`` and the store is a :class:`data.spark.SparkStore`
    on one Spark session for the process: the same metrics, computed where the data is."""
    if path.startswith(SPARK_PREFIX):
        from data.spark import SparkStore

        return SparkStore.from_settings(config.engine_settings())
    return Store(path, harden=True)


SPARK_PREFIX = "spark:"


STORE_KEY = "_cm_store_path"


def store() -> Store:
    """The current workspace's store (the sidebar resolves the workspace first)."""
    e = config.engine_settings()
    if e["engine"] == "spark":
        return get_store(SPARK_PREFIX + (e["location"] or f"catalog:{e['catalog']}"))
    return get_store(st.session_state.get(STORE_KEY) or str(db_path()))


@st.cache_resource(show_spinner=False)
def get_registry(root: str, local_db: str | None, secret: str) -> Registry:
    return Registry(root, local_db=local_db, secret=secret)


def registry() -> Registry:
    """Workspaces, members and the audit log: beside the database in local mode,
    under the workspaces root when hosted."""
    if config.auth_configured():
        return get_registry(str(config.workspaces_root()), None, config.audit_secret())
    local = db_path()
    return get_registry(str(local.parent), str(local), config.audit_secret())


def signed_in_email() -> str | None:
    """The signed-in person's email from the identity provider (None: not signed
    in). The one seam tests replace to act as users of each role."""
    if not st.user.is_logged_in:
        return None
    return str(st.user.get("email") or "").strip().lower()


def identify() -> Principal:
    """Who is here and in which workspace; stops the run with the sign-in screen
    (hosted, not signed in) or a no-access message (not a member). Checked on every
    run against the registry, so a removed member loses access at once."""
    reg = registry()
    if not config.auth_configured():
        who = Principal(LOCAL_USER, LOCAL_WORKSPACE, "admin")
    else:
        lang = st.session_state.get("lang") or st.query_params.get("lang", "vi")
        lang = lang if lang in LANGUAGES else "vi"
        if warmup.is_warmup_session(st.context.headers, st.context.ip_address):
            # This process's own warm-up (pages.ui.warmup): a viewer of the workspace
            # in its link, if there is one; not a sign-in.
            ws = st.query_params.get("ws") or ""
            if ws not in reg.workspaces():
                st.stop()
            st.session_state[STORE_KEY] = str(reg.workspace_path(ws))
            return Principal(warmup.USER, ws, "viewer")
        email = signed_in_email()
        if email is None:
            st.title(t("auth.title", lang))
            st.write(t("auth.intro", lang))
            if st.button(t("auth.sign_in", lang), type="primary", icon=":material/login:"):
                st.login()
            st.stop()
        mine = reg.workspaces_of(email)
        ws = st.query_params.get("ws") or (mine[0] if mine else "")
        try:
            who = reg.principal(email, access.check_workspace_name(ws)) if ws else Principal(email, "", None)
        except access.AccessError:
            who = Principal(email, "", None)
        if who.role is None:
            if ws:
                reg.audit(who, "browse", "denied", detail=f"workspace={ws}")
            st.title(t("auth.no_access_title", lang))
            st.write(t("auth.no_access", lang, email=email))
            if mine:
                st.write(t("auth.yours", lang) + " " + ", ".join(f"[{w}](?ws={w})" for w in mine))
            st.button(t("auth.sign_out", lang), on_click=st.logout)
            st.stop()
        if st.session_state.get("_cm_signed_in") != (email, ws):
            reg.audit(who, "sign_in", "ok")
            st.session_state["_cm_signed_in"] = (email, ws)
    st.session_state[STORE_KEY] = str(reg.workspace_path(who.workspace))
    return who


@dataclass(frozen=True)
class Context:
    """What a page needs from the frame."""

    view: ViewState
    filters: Filters | None  # None when the database has no orders
    comparison: tuple[date, date] | None
    as_of: date | None
    lang: str
    money: fmt.Money
    first: date | None = None  # the first order's day
    who: Principal | None = None  # the signed-in person, their workspace and role

    def t(self, key: str, **values: object) -> str:
        return t(key, self.lang, **values)


# -- cached reads (keyed by database path and data version, never shared across them) --
@st.cache_data(show_spinner=False, max_entries=64)
def _bounds(path: str, version: str) -> tuple[date | None, date | None]:
    return kpis.data_bounds(get_store(path))


@st.cache_data(show_spinner=False, max_entries=64)
def _distinct(path: str, version: str, sql: str) -> list[str]:
    return [v for v in get_store(path).query(sql)["v"].to_list() if v is not None]


@st.cache_data(show_spinner=False, max_entries=256)
def overview(path: str, version: str, filters: Filters, comparison: tuple[date, date] | None) -> kpis.Overview:
    return kpis.overview(get_store(path), filters, comparison=comparison)


@st.cache_data(show_spinner=False, max_entries=32)
def retention(path: str, version: str, filters: Filters, spec: R.CohortSpec, as_of: date,
              money: bool) -> R.RetentionView:
    return R.retention_view(get_store(path), filters, spec, as_of=as_of, money=money)


@st.cache_data(show_spinner=False, max_entries=32)
def cell_customers(path: str, version: str, filters: Filters, spec: R.CohortSpec, cohort: date, k: int,
                   later: bool, segment: str | None) -> pl.DataFrame:
    return R.cell_customers(get_store(path), filters, spec, cohort=cohort, k=k, later=later, segment=segment)


@st.cache_data(show_spinner=False, max_entries=4)
def clv_fit(path: str, version: str, filters: Filters, as_of: date, unit: str) -> CV.Scored:
    """The models, refitted only when the data, filters, date or unit change."""
    return CV.fit(get_store(path), filters, as_of=as_of, unit=unit)


@st.cache_data(show_spinner=False, max_entries=4)
def clv_scored(path: str, version: str, filters: Filters, as_of: date, settings: CV.Settings) -> CV.Scored:
    return CV.score(get_store(path), filters, as_of=as_of, settings=settings,
                    fitted=clv_fit(path, version, filters, as_of, settings.unit))


@st.cache_data(show_spinner=False, max_entries=16)
def clv_bootstrap(path: str, version: str, filters: Filters, as_of: date, settings: CV.Settings) -> pl.DataFrame | None:
    scored = clv_scored(path, version, filters, as_of, settings)
    return CV.bootstrap(scored, settings) if scored.ok else None


@st.cache_data(show_spinner=False, max_entries=16)
def clv_validation(path: str, version: str, filters: Filters, calibration_end: date, holdout_end: date,
                   settings: CV.Settings) -> CV.Validation:
    return CV.validate(get_store(path), filters, calibration_end=calibration_end, holdout_end=holdout_end, settings=settings)


@st.cache_data(show_spinner=False, max_entries=16)
def clv_cac(path: str, version: str, filters: Filters) -> pl.DataFrame:
    return CV.acquisition_costs(get_store(path), filters)


@st.cache_data(show_spinner=False, max_entries=4)
def churn_list(path: str, version: str, filters: Filters, as_of: date, settings: CV.Settings,
               unmasked: bool = False) -> pl.DataFrame | None:
    """The churn-risk list on the CLV page's fitted models (None when they cannot be
    fitted: the page shows why from :func:`clv_scored`)."""
    scored = clv_scored(path, version, filters, as_of, settings)
    if not scored.ok:
        return None
    return churn.risk_list(get_store(path), filters, as_of=as_of, bgnbd=scored.bgnbd, gg=scored.gg,
                           margin_rate=settings.margin_rate, horizon_months=settings.horizon_months,
                           monthly_discount_rate=CV.monthly_rate(settings.annual_discount_rate),
                           unit=settings.unit, unmasked=unmasked)


@st.cache_data(show_spinner=False, max_entries=16)
def churn_precision(path: str, version: str, filters: Filters, calibration_end: date, holdout_end: date,
                    shares: tuple[float, ...], settings: CV.Settings) -> pl.DataFrame | str:
    """Holdout precision of targeting the riskiest customers, or why it cannot be
    computed."""
    try:
        return churn.targeting_precision(get_store(path), filters, calibration_end=calibration_end, holdout_end=holdout_end,
                                         shares=shares, unit=settings.unit, margin_rate=settings.margin_rate)
    except CV.M.ModelError as e:
        return str(e)


@st.cache_data(show_spinner=False, max_entries=8)
def loyalty(path: str, version: str, filters: Filters, as_of: date, value_per_point: float, margin_rate: float,
            extra_cost: float, window_months: int) -> L.LoyaltyView:
    return L.loyalty_view(get_store(path), filters, as_of=as_of, value_per_point=value_per_point, margin_rate=margin_rate,
                          extra_cost=extra_cost, window_months=window_months)


@st.cache_data(show_spinner=False, max_entries=64)
def segment_values(path: str, version: str, split: str) -> list[str]:
    sql = {
        "acquisition_channel": "SELECT DISTINCT coalesce(acquisition_channel, 'unknown') AS v FROM customers",
        "region": "SELECT DISTINCT coalesce(region, 'unknown') AS v FROM customers",
        "first_category": "SELECT DISTINCT coalesce(category, 'unknown') AS v FROM orders",
        "loyalty": "SELECT unnest(['member', 'non_member']) AS v",
    }.get(split)
    return sorted(_distinct(path, version, sql)) if sql else []


def page_param(key: str, allowed: tuple | list, default):
    """A page control's value from the URL (``?key=...``) on the session's first run:
    seeds ``st.session_state[key]`` once; the page writes it back with
    :func:`keep_page_params`. Keys are the page's own (prefix :data:`PAGE_PREFIXES`)."""
    if key not in st.session_state:
        raw = st.query_params.get(key)
        value = default
        if raw is not None:
            if isinstance(default, bool):
                value = raw == "1"
            elif isinstance(default, float):
                try:
                    value = float(raw)
                except ValueError:
                    value = default
                if not math.isfinite(value):  # "nan", "inf": never a setting
                    value = default
            elif isinstance(default, int):
                try:
                    value = int(raw)
                except ValueError:
                    value = default
            else:
                value = raw
        if not isinstance(default, bool | int | float) and allowed and value not in allowed:
            value = default
        st.session_state[key] = value
    return st.session_state[key]


def keep_page_params(values: dict[str, object], defaults: dict[str, object]) -> None:
    """Write the page's controls into the URL (only those not at their default)."""
    for k, v in values.items():
        text = ("1" if v else "0") if isinstance(v, bool) else str(v)
        if v == defaults.get(k):
            if k in st.query_params:
                del st.query_params[k]
        else:
            st.query_params[k] = text


def cache_key() -> tuple[str, str]:
    s = store()
    return s.path, s.data_version()


# -- the sidebar ---------------------------------------------------------------
def _seed_from_url() -> None:
    """On a session's first run, put the URL's view into the widgets' state."""
    if st.session_state.get("_cm_seeded"):
        return
    v = ViewState.from_query_params(st.query_params.to_dict())
    st.session_state.update(
        lang=v.lang, period=v.period, cmp=v.comparison, channel=list(v.channels),
        region=list(v.regions), loyalty=v.loyalty, cur=v.currency, fx=v.fx, window=v.inactivity_days,
    )
    if v.start and v.end:
        st.session_state["range"] = (v.start, v.end)
    st.session_state["_cm_seeded"] = True


def sidebar() -> Context:
    """Draw the global controls and return the resolved context. Called by app.py on
    every run, before the page, so every page shares the same widgets and URL."""
    who = identify()
    _seed_from_url()
    path, version = cache_key()
    first, last = _bounds(path, version)
    sb = st.sidebar
    lang = sb.segmented_control(
        "🌐", list(LANGUAGES), format_func=LANGUAGES.get, key="lang", required=True, label_visibility="collapsed",
    ) or "vi"
    sb.subheader(t("side.filters", lang))
    period = sb.selectbox(t("side.period", lang), PERIODS, key="period", format_func=lambda p: t(f"period.{p}", lang))
    start = end = None
    if period == "custom":
        default_end = last or date.today()
        if "range" not in st.session_state:
            st.session_state["range"] = (default_end - timedelta(days=89), default_end)
        picked = sb.date_input(t("side.range", lang), key="range", format="DD/MM/YYYY")
        if isinstance(picked, tuple) and len(picked) == 2:
            start, end = picked
    cmp = sb.selectbox(t("side.comparison", lang), COMPARISONS, key="cmp", format_func=lambda c: t(f"cmp.{c}", lang))
    channels_known = _distinct(path, version, "SELECT DISTINCT channel AS v FROM orders ORDER BY 1")
    regions_known = _distinct(path, version, "SELECT DISTINCT region AS v FROM customers ORDER BY 1")
    for key, known in (("channel", channels_known), ("region", regions_known)):
        st.session_state[key] = [v for v in st.session_state.get(key, []) if v in known]
    channels = sb.multiselect(t("side.channel", lang), channels_known, key="channel",
                              format_func=lambda c: label("channel", c, lang), placeholder=t("side.all", lang))
    regions = sb.multiselect(t("side.region", lang), regions_known, key="region", placeholder=t("side.all", lang))
    loyalty = sb.selectbox(t("side.loyalty", lang), LOYALTY, key="loyalty", format_func=lambda c: t(f"loyalty.{c}", lang))
    with sb.expander(t("side.settings", lang)):
        currency = st.segmented_control(t("side.currency", lang), ["VND", "USD"], key="cur", required=True) or "VND"
        fx = st.session_state.get("fx", ViewState().fx)
        if currency == "USD":
            fx = st.number_input(t("side.fx", lang), min_value=1.0, max_value=1e8, step=100.0, key="fx")
        window = st.number_input(t("side.window", lang), min_value=7, max_value=730, step=1, key="window",
                                 help=t("side.window_help", lang))
    view = ViewState(
        period=period, start=start, end=end, comparison=cmp, channels=tuple(channels), regions=tuple(regions),
        loyalty=loyalty, lang=lang, currency=currency, fx=float(fx), inactivity_days=int(window),
    )
    # The view, plus the pages' own controls (``r_...``, ``c_...``), which each page keeps.
    page_own = {k: v for k, v in st.query_params.to_dict().items() if k.startswith(PAGE_PREFIXES)}
    if config.auth_configured():
        page_own["ws"] = who.workspace  # the workspace is part of every link
    st.query_params.from_dict({**view.to_query_params(), **page_own})
    filters = comparison = None
    if last is not None:
        if view.period == "custom" and not (view.start and view.end):
            view = replace(view, period="365d")
        filters = view.filters(as_of=last, first=first)
        comparison = comparison_period(filters.start, filters.end, view.comparison)
        sb.caption(t("side.as_of", lang, date=fmt.day(last, lang)))
    if config.auth_configured():
        sb.caption(t("auth.who", lang, email=who.email, role=t(f"role.{who.role}", lang), workspace=who.workspace))
        sb.button(t("auth.sign_out", lang), on_click=st.logout, icon=":material/logout:")
    ctx = Context(view=view, filters=filters, comparison=comparison, as_of=last, lang=lang,
                  money=fmt.Money(lang=lang, currency=currency, fx=float(fx)), first=first, who=who)
    st.session_state[CONTEXT_KEY] = ctx
    return ctx


def context() -> Context:
    """The context the frame resolved in this run (app.py always runs first)."""
    return st.session_state[CONTEXT_KEY]


def filter_caption(ctx: Context) -> str:
    """The caption under each chart: the period, the comparison and the filters."""
    f = ctx.filters
    if f is None:
        return ""
    parts = [t("caption.period", ctx.lang, start=fmt.day(f.start, ctx.lang), end=fmt.day(f.end, ctx.lang))]
    if ctx.comparison:
        a, b = ctx.comparison
        parts.append(t("caption.compare", ctx.lang, start=fmt.day(a, ctx.lang), end=fmt.day(b, ctx.lang)))
    chosen = [label("channel", c, ctx.lang) for c in f.channels] + list(f.regions)
    if f.loyalty != "all":
        chosen.append(t(f"loyalty.{f.loyalty}", ctx.lang))
    if chosen:
        parts.append(t("caption.filters", ctx.lang, filters=", ".join(chosen)))
    return " · ".join(parts)


def stop_unless_fitted(ctx: Context, scored: CV.Scored) -> None:
    """The CLV and churn pages' message when the models cannot be used: what the data
    lack (a warning) or why the fit failed (an error), in the page's language; then
    the page stops."""
    why = clv_charts.explain(scored.problems, scored.shortfalls, scored.error, scored.error_code, scored.error_values, ctx.lang)
    if scored.problems:
        st.warning(ctx.t("clv.not_enough") + "\n\n" + "\n".join(f"- {p}" for p in why), icon=":material/data_alert:")
        st.stop()
    if scored.error:
        st.error(ctx.t("clv.fit_failed", reason=why[-1]), icon=":material/error:")
        st.stop()


def empty_state(ctx: Context) -> None:
    """The plain message every page shows when the database has no orders."""
    st.info(f"**{ctx.t('empty.title')}** — {ctx.t('empty.body')}", icon=":material/database:")
    st.page_link("pages/data_page.py", label=ctx.t("empty.link"), icon=":material/upload:")


@st.cache_data(show_spinner=False, max_entries=8)
def loyalty_predicted(path: str, version: str, filters: Filters, as_of: date, value_per_point: float,
                      margin_rate: float, extra_cost: float, window_months: int) -> pl.DataFrame | None:
    """Mean predicted CLV (12 months, the CLV page's default settings but this margin)
    of the Loyalty page's naive groups; None when the CLV models cannot be used."""
    view = loyalty(path, version, filters, as_of, value_per_point, margin_rate, extra_cost, window_months)
    mf = CV.model_filters(replace(filters, loyalty="all"))  # both members and non-members
    scored = clv_scored(path, version, mf, as_of, CV.Settings(margin_rate=margin_rate))
    if not scored.ok:
        return None
    summary = L.customer_summary(get_store(path), filters, start=view.start, end=view.end, margin_rate=margin_rate)
    return L.predicted_by_group(L.naive_groups(summary, view.end), scored.customers)


@st.cache_data(show_spinner=False, max_entries=16)
def loyalty_tiers(path: str, version: str, filters: Filters, d1: date, d2: date,
                  rule: tuple[tuple[float, str], ...] | None, margin_rate: float) -> pl.DataFrame:
    """Tier movement between two dates: recorded tiers (``rule`` None) or a tier rule."""
    return L.tier_movement(get_store(path), filters, d1, d2, rule=rule, margin_rate=margin_rate)


# -- Segments page ------------------------------------------------------------------
def _rules(rules: tuple[tuple[str, tuple[int, int] | None, tuple[int, int] | None], ...]) -> list[dict]:
    out = []
    for name, r, fm in rules:
        rule: dict = {"name": name}
        if r is not None:
            rule["r"] = r
        if fm is not None:
            rule["fm"] = fm
        out.append(rule)
    return out


@st.cache_data(show_spinner=False, max_entries=8)
def rfm_scored(path: str, version: str, filters: Filters, as_of: date, rules: tuple) -> pl.DataFrame:
    """RFM scores and segments at ``as_of`` (``rules`` as hashable tuples)."""
    return rfm.rfm_segments(get_store(path), filters, as_of=as_of, rules=_rules(rules))


@st.cache_data(show_spinner=False, max_entries=8)
def segment_movement(path: str, version: str, filters: Filters, d1: date, d2: date, rules: tuple) -> pl.DataFrame:
    return rfm.segment_movement(get_store(path), filters, d1, d2, rules=_rules(rules))


@st.cache_data(show_spinner=False, max_entries=8)
def segment_mix(path: str, version: str, filters: Filters, dates: tuple[date, ...], rules: tuple) -> pl.DataFrame:
    return rfm.segment_mix(get_store(path), filters, dates, rules=_rules(rules))


@st.cache_data(show_spinner=False, max_entries=4)
def personas(path: str, version: str, filters: Filters, as_of: date):
    """(features, fitted personas) or the reason they cannot be built (a str)."""
    feats = P.features(get_store(path), filters, as_of=as_of)
    try:
        return feats, P.fit(feats)
    except P.PersonaError as e:
        return str(e)


@st.cache_data(show_spinner=False, max_entries=16)
def nps_answers(path: str, version: str, as_of: date) -> pl.DataFrame:
    return P.nps_answers(get_store(path), as_of=as_of)


# -- Surveys page -----------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def survey_overview(path: str, version: str, filters: Filters, comparison: tuple[date, date] | None):
    """Scores with the comparison, monthly scores, the 0-10 distribution."""
    s = get_store(path)
    return (S.score_summary(s, filters, comparison=comparison), S.monthly_scores(s, filters),
            S.nps_distribution(s, filters))


@st.cache_data(show_spinner=False, max_entries=16)
def survey_breakdown(path: str, version: str, filters: Filters, by: str, as_of: date) -> S.Linked:
    """Scores by touchpoint / channel / survey, or by RFM segment / persona (customer groups)."""
    if by in S.BREAKDOWNS:
        return S.Linked(S.scores_by(get_store(path), filters, by))
    return S.scores_by_customer_group(get_store(path), filters, survey_groups(path, version, filters, by, as_of))


def survey_groups(path: str, version: str, filters: Filters, by: str, as_of: date) -> pl.DataFrame:
    """customer_key, group for ``segment`` (RFM, default rules) or ``persona``."""
    mf = CV.model_filters(filters)
    if by == "segment":
        return rfm_scored(path, version, mf, as_of, tuple((r["name"], r.get("r"), r.get("fm"))
                                                          for r in rfm.DEFAULT_SEGMENT_RULES)).select(
            "customer_key", pl.col("segment").alias("group"))
    got = personas(path, version, mf, as_of)
    if isinstance(got, str):
        return pl.DataFrame(schema={"customer_key": pl.Int64, "group": pl.Utf8})
    return got[1].assignments.select("customer_key", pl.col("persona").cast(pl.Utf8).alias("group"))


@st.cache_data(show_spinner=False, max_entries=16)
def survey_say_do(path: str, version: str, filters: Filters, as_of: date, horizon_days: int) -> S.SayDo:
    """Say vs do on the window as long as the period that ends ``horizon_days``
    before ``as_of`` (every answer's horizon observed)."""
    start, end = S.observed_period(filters, as_of=as_of, horizon_days=horizon_days)
    return S.say_vs_do(get_store(path), replace(filters, start=start, end=end), as_of=as_of, horizon_days=horizon_days)


@st.cache_data(show_spinner=False, max_entries=16)
def survey_deciles(path: str, version: str, filters: Filters, as_of: date) -> S.Linked | None:
    scored = clv_scored(path, version, CV.model_filters(filters), as_of, CV.Settings())
    if not scored.ok:
        return None
    return S.scores_by_clv_decile(get_store(path), filters, scored.customers.select("customer_key", "clv"))


@st.cache_data(show_spinner=False, max_entries=16)
def survey_detractors(path: str, version: str, filters: Filters, as_of: date) -> S.Linked:
    scored = clv_scored(path, version, CV.model_filters(filters), as_of, CV.Settings())
    clv = scored.customers.select("customer_key", "clv") if scored.ok else None
    return S.detractors_to_call(get_store(path), filters, clv=clv, limit=200)


@st.cache_data(show_spinner=False, max_entries=16)
def survey_drivers(path: str, version: str, filters: Filters) -> S.Linked:
    return S.key_drivers(get_store(path), filters)


@st.cache_data(show_spinner=False, max_entries=16)
def survey_terms(path: str, version: str, filters: Filters, by: str, lang: str) -> S.Linked:
    return S.distinctive_terms(get_store(path), filters, by=by, top=10, lang=lang)


@st.cache_data(show_spinner=False, max_entries=32)
def survey_search(path: str, version: str, filters: Filters, query: str, fold: bool) -> S.CommentSearch:
    return S.search_comments(get_store(path), filters, query, fold_diacritics=fold, limit=200)


# -- protected actions ---------------------------------------------------------------------
def export(ctx: Context, what: str, build, *, unmasked: bool = False) -> pl.DataFrame:
    """An export's frame through :func:`data.actions.export`: the role is checked on
    the server when the download is built, and the export is logged."""
    from data import actions

    return actions.export(ctx.who, registry(), what, build, unmasked=unmasked)


# -- tables ----------------------------------------------------------------------------------
def dataframe(where, data, **kwargs):
    """``where.dataframe(data, ...)`` with a Polars frame handed over as an Arrow table.

    Streamlit turns a Polars frame into pandas with ``DataFrame.to_pandas()``, and that
    call could deadlock the whole server against a ``map_elements`` running in another
    session at the same moment (both wait on Polars' thread pool while one holds the
    GIL; reproduced with Polars 2.1.0 under the load benchmark). The app no longer calls
    ``map_elements`` (Python functions over values run on the caller's thread, see
    metrics/pymap.py), and tables still go to Streamlit as Arrow: an Arrow table is
    serialised directly, without pandas and without Polars' pool."""
    if isinstance(data, pl.DataFrame):
        data = data.to_arrow()
    return where.dataframe(data, **kwargs)
