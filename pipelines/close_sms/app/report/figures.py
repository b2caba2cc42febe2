"""The report's time panels: a bar or line per UTC day (or week), plotly figures from rows.

Each function draws into the empty figure it is given and returns it; plotly is imported only
for type checking, so importing the report needs no [cli] extra.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from .queries import NO_REPLY

if TYPE_CHECKING:
    import plotly.graph_objects as go

# Fewer days than this get a tick per day; more days of senders are drawn per week.
SHORT_HISTORY_DAYS = 7
LONG_HISTORY_DAYS = 31
DAY_MS = 86_400_000
# The sender kinds of sms_ai_vs_human, with their names and colours in the report.
SENDER_KINDS = {
    "ai_agent": ("AI agent", "#9467bd"),
    "sequence": ("sequence", "#ff7f0e"),
    "rep": ("rep", "#1f77b4"),
}
# The sender kinds as a title names them.
SENDER_NAMES = {"ai_agent": "Close's AI agent", "sequence": "sequences", "rep": "reps"}


# Up to this count on an axis, a tick per unit: plotly's own ticks would go to 0.5.
SMALL_COUNT = 10
# The units of a duration axis, the largest that keeps its ticks above 2 of them.
DURATION_UNITS = (("days", 86_400.0), ("hours", 3_600.0), ("minutes", 60.0), ("seconds", 1.0))


def count_axis(title: str, counts: list[Any]) -> dict[str, Any]:
    """A y axis of whole things (SMS, runs, opt-outs): no 1.5 ticks, and from zero."""
    largest = max((count for count in counts if count is not None), default=0)
    return {
        "title": title,
        "rangemode": "tozero",
        "tickformat": ",d",
        "dtick": 1 if largest <= SMALL_COUNT else None,
    }


def duration_unit(seconds: list[float | None]) -> tuple[str, float]:
    """The unit to draw these durations in, and its length in seconds: 0.008 minutes is 0.5 s."""
    largest = max((value for value in seconds if value is not None), default=0.0)
    for name, length in DURATION_UNITS:
        if largest >= 2 * length:
            return name, length
    return DURATION_UNITS[-1]


def _day_axis(title: str, days: list[str]) -> dict[str, Any]:
    """A date x axis; a few days get one tick each, where plotly would tick hours."""
    axis: dict[str, Any] = {"title": title, "type": "date"}
    if days and len(set(days)) < SHORT_HISTORY_DAYS:
        first, last = dt.date.fromisoformat(min(days)), dt.date.fromisoformat(max(days))
        padding = dt.timedelta(days=1)
        axis |= {
            "dtick": DAY_MS,
            "tickformat": "%b %-d, %Y",
            "range": [(first - padding).isoformat(), (last + padding).isoformat()],
        }
    return axis


# The counts of the opt-out panel's rows, which add up over days.
_OPT_OUT_COUNTS = ("opt_out_count", "texted_after_count", "refused_after_count", "sent_after_count")


def _per_week(
    rows: list[dict[str, Any]], day: str, counts: tuple[str, ...]
) -> list[dict[str, Any]]:
    """`rows` of one day each, their `counts` summed per week (keyed by its Monday)."""
    weeks: dict[str, dict[str, Any]] = {}
    for row in rows:
        date = dt.date.fromisoformat(row[day])
        monday = (date - dt.timedelta(days=date.weekday())).isoformat()
        week = weeks.setdefault(monday, {day: monday} | dict.fromkeys(counts, 0))
        for key in counts:
            week[key] += row[key]
    return sorted(weeks.values(), key=lambda week: week[day])


# The counts of sms_ai_vs_human that add up over days.
_ADDITIVE = ("outbound_count", "sent_count", "failed_count", "replied_count", "total_cost_cents")


def _weekly(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """sms_ai_vs_human's days summed per week (from Monday) and sender kind.

    Daily reply rates of a long history are too noisy to read; a median does not add up, so
    weeks have none.
    """
    weeks = []
    for kind in sorted({row["sender_kind"] for row in rows}):
        series = [row for row in rows if row["sender_kind"] == kind]
        for week in _per_week(series, "message_date", _ADDITIVE):
            sent, failed = week["sent_count"], week["failed_count"]
            week |= {"sender_kind": kind, "median_reply_seconds": None}
            week["reply_rate"] = week["replied_count"] / sent if sent else None
            week["failure_rate"] = _failure_rate(sent, failed)
            weeks.append(week)
    return sorted(weeks, key=lambda week: (week["message_date"], week["sender_kind"]))


def _failure_rate(sent: int, failed: int) -> float | None:
    """Failed over sent + failed, as the views define it; None without either."""
    return failed / (sent + failed) if sent + failed else None


def daily_volume_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    """SMS per UTC day, stacked by direction."""
    for direction in sorted({str(row["direction"]) for row in rows}):
        series = [row for row in rows if str(row["direction"]) == direction]
        figure.add_bar(
            name=direction,
            x=[row["message_date"] for row in series],
            y=[row["message_count"] for row in series],
        )
    figure.update_layout(
        title="Daily SMS volume by direction (UTC days)",
        barmode="stack",
        xaxis=_day_axis("day", [row["message_date"] for row in rows]),
        yaxis=count_axis("SMS", _stacks(rows, "message_count")),
    )
    return figure


def _stacks(rows: list[dict[str, Any]], count: str = "outbound_count") -> list[int]:
    """The height of each day's stack of bars: `count` summed per `message_date`."""
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["message_date"]] = totals.get(row["message_date"], 0) + row[count]
    return list(totals.values())


def delivery_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    """The outbound failure rate per day, with the day's top error on hover.

    Over a long history it is drawn per week: a rate of a day's dozen sends jumps from 0 to
    40% and back, and reads as noise. A top error does not add up, so weeks have none.
    """
    hover = "%{x}<br>failure rate %{y:.1%}<br>%{customdata[0]} failed, %{customdata[1]} sent"
    period = "day"
    if len(rows) > LONG_HISTORY_DAYS:
        period = "week"
        rows = _per_week(rows, "message_date", ("sent_count", "failed_count"))
        for week in rows:
            week |= {"failure_rate": _failure_rate(week["sent_count"], week["failed_count"])}
    else:
        hover += "<br>top error: %{customdata[2]}"
    figure.add_scatter(
        name="failure rate",
        mode="lines+markers",
        x=[row["message_date"] for row in rows],
        y=[row["failure_rate"] for row in rows],
        customdata=[
            [row["failed_count"], row["sent_count"], row.get("top_error_message") or ""]
            for row in rows
        ],
        hovertemplate=hover + "<extra></extra>",
    )
    figure.update_layout(
        title=f"Outbound delivery failure rate per {period} (failed / (sent + failed))",
        xaxis=_day_axis(
            "day" if period == "day" else "week (from Monday)",
            [row["message_date"] for row in rows],
        ),
        yaxis={"title": "failure rate", "tickformat": ".0%", "rangemode": "tozero"},
    )
    return figure


def response_figure(
    figure: go.Figure, rows: list[dict[str, Any]], summary: dict[str, Any]
) -> go.Figure:
    """Inbound SMS by the time to their first reply, median and 90th percentile in the title."""
    figure.add_bar(
        x=[row["bucket"] for row in rows],
        y=[row["inbound_count"] for row in rows],
        marker_color=["#bbbbbb" if row["bucket"] == NO_REPLY else "#1f77b4" for row in rows],
    )
    title = "Time to first reply after an inbound SMS"
    if summary.get("median_seconds") is not None:
        title += (
            f" (median {duration(summary['median_seconds'])},"
            f" 90th percentile {duration(summary['p90_seconds'])})"
        )
    figure.update_layout(title=title, xaxis_title="first reply within", yaxis_title="inbound SMS")
    return figure


def opt_outs_figure(
    figure: go.Figure, rows: list[dict[str, Any]], texts: dict[str, Any]
) -> go.Figure:
    """Opt-outs per day (per week over a long history), and those after which the phone was
    texted: delivered, or refused by the carrier (a phone may be in both)."""
    period = "day"
    if len(rows) > LONG_HISTORY_DAYS:
        period = "week"
        rows = _per_week(rows, "opt_out_date", _OPT_OUT_COUNTS)
    days = [row["opt_out_date"] for row in rows]
    for key, name, color in (
        ("opt_out_count", "opt-outs", "#7f7f7f"),
        ("texted_after_count", "texted after it, delivered", "#d62728"),
        ("refused_after_count", "texted after it, refused by the carrier", "#ff9896"),
    ):
        figure.add_bar(name=name, x=days, y=[row[key] for row in rows], marker_color=color)
    title = f"Opt-outs per {period} (STOP, OPT OUT, REVOKE, ...), and the phones texted after them"
    if texts["inbound_count"] and not texts["readable_count"]:
        title = "Opt-outs: none can be found, the SMS text is hashed or dropped (sms_text)"
    figure.update_layout(
        title=title,
        # Side by side: the texted ones overlap each other, so none may hide another.
        barmode="group",
        xaxis=_day_axis(
            "day the phone opted out" if period == "day" else "week it opted out (from Monday)",
            days,
        ),
        yaxis=count_axis("opt-outs", [row["opt_out_count"] for row in rows]),
    )
    return figure


def senders_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    """Outbound SMS and reply rate per sender kind, by day, or by week over a long history."""
    weekly = len({row["message_date"] for row in rows}) > LONG_HISTORY_DAYS
    period = "week (from Monday)" if weekly else "day"
    if weekly:
        rows = _weekly(rows)
    drawn = []
    for kind in SENDER_KINDS:
        series = [row for row in rows if row["sender_kind"] == kind]
        if series:
            _add_sender(figure, kind, series)
            drawn.append(SENDER_NAMES[kind])
    missing = [name for kind, name in SENDER_NAMES.items() if name not in drawn]
    title = f"Outbound SMS by sender: {_listed(drawn, 'and') or 'none yet'}"
    if drawn and missing:
        title += f" (none by {_listed(missing, 'or')})"
    figure.update_layout(
        title=f"{title}; bars: SMS, lines: reply rate",
        barmode="stack",
        xaxis=_day_axis(period, [row["message_date"] for row in rows]),
        yaxis=count_axis(f"outbound SMS per {period.split()[0]}", _stacks(rows)),
        yaxis2={
            "title": "reply rate",
            "overlaying": "y",
            "side": "right",
            "tickformat": ".0%",
            "range": [0, 1.05],
            # Its own round ticks (0%, 20%, ...), not the SMS axis's lines read as rates.
            "tickmode": "auto",
            "showgrid": False,
        },
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def _listed(names: list[str], last: str) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else "".join(names)


def _add_sender(figure: go.Figure, kind: str, series: list[dict[str, Any]]) -> None:
    """One sender kind's SMS as bars and its reply rate as a line on the right axis."""
    name, color = SENDER_KINDS[kind]
    days = [row["message_date"] for row in series]
    figure.add_bar(
        name=f"{name}: SMS sent",
        legendgroup=kind,
        x=days,
        y=[row["outbound_count"] for row in series],
        marker_color=color,
        opacity=0.6,
    )
    figure.add_scatter(
        name=f"{name}: reply rate",
        legendgroup=kind,
        mode="lines+markers",
        yaxis="y2",
        x=days,
        y=[row["reply_rate"] for row in series],
        line={"color": color},
        customdata=[
            [
                ""
                if row["median_reply_seconds"] is None
                else duration(row["median_reply_seconds"]),
                row["failure_rate"] or 0,
                row["total_cost_cents"],
            ]
            for row in series
        ],
        hovertemplate=(
            f"{name} %{{x}}<br>reply rate %{{y:.0%}}<br>median reply %{{customdata[0]}}"
            "<br>failure rate %{customdata[1]:.0%}<br>cost %{customdata[2]} cents"
            "<extra></extra>"
        ),
    )


def sync_health_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    """Sync runs per day by outcome, and the day's longest lag."""
    days = [row["run_date"] for row in rows]
    for key, name, color in (
        ("successful_runs", "succeeded", "#2ca02c"),
        ("failed_runs", "failed", "#d62728"),
        ("other_runs", "interrupted or locked out", "#bbbbbb"),
    ):
        figure.add_bar(name=name, x=days, y=[row[key] for row in rows], marker_color=color)
    lags = [row["max_lag_seconds"] for row in rows]
    unit, length = duration_unit(lags)
    figure.add_scatter(
        name=f"max lag ({unit})",
        mode="lines+markers",
        yaxis="y2",
        x=days,
        y=[None if lag is None else lag / length for lag in lags],
        # Black with a white ring: seen over any bar it sits on.
        marker={"color": "black", "size": 9, "line": {"color": "white", "width": 2}},
        line={"color": "black"},
        customdata=[
            [duration(lag or 0), row["last_error"] or ""]
            for lag, row in zip(lags, rows, strict=True)
        ],
        hovertemplate="%{x}<br>max lag %{customdata[0]}<br>last error: %{customdata[1]}"
        "<extra></extra>",
    )
    runs = [row["successful_runs"] + row["failed_runs"] + row["other_runs"] for row in rows]
    figure.update_layout(
        title="Sync health: runs of close-sms sync per day, and the longest lag",
        barmode="stack",
        xaxis=_day_axis("day", days),
        yaxis=count_axis("runs", runs),
        yaxis2={
            "title": f"max lag ({unit})",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            # Its own round ticks (0, 0.2, 0.4 s), not the runs' lines read in seconds (0.503).
            "tickmode": "auto",
            # Its own grid would cross the runs' grid lines at other heights.
            "showgrid": False,
        },
        # Below the plot: at the right it covered the lag axis and its title.
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def duration(seconds: float) -> str:
    """Seconds as people read them: seconds, minutes, hours or days."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
