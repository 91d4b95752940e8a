"""Figure builders: a frame in, a Plotly figure out. No Streamlit here, so the
figures are tested as data (traces, values, titles)."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from pages.ui import fmt
from pages.ui.i18n import t

NEW_COLOUR = "#F28E2B"
RETURNING_COLOUR = "#1F6FB2"
SHARE_COLOUR = "#2E2E2E"


def _layout(fig: go.Figure, lang: str, title: str) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left"},
        separators=fmt.plotly_separators(lang),
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        hovermode="x unified",
        template="plotly_white",
        height=420,
    )
    return fig


def new_vs_returning(monthly: pl.DataFrame, lang: str, money: fmt.Money) -> go.Figure:
    """Stacked monthly revenue from new and returning customers, with the returning
    share as a line on a second axis. A month still in progress is drawn paler and
    labelled, never passed off as a full month."""
    months = [fmt.month(d, lang) for d in monthly["month"]]
    complete = monthly["complete"].to_list()
    opacity = [1.0 if c else 0.45 for c in complete]
    new = [money.convert(v) for v in monthly["revenue_new"]]
    ret = [money.convert(v) for v in monthly["revenue_returning"]]
    share = [None if v is None else 100 * v for v in monthly["returning_revenue_share"]]
    # Bars in millions when amounts are large, so the axis reads "600" under "₫ million".
    scale = 1e6 if max(new + ret + [0.0]) >= 1e7 else 1.0
    unit = t("chart.million", lang, unit=money.symbol) if scale > 1 else money.symbol
    fig = go.Figure()
    for name, values, colour in (("ov.returning", ret, RETURNING_COLOUR), ("ov.new", new, NEW_COLOUR)):
        fig.add_bar(
            x=months, y=[v / scale for v in values], name=t(name, lang), customdata=values,
            marker={"color": colour, "opacity": opacity},
            hovertemplate=f"%{{customdata:,.0f}} {money.symbol}<extra>{t(name, lang)}</extra>",
        )
    fig.add_scatter(
        x=months, y=share, name=t("ov.share", lang), yaxis="y2", mode="lines+markers",
        line={"color": SHARE_COLOUR, "width": 2}, hovertemplate="%{y:.1f}%<extra></extra>",
    )
    for x, c in zip(months, complete):
        if not c:
            fig.add_annotation(x=x, y=1.0, yref="paper", text=t("ov.partial", lang), showarrow=False,
                               font={"size": 11, "color": "#666"})
    fig.update_layout(
        barmode="stack",
        yaxis={"title": unit, "rangemode": "tozero", "tickformat": ",.0f"},
        yaxis2={"title": t("ov.share", lang), "overlaying": "y", "side": "right", "range": [0, 100],
                "tickmode": "linear", "tick0": 0, "dtick": 20, "ticksuffix": "%", "showgrid": False},
    )
    return _layout(fig, lang, t("ov.chart_title", lang))


def reading_new_vs_returning(monthly: pl.DataFrame, lang: str) -> str | None:
    """One sentence: the returning share in the last full month, against the same
    month a year earlier when the data has it."""
    full = monthly.filter(pl.col("complete") & pl.col("returning_revenue_share").is_not_null())
    if full.height == 0:
        return None
    last = full.row(-1, named=True)
    year_before = full.filter(pl.col("month") == last["month"].replace(year=last["month"].year - 1))
    cmp = ""
    if year_before.height:
        diff = last["returning_revenue_share"] - year_before["returning_revenue_share"][0]
        key = "ov.reading_cmp_up" if diff >= 0 else "ov.reading_cmp_down"
        cmp = t(key, lang, diff=fmt.points(abs(diff), lang, signed=False))
    return t("ov.reading", lang, month=fmt.month(last["month"], lang),
             share=fmt.percent(last["returning_revenue_share"], lang), cmp=cmp)
