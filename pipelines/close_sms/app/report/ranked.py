"""The report's ranked panels: users, templates and local numbers as horizontal bars.

The largest is on top; templates and numbers carry a rate on a second axis above the bars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .figures import duration
from .queries import TOP_NUMBERS, TOP_TEMPLATES, TOP_USERS

if TYPE_CHECKING:
    import plotly.graph_objects as go


# The rate axis's range: a little room left of 0%, so a marker there is not cut by the axis.
RATE_RANGE = (-0.03, 1.05)
# Room right of the longest bar, as a share of it.
BAR_ROOM = 1.05


def top(limit: int, shown: int) -> str:
    """A title's count: `all 4` when the panel shows fewer than its limit, else `top 10` (an
    empty panel says "No data yet" instead)."""
    return f"all {shown}" if 0 < shown < limit else f"top {limit}"


def users_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    """The busiest users: SMS sent and received."""
    labels = [row["user_name"] or row["user_id"] for row in rows]
    for key, name in (("sent_count", "sent"), ("received_count", "received")):
        figure.add_bar(name=name, orientation="h", y=labels, x=[row[key] for row in rows])
    figure.update_layout(
        title=f"Busiest users ({top(TOP_USERS, len(rows))}, SMS sent + received)",
        barmode="stack",
        yaxis={"autorange": "reversed"},
        xaxis={"title": "SMS", "tickformat": ",d", "rangemode": "tozero"},
        legend={"traceorder": "normal"},
    )
    return figure


def _rate_axis(title: str) -> dict[str, Any]:
    """A second x axis on top, for a rate drawn over counts."""
    return {
        "title": title,
        "overlaying": "x",
        "side": "top",
        "tickformat": ".0%",
        "range": list(RATE_RANGE),
        "dtick": 0.25,
        "showgrid": False,
    }


def _count_axis(title: str, longest: float) -> dict[str, Any]:
    """The counts' x axis, its 0 where the rate axis has 0%: two zeros apart read as a shift."""
    right = max(longest, 1) * BAR_ROOM
    low, high = RATE_RANGE
    left = right * low / high
    return {"title": title, "range": [left, right], "tickformat": ",d"}


def templates_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    """The most used templates: sent and failed SMS, and their reply rate."""
    # A template the context lacks (or with the context off) is shown by its id.
    labels = [row["template_name"] or row["template_id"] for row in rows]
    for key, name, color in (
        ("sent_count", "sent", "#1f77b4"),
        ("failed_count", "failed", "#d62728"),
    ):
        figure.add_bar(
            name=name,
            orientation="h",
            y=labels,
            x=[row[key] for row in rows],
            marker_color=color,
        )
    figure.add_scatter(
        name="reply rate",
        mode="markers",
        xaxis="x2",
        y=labels,
        x=[row["reply_rate"] for row in rows],
        marker={"color": "#2ca02c", "size": 11, "symbol": "diamond"},
        customdata=[
            [
                ""
                if row["median_reply_seconds"] is None
                else duration(row["median_reply_seconds"]),
                row["failure_rate"] or 0,
            ]
            for row in rows
        ],
        hovertemplate=(
            "%{y}<br>reply rate %{x:.0%}<br>median reply %{customdata[0]}"
            "<br>failure rate %{customdata[1]:.0%}<extra></extra>"
        ),
    )
    return _ranked_bars_layout(
        figure,
        f"SMS templates ({top(TOP_TEMPLATES, len(rows))} by outbound SMS): sent, failed and "
        "reply rate",
        _count_axis(
            "outbound SMS", max((r["sent_count"] + r["failed_count"] for r in rows), default=0)
        ),
        "reply rate",
    )


def _number_label(row: dict[str, Any]) -> str:
    """A local number as people know it: its label and owner, then the number itself."""
    named = " / ".join(part for part in (row["local_phone_label"], row["owner_name"]) if part)
    number = row["local_phone"] or "(no number)"
    return f"{named} ({number})" if named else number


def numbers_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    """The busiest local numbers: SMS sent, failed and received, and their failure rate."""
    labels = [_number_label(row) for row in rows]
    for key, name, color in (
        ("sent_count", "sent", "#1f77b4"),
        ("failed_count", "failed", "#d62728"),
        ("inbound_count", "received", "#7f7f7f"),
    ):
        figure.add_bar(
            name=name, orientation="h", y=labels, x=[row[key] for row in rows], marker_color=color
        )
    figure.add_scatter(
        name="failure rate",
        mode="markers",
        xaxis="x2",
        y=labels,
        x=[row["failure_rate"] for row in rows],
        marker={"color": "#000000", "size": 10, "symbol": "x"},
        customdata=[[row["top_error_message"] or "", row["top_error_count"] or 0] for row in rows],
        hovertemplate=(
            "%{y}<br>failure rate %{x:.1%}<br>top error: %{customdata[0]}"
            " (%{customdata[1]})<extra></extra>"
        ),
    )
    longest = max(
        (r["sent_count"] + r["failed_count"] + r["inbound_count"] for r in rows), default=0
    )
    return _ranked_bars_layout(
        figure,
        f"Local numbers ({top(TOP_NUMBERS, len(rows))} by SMS): volume and delivery failure rate",
        _count_axis("SMS", longest),
        "failure rate (failed / (sent + failed))",
    )


def _ranked_bars_layout(
    figure: go.Figure, title: str, count_axis: dict[str, Any], rate_title: str
) -> go.Figure:
    """Stacked horizontal bars, the largest on top, with a rate axis above them."""
    figure.update_layout(
        title=title,
        barmode="stack",
        yaxis={"autorange": "reversed"},
        xaxis=count_axis,
        xaxis2=_rate_axis(rate_title),
        # Stacked bars list their legend bottom-up by default; in trace order it reads as drawn.
        legend={"orientation": "h", "y": -0.2, "traceorder": "normal"},
        # Room for the rate axis on top, under the title.
        margin={"t": 110},
    )
    return figure
