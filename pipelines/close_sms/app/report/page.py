"""The report's HTML page: every panel with the rows it was drawn from, written to a file."""

from __future__ import annotations

import datetime as dt
import html
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlt.destinations.sql_client import SqlClientBase

from ...errors import ConfigError, needs_cli_extra
from .figures import (
    DAY_MS,
    daily_volume_figure,
    delivery_figure,
    opt_outs_figure,
    response_figure,
    senders_figure,
    sync_health_figure,
)
from .queries import check_views, collect
from .ranked import numbers_figure, templates_figure, users_figure

if TYPE_CHECKING:
    import plotly.graph_objects as go


def write_report(sql: SqlClientBase[Any], out: Path) -> Path:
    """Write the HTML report of the dataset behind the open sql client to `out`; returns its path.

    Nothing is written to the database: only SELECTs run.
    """
    with needs_cli_extra("close-sms report"):
        # Imported here: the bare package (no [cli] extra) has no plotly.
        from plotly.graph_objects import Figure
    check_views(sql)
    data = collect(sql)
    sections = [
        _section(name, figure, payload, with_plotlyjs=index == 0)
        for index, (name, figure, payload) in enumerate(_charts(Figure, data))
    ]
    page = _page(data["overview"], _database_name(sql), sections)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--out: cannot write {out} ({exc.strerror or exc})") from None
    return out


def _charts(figure: type[go.Figure], data: dict[str, Any]) -> list[tuple[str, go.Figure, Any]]:
    """Each panel in page order: its name, its figure and the rows embedded beside it."""
    return [
        ("daily_volume", daily_volume_figure(figure(), data["daily_volume"]), data["daily_volume"]),
        ("delivery", delivery_figure(figure(), data["delivery"]), data["delivery"]),
        (
            "response_times",
            response_figure(figure(), data["response_times"], data["response_summary"]),
            {"buckets": data["response_times"], "summary": data["response_summary"]},
        ),
        ("busiest_users", users_figure(figure(), data["busiest_users"]), data["busiest_users"]),
        (
            "opt_outs",
            opt_outs_figure(figure(), data["opt_outs"], data["readable_texts"]),
            {"days": data["opt_outs"], "texts": data["readable_texts"]},
        ),
        ("senders", senders_figure(figure(), data["senders"]), data["senders"]),
        ("templates", templates_figure(figure(), data["templates"]), data["templates"]),
        ("numbers", numbers_figure(figure(), data["numbers"]), data["numbers"]),
        ("sync_health", sync_health_figure(figure(), data["sync_health"]), data["sync_health"]),
    ]


def _section(name: str, figure: go.Figure, payload: Any, with_plotlyjs: bool) -> str:
    """A panel's HTML: the chart, then its rows as JSON."""
    _finish(figure)
    chart_html = figure.to_html(
        full_html=False,
        # plotly.js itself (~4.7 MB) once, inline: the page needs no network.
        include_plotlyjs=with_plotlyjs,
        div_id=f"chart-{name}",
        config={"displaylogo": False, "responsive": True},
    )
    return (
        f'<section class="chart" id="{name}">\n{chart_html}\n'
        f"{_json_script(f'data-{name}', payload)}\n</section>"
    )


def _finish(figure: go.Figure) -> None:
    """What every panel shares: its look, day-wide bars, and a word when it has no data."""
    figure.update_layout(template="plotly_white", height=420)
    if figure.layout.xaxis.type == "date":
        # A bar spans most of its day (or week): alone, plotly would draw it a millisecond wide.
        bars = [trace for trace in figure.data if trace.type == "bar"]
        group = max(len(bars), 1) if figure.layout.barmode == "group" else 1
        figure.update_traces(width=0.8 * _bar_period(bars) / group, selector={"type": "bar"})
    if not any(value for trace in figure.data for value in trace.y or ()):
        # Axes without data would show a made-up range (January 2000, -1 to 6).
        figure.update_xaxes(visible=False)
        figure.update_yaxes(visible=False)
        figure.add_annotation(
            text="No data yet", showarrow=False, xref="paper", yref="paper", font_size=16
        )


def _bar_period(bars: list[Any]) -> float:
    """The shortest step between the bars' dates in ms: a day, or a week when drawn per week."""
    dates = sorted({dt.date.fromisoformat(str(x)[:10]) for trace in bars for x in trace.x or ()})
    steps = [(later - earlier).days for earlier, later in itertools.pairwise(dates)]
    return min(steps, default=1) * DAY_MS


def _page(overview: dict[str, Any], database_name: str, sections: list[str]) -> str:
    """The whole page: a line on the data, the panels, and the overview's row as JSON."""
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = (
        f"{overview['sms_count']:,} SMS from {overview['first_date']} to {overview['last_date']}"
        if overview["sms_count"]
        else "No SMS in this database yet."
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Close SMS report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
section.chart {{ margin-bottom: 2rem; }}
p.meta {{ color: #666; }}
</style>
</head>
<body>
<h1>Close SMS report</h1>
<p class="meta">{html.escape(summary)} &middot; database {html.escape(database_name)}
&middot; generated {generated}. Days are UTC.</p>
{chr(10).join(sections)}
{_json_script("data-overview", overview)}
</body>
</html>
"""


def _json_script(element_id: str, payload: Any) -> str:
    # "</" would close the script element early; JSON allows the escaped form.
    text = json.dumps(payload, default=str, sort_keys=True).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _database_name(sql: SqlClientBase[Any]) -> str:
    # DuckDB's client has no database name: the database is its file.
    return sql.database_name or Path(sql.credentials.database).name
