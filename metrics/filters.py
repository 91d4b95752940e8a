"""The global filters: one frozen, hashable object shared by every page.

It resolves the period presets, gives the SQL condition with its bound parameters
(the one filtered base query that every metric wraps), a caption for under each chart,
and the URL query parameters that reproduce it. It is also the cache key.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

PERIODS = ("30d", "90d", "365d", "ytd", "all", "custom")
COMPARISONS = ("prev", "yoy", "none")
LOYALTY = ("all", "member", "non_member")
CHANNELS = ("website", "shopee", "zalo_oa", "facebook", "store", "app")
DEFAULT_PERIOD = "365d"
DEFAULT_COMPARISON = "prev"
DEFAULT_INACTIVITY_DAYS = 90
ORDER_EXTRAS = ("order_id", "category", "channel")


def shift_years(d: date, years: int) -> date:
    """The same calendar date ``years`` later (29 Feb falls back to 28 Feb)."""
    try:
        return d.replace(year=d.year + years)
    except ValueError:
        return d.replace(year=d.year + years, day=28)


def resolve_period(
    preset: str,
    as_of: date,
    *,
    first: date | None = None,
    custom: tuple[date, date] | None = None,
) -> tuple[date, date]:
    """Inclusive (start, end) dates of a period preset ending on ``as_of``.

    ``30d``/``90d``/``365d``: the last N days including ``as_of``; ``ytd``: 1 January
    to ``as_of``; ``all``: ``first`` (the first order date) to ``as_of``; ``custom``:
    the given pair, ordered.
    """
    if preset in ("30d", "90d", "365d"):
        days = int(preset[:-1])
        return as_of - timedelta(days=days - 1), as_of
    if preset == "ytd":
        return date(as_of.year, 1, 1), as_of
    if preset == "all":
        return (first or as_of), as_of
    if preset == "custom":
        if not custom:
            raise ValueError("a custom period needs a start and an end date")
        a, b = custom
        return (a, b) if a <= b else (b, a)
    raise ValueError(f"unknown period preset {preset!r}")


def comparison_period(start: date, end: date, mode: str) -> tuple[date, date] | None:
    """The comparison window for ``[start, end]``.

    ``prev``: the same number of days immediately before; ``yoy``: the same dates a
    year earlier; ``none``: no comparison.
    """
    if mode == "none":
        return None
    if mode == "prev":
        days = (end - start).days + 1
        return start - timedelta(days=days), start - timedelta(days=1)
    if mode == "yoy":
        return shift_years(start, -1), shift_years(end, -1)
    raise ValueError(f"unknown comparison {mode!r}")


def month_end(d: date) -> date:
    return date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])


def instant(d: date) -> datetime:
    """Midnight at the start of ``d`` (periods are half-open [start, end + 1 day))."""
    return datetime.combine(d, time())


@dataclass(frozen=True)
class Filters:
    """The global filters, resolved to concrete dates.

    ``start``/``end`` are inclusive dates. ``channels`` filters orders (and survey
    responses) by their channel; ``regions`` and ``loyalty`` filter by the customer
    (loyalty member = has a row in loyalty_members). Empty tuples mean "all".
    """

    start: date
    end: date
    channels: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    loyalty: str = "all"
    inactivity_days: int = DEFAULT_INACTIVITY_DAYS

    def __post_init__(self) -> None:
        if self.loyalty not in LOYALTY:
            raise ValueError(f"loyalty must be one of {LOYALTY}, not {self.loyalty!r}")
        if self.end < self.start:
            raise ValueError("the period ends before it starts")
        if self.inactivity_days < 1:
            raise ValueError("the inactivity window must be at least one day")

    # -- SQL ----------------------------------------------------------------------
    def customer_condition(self, column: str = "customer_key") -> tuple[str, dict[str, Any]]:
        """SQL condition on a customer key column for the region and loyalty filters.

        ``column`` is code-supplied (never user input). Returns ``("TRUE", {})`` when
        neither filter is set.
        """
        conds: list[str] = []
        params: dict[str, Any] = {}
        if self.regions:
            names = _bind(params, "region", self.regions)
            conds.append(
                f"{column} IN (SELECT customer_key FROM customers WHERE region IN ({names}))"
            )
        if self.loyalty == "member":
            conds.append(f"{column} IN (SELECT customer_key FROM loyalty_members)")
        elif self.loyalty == "non_member":
            conds.append(f"{column} NOT IN (SELECT customer_key FROM loyalty_members)")
        return (" AND ".join(conds) or "TRUE"), params

    def channel_condition(self, column: str = "channel") -> tuple[str, dict[str, Any]]:
        if not self.channels:
            return "TRUE", {}
        params: dict[str, Any] = {}
        return f"{column} IN ({_bind(params, 'channel', self.channels)})", params

    def orders_sql(self, extra: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
        """The filtered base query: completed orders over all history.

        Columns: customer_key, ordered_at, revenue, margin (gross margin, or revenue
        times ``$margin_rate`` where the order carries none; the caller binds
        ``margin_rate``), and any ``extra`` order columns (from :data:`ORDER_EXTRAS`).
        Dates are not bounded here: metrics need the history before the period (first
        orders, the customer base), and bound it themselves.
        """
        unknown = set(extra) - set(ORDER_EXTRAS)
        if unknown:
            raise ValueError(f"unknown order columns: {sorted(unknown)}")
        cust, p1 = self.customer_condition("customer_key")
        chan, p2 = self.channel_condition("channel")
        sql = (
            "SELECT customer_key, ordered_at, revenue, "
            "coalesce(gross_margin, revenue * $margin_rate) AS margin"
            + "".join(f", {c}" for c in extra) + " "
            "FROM orders WHERE status = 'completed' "
            f"AND {chan} AND {cust}"
        )
        return sql, {**p1, **p2}

    def responses_sql(self) -> tuple[str, dict[str, Any]]:
        """The filtered survey responses (all history). Anonymous responses drop out
        only when a customer filter (region, loyalty) is set."""
        chan, p1 = self.channel_condition("channel")
        cust, p2 = self.customer_condition("customer_key")
        sql = (
            "SELECT response_id, customer_key, responded_at, nps, csat, ces "
            f"FROM survey_responses WHERE {chan} AND {cust}"
        )
        return sql, {**p1, **p2}


def _bind(params: dict[str, Any], prefix: str, values: tuple[str, ...]) -> str:
    names = []
    for i, v in enumerate(values):
        params[f"{prefix}{i}"] = v
        names.append(f"${prefix}{i}")
    return ", ".join(names)


# ---------------------------------------------------------------------------------
# The view state: what the sidebar holds, as it travels in the URL.
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViewState:
    """Everything a shared link reproduces, besides the page itself.

    Serialised to and from URL query parameters with stable codes (never translated
    labels), so a link opens the same view in either language.
    """

    period: str = DEFAULT_PERIOD
    start: date | None = None  # custom period only
    end: date | None = None
    comparison: str = DEFAULT_COMPARISON
    channels: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    loyalty: str = "all"
    lang: str = "vi"
    currency: str = "VND"
    fx: float = 26_000.0  # VND per USD, used when currency == "USD"
    inactivity_days: int = DEFAULT_INACTIVITY_DAYS

    def to_query_params(self) -> dict[str, str]:
        """Only the values that differ from the defaults, as strings."""
        out: dict[str, str] = {}
        d = ViewState()
        if self.period != d.period:
            out["period"] = self.period
        if self.period == "custom" and self.start and self.end:
            out["from"] = self.start.isoformat()
            out["to"] = self.end.isoformat()
        if self.comparison != d.comparison:
            out["cmp"] = self.comparison
        if self.channels:
            out["channel"] = ",".join(self.channels)
        if self.regions:
            out["region"] = ",".join(self.regions)
        if self.loyalty != d.loyalty:
            out["loyalty"] = self.loyalty
        if self.lang != d.lang:
            out["lang"] = self.lang
        if self.currency != d.currency:
            out["cur"] = self.currency
        if self.currency == "USD" and self.fx != d.fx:
            out["fx"] = f"{self.fx:g}"
        if self.inactivity_days != d.inactivity_days:
            out["window"] = str(self.inactivity_days)
        return out

    @classmethod
    def from_query_params(cls, params: Mapping[str, str | list[str]]) -> ViewState:
        """Parse URL parameters; anything invalid falls back to its default."""

        def get(name: str) -> str | None:
            v = params.get(name)
            if isinstance(v, list):
                v = v[-1] if v else None
            return None if v is None else str(v).strip()

        def pick(name: str, allowed: tuple[str, ...], default: str) -> str:
            v = get(name)
            return v if v in allowed else default

        def day(name: str) -> date | None:
            try:
                return date.fromisoformat(get(name) or "")
            except ValueError:
                return None

        def many(name: str) -> tuple[str, ...]:
            raw = get(name) or ""
            return tuple(dict.fromkeys(x.strip() for x in raw.split(",") if x.strip()))

        d = cls()
        period = pick("period", PERIODS, d.period)
        start, end = day("from"), day("to")
        if period == "custom" and not (start and end):
            period = d.period
        if period != "custom":
            start = end = None
        try:
            fx = float(get("fx") or d.fx)
            if not 0 < fx < 1e9:
                fx = d.fx
        except ValueError:
            fx = d.fx
        try:
            window = int(get("window") or d.inactivity_days)
            if not 1 <= window <= 3650:
                window = d.inactivity_days
        except ValueError:
            window = d.inactivity_days
        return cls(
            period=period,
            start=start,
            end=end,
            comparison=pick("cmp", COMPARISONS, d.comparison),
            channels=tuple(c for c in many("channel") if c in CHANNELS),
            regions=many("region")[:50],
            loyalty=pick("loyalty", LOYALTY, d.loyalty),
            lang=pick("lang", ("vi", "en"), d.lang),
            currency=pick("cur", ("VND", "USD"), d.currency),
            fx=fx,
            inactivity_days=window,
        )

    def filters(self, as_of: date, first: date | None) -> Filters:
        custom = (self.start, self.end) if self.start and self.end else None
        start, end = resolve_period(self.period, as_of, first=first, custom=custom)
        return Filters(
            start=start,
            end=end,
            channels=self.channels,
            regions=self.regions,
            loyalty=self.loyalty,
            inactivity_days=self.inactivity_days,
        )
