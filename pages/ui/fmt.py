"""Numbers, money and dates the way each language writes them.

vi: ``1.234.567 ₫``, ``12,3%``, ``23/11/2026``; en: ``1,234,567 ₫``, ``12.3%``,
``23 Nov 2026``. Money is stored in the data currency (VND); showing it in US dollars
divides by the rate the user set. No Streamlit here: chart builders use it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def number(x: float | None, lang: str, decimals: int = 0) -> str:
    """``1234567.8`` -> vi ``1.234.568`` / en ``1,234,568`` (with ``decimals``)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    s = f"{x:,.{decimals}f}"
    if lang == "vi":
        s = s.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return s.replace("-", "−") if s.startswith("-") else s


def percent(x: float | None, lang: str, decimals: int = 1) -> str:
    """A fraction as a percentage: ``0.1234`` -> ``12,3%`` / ``12.3%``."""
    return "—" if x is None else number(100 * x, lang, decimals) + "%"


def points(x: float | None, lang: str, decimals: int = 1, *, signed: bool = True) -> str:
    """A difference of two rates, in percentage points: ``+2,1 đ.p.`` / ``+2.1 pts``."""
    if x is None:
        return "—"
    body = number(abs(100 * x), lang, decimals)
    sign = ("+" if x >= 0 else "-") if signed else ""
    return f"{sign}{body} {'đ.p.' if lang == 'vi' else 'pts'}"


@dataclass(frozen=True)
class Money:
    """How to show an amount held in VND: in VND, or in USD at ``fx`` VND per dollar."""

    lang: str = "vi"
    currency: str = "VND"
    fx: float = 26_000.0

    def convert(self, vnd: float) -> float:
        return vnd / self.fx if self.currency == "USD" else vnd

    @property
    def symbol(self) -> str:
        return "US$" if self.currency == "USD" else "₫"

    def full(self, vnd: float | None) -> str:
        """``1.234.567 ₫`` / ``1,234,567 ₫``; ``$1,234.57`` / ``1.234,57 US$``."""
        if vnd is None:
            return "—"
        v = self.convert(vnd)
        if self.currency == "USD":
            body = number(v, self.lang, 2)
            return f"{body} US$" if self.lang == "vi" else ("−$" + body[1:] if body.startswith("−") else f"${body}")
        return f"{number(v, self.lang)} ₫"

    def short(self, vnd: float | None) -> str:
        """Compact from a million up: vi ``12,35 tỷ ₫`` / ``850,0 tr ₫``; en ``₫12.35B`` /
        ``$1.20M``. Smaller amounts are written in full (``881.700 ₫``)."""
        if vnd is None:
            return "—"
        v = self.convert(vnd)
        a = abs(v)
        if self.lang == "vi":
            steps = [(1e9, "tỷ"), (1e6, "tr")]
        else:
            steps = [(1e9, "B"), (1e6, "M")]
        for size, word in steps:
            if a >= size:
                body = number(v / size, self.lang, 2 if a < 100 * size else 1)
                break
        else:
            return self.full(vnd)
        if self.lang == "vi":
            return f"{body} {word} {self.symbol}"
        sign, body = ("−", body[1:]) if body.startswith("−") else ("", body)
        return f"{sign}{'$' if self.currency == 'USD' else '₫'}{body}{word}"


def day(d: date | None, lang: str) -> str:
    """vi ``23/11/2026``; en ``23 Nov 2026``."""
    if d is None:
        return "—"
    return d.strftime("%d/%m/%Y") if lang == "vi" else f"{d.day} {EN_MONTHS[d.month - 1]} {d.year}"


def month(d: date, lang: str) -> str:
    """vi ``11/2026``; en ``Nov 2026``."""
    return f"{d.month:02d}/{d.year}" if lang == "vi" else f"{EN_MONTHS[d.month - 1]} {d.year}"


def plotly_separators(lang: str) -> str:
    """Plotly's ``layout.separators``: decimal mark then thousands mark."""
    return ",." if lang == "vi" else ".,"


def kpi_value(unit: str, value: float | None, lang: str, money: Money) -> str:
    """How a KPI card shows its value, by the catalogue's unit."""
    if value is None:
        return "—"
    if unit == "money":
        return money.short(value)
    if unit == "count":
        return number(value, lang)
    if unit == "rate":
        return percent(value, lang)
    if unit == "score":
        return number(value, lang, 1)
    return number(value, lang, 2)  # ratio, scale


def kpi_change(unit: str, value: float | None, previous: float | None, lang: str) -> str | None:
    """The change against the comparison window: relative for amounts and counts
    (``+12,3%``), in points for rates (``+2,1 đ.p.``), absolute for scores."""
    if value is None or previous is None:
        return None
    if unit == "rate":
        return points(value - previous, lang)
    if unit in ("score", "scale", "ratio"):
        diff = value - previous
        sign = "+" if diff >= 0 else "-"
        return f"{sign}{number(abs(diff), lang, 1 if unit == 'score' else 2)}"
    if previous == 0:
        return None
    rel = (value - previous) / abs(previous)
    return f"{'+' if rel >= 0 else '-'}{number(abs(100 * rel), lang, 1)}%"
