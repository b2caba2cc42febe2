"""`close-sms report`: one self-contained HTML page of charts over the analytics views.

Templates and local numbers are named from the context tables (views
`sms_template_performance` and `sms_numbers`); its last panel is the sync's health, from the run
ledger (view `sync_health`).

The page embeds plotly.js (no CDN), so it opens offline from a file or an e-mail. Next to
each chart, the rows it was drawn from are embedded as JSON
(`<script type="application/json" id="data-<chart>">`), so tests and curious readers can
check the numbers without parsing plotly's figure.

The queries are written in DuckDB's dialect, like the views, and translated for the
destination the sql client talks to.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlt.destinations.sql_client import SqlClientBase

from ..errors import ConfigError, needs_cli_extra
from ..source.settings import DATASET_NAME
from ..warehouse.dialect import translate
from ..warehouse.views import missing_views

if TYPE_CHECKING:
    import plotly.graph_objects as go

# The response-time buckets of the distribution chart: (label, upper bound in seconds).
RESPONSE_BUCKETS: tuple[tuple[str, float | None], ...] = (
    ("< 1 min", 60),
    ("1-5 min", 300),
    ("5-15 min", 900),
    ("15-60 min", 3600),
    ("1-4 h", 4 * 3600),
    ("4-24 h", 24 * 3600),
    ("> 1 day", None),
)
NO_REPLY = "no reply"
TOP_USERS = 10
TOP_TEMPLATES = 10
TOP_NUMBERS = 10
# Fewer days than this get a tick per day; more days of senders are drawn per week.
SHORT_HISTORY_DAYS = 7
LONG_HISTORY_DAYS = 31
DAY_MS = 86_400_000
_VIEWS_READ = (
    "sms_messages",
    "sms_daily",
    "sms_delivery",
    "sms_response_times",
    "sms_user_daily",
    "sms_opt_outs",
    "sms_ai_vs_human",
    "sms_template_performance",
    "sms_numbers",
    "sync_health",
)
# The sender kinds of sms_ai_vs_human, with their names and colours in the report.
SENDER_KINDS = {
    "ai_agent": ("AI agent", "#9467bd"),
    "sequence": ("sequence", "#ff7f0e"),
    "rep": ("rep", "#1f77b4"),
}

_DAILY_VOLUME = f"""
SELECT message_date, direction, sum(message_count) AS message_count
FROM {DATASET_NAME}.sms_daily
GROUP BY message_date, direction
ORDER BY message_date, direction
"""

_DELIVERY = f"""
SELECT message_date, outbound_count, sent_count, failed_count, failure_rate, top_error_message
FROM {DATASET_NAME}.sms_delivery
ORDER BY message_date
"""


def _response_sql() -> str:
    # Buckets are checked in order, so each WHEN only needs its upper bound.
    cases = [
        f"WHEN response_seconds < {upper} THEN '{label}'" if upper else f"ELSE '{label}'"
        for label, upper in RESPONSE_BUCKETS
    ]
    return f"""
    SELECT
        CASE WHEN response_seconds IS NULL THEN '{NO_REPLY}' {" ".join(cases)} END AS bucket,
        count(*) AS inbound_count
    FROM {DATASET_NAME}.sms_response_times
    GROUP BY bucket
    """


_RESPONSE_SUMMARY = f"""
SELECT
    count(*) AS inbound_count,
    count(response_seconds) AS replied_count,
    median(response_seconds) AS median_seconds,
    quantile_cont(response_seconds, 0.9) AS p90_seconds
FROM {DATASET_NAME}.sms_response_times
"""

# Busiest = most SMS sent plus received; SMS without a user are nobody's workload.
_BUSIEST_USERS = f"""
SELECT
    user_id,
    arg_max(user_name, message_date) AS user_name,
    sum(sent_count) AS sent_count,
    sum(received_count) AS received_count,
    sum(failed_count) AS failed_count,
    sum(sent_count) + sum(received_count) AS total_count
FROM {DATASET_NAME}.sms_user_daily
WHERE user_id IS NOT NULL
GROUP BY user_id
ORDER BY total_count DESC, user_id
LIMIT {TOP_USERS}
"""

_SYNC_HEALTH = f"""
SELECT
    run_date, runs, successful_runs, failed_runs, interrupted_runs + locked_runs AS other_runs,
    max_lag_seconds, last_success_at, last_error
FROM {DATASET_NAME}.sync_health
ORDER BY run_date
"""

_OPT_OUTS = f"""
SELECT
    CAST(opted_out_at AT TIME ZONE 'UTC' AS DATE) AS opt_out_date,
    count(*) AS opt_out_count,
    count(*) FILTER (WHERE sent_after_opt_out_count > 0) AS texted_after_count,
    CAST(sum(sent_after_opt_out_count) AS BIGINT) AS sent_after_count
FROM {DATASET_NAME}.sms_opt_outs
GROUP BY opt_out_date
ORDER BY opt_out_date
"""

# Opt-outs are read from the text: hashed (64 hex digits) or dropped (null), none can be found.
_READABLE_TEXTS = f"""
SELECT count(*) AS inbound_count,
    count(*) FILTER (WHERE text IS NOT NULL AND NOT regexp_matches(text, '^[0-9a-f]{{64}}$'))
        AS readable_count
FROM {DATASET_NAME}.sms_messages
WHERE direction = 'inbound'
"""

_SENDERS = f"""
SELECT message_date, sender_kind, outbound_count, sent_count, failed_count, replied_count, reply_rate,
    median_reply_seconds, failure_rate, total_cost_cents
FROM {DATASET_NAME}.sms_ai_vs_human
ORDER BY message_date, sender_kind
"""

_TEMPLATES = f"""
SELECT template_id, template_name, outbound_count, sent_count, failed_count, failure_rate,
    replied_count, reply_rate, median_reply_seconds
FROM {DATASET_NAME}.sms_template_performance
ORDER BY outbound_count DESC, template_id
LIMIT {TOP_TEMPLATES}
"""

# Numbers Close no longer lists, or SMS without one, are still someone's volume: kept.
_NUMBERS = f"""
SELECT local_phone, local_phone_label, owner_name, message_count, inbound_count, sent_count,
    failed_count, failure_rate, top_error_message, top_error_count
FROM {DATASET_NAME}.sms_numbers
ORDER BY message_count DESC, local_phone
LIMIT {TOP_NUMBERS}
"""

_OVERVIEW = f"""
SELECT count(*) AS sms_count, min(message_date) AS first_date, max(message_date) AS last_date
FROM {DATASET_NAME}.sms_messages
"""


def _records(sql: SqlClientBase[Any], query: str) -> list[dict[str, Any]]:
    with sql.execute_query(translate(query, sql.capabilities.sqlglot_dialect)) as cursor:
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    return [{name: _plain(value) for name, value in zip(names, row, strict=True)} for row in rows]


def _plain(value: Any) -> Any:
    # JSON-ready values: dates as ISO strings, decimals and huge ints as plain numbers.
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


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


# The counts of sms_ai_vs_human that add up over days.
_ADDITIVE = ("outbound_count", "sent_count", "failed_count", "replied_count", "total_cost_cents")


def _weekly(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """sms_ai_vs_human's days summed per week (from Monday) and sender kind.

    Daily reply rates of a long history are too noisy to read; a median does not add up, so
    weeks have none.
    """
    weeks: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        day = dt.date.fromisoformat(row["message_date"])
        monday = (day - dt.timedelta(days=day.weekday())).isoformat()
        week = weeks.setdefault(
            (monday, row["sender_kind"]),
            {
                "message_date": monday,
                "sender_kind": row["sender_kind"],
                "median_reply_seconds": None,
            }
            | dict.fromkeys(_ADDITIVE, 0),
        )
        for key in _ADDITIVE:
            week[key] += row[key]
    for week in weeks.values():
        sent, failed = week["sent_count"], week["failed_count"]
        week["reply_rate"] = week["replied_count"] / sent if sent else None
        week["failure_rate"] = failed / (sent + failed) if sent + failed else None
    return sorted(weeks.values(), key=lambda week: (week["message_date"], week["sender_kind"]))


def _daily_volume_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
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
        yaxis_title="SMS",
    )
    return figure


def _delivery_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    figure.add_scatter(
        name="failure rate",
        mode="lines+markers",
        x=[row["message_date"] for row in rows],
        y=[row["failure_rate"] for row in rows],
        customdata=[
            [row["failed_count"], row["sent_count"], row["top_error_message"] or ""] for row in rows
        ],
        hovertemplate=(
            "%{x}<br>failure rate %{y:.1%}<br>%{customdata[0]} failed, "
            "%{customdata[1]} sent<br>top error: %{customdata[2]}<extra></extra>"
        ),
    )
    figure.update_layout(
        title="Outbound delivery failure rate (failed / (sent + failed))",
        xaxis=_day_axis("day", [row["message_date"] for row in rows]),
        yaxis={"title": "failure rate", "tickformat": ".0%", "rangemode": "tozero"},
    )
    return figure


def _response_figure(
    figure: go.Figure, rows: list[dict[str, Any]], summary: dict[str, Any]
) -> go.Figure:
    figure.add_bar(
        x=[row["bucket"] for row in rows],
        y=[row["inbound_count"] for row in rows],
        marker_color=["#bbbbbb" if row["bucket"] == NO_REPLY else "#1f77b4" for row in rows],
    )
    title = "Time to first reply after an inbound SMS"
    if summary.get("median_seconds") is not None:
        title += (
            f" (median {_duration(summary['median_seconds'])},"
            f" 90th percentile {_duration(summary['p90_seconds'])})"
        )
    figure.update_layout(title=title, xaxis_title="first reply within", yaxis_title="inbound SMS")
    return figure


def _users_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    labels = [row["user_name"] or row["user_id"] for row in rows]
    for key, name in (("sent_count", "sent"), ("received_count", "received")):
        figure.add_bar(name=name, orientation="h", y=labels, x=[row[key] for row in rows])
    figure.update_layout(
        title=f"Busiest users (top {TOP_USERS}, SMS sent + received)",
        barmode="stack",
        yaxis={"autorange": "reversed"},
        xaxis_title="SMS",
    )
    return figure


def _opt_outs_figure(
    figure: go.Figure, rows: list[dict[str, Any]], texts: dict[str, Any]
) -> go.Figure:
    days = [row["opt_out_date"] for row in rows]
    for key, name, color in (
        ("opt_out_count", "phones that opted out", "#7f7f7f"),
        ("texted_after_count", "of them texted afterwards", "#d62728"),
    ):
        figure.add_bar(name=name, x=days, y=[row[key] for row in rows], marker_color=color)
    title = "Opt-outs per day (STOP, UNSUBSCRIBE, ... as the phone's latest keyword)"
    if texts["inbound_count"] and not texts["readable_count"]:
        title = "Opt-outs: none can be found, the SMS text is hashed or dropped (sms_text)"
    figure.update_layout(
        title=title,
        # The second series is a subset of the first: drawn over it.
        barmode="overlay",
        xaxis=_day_axis("day the phone opted out", days),
        # Whole phones: no 1.5 ticks.
        yaxis={
            "title": "phones",
            "rangemode": "tozero",
            "tickformat": ",d",
            "dtick": None if max((row["opt_out_count"] for row in rows), default=0) > 10 else 1,
        },
    )
    return figure


def _senders_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    weekly = len({row["message_date"] for row in rows}) > LONG_HISTORY_DAYS
    period = "week (from Monday)" if weekly else "day"
    if weekly:
        rows = _weekly(rows)
    for kind, (name, color) in SENDER_KINDS.items():
        series = [row for row in rows if row["sender_kind"] == kind]
        if not series:
            continue
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
                    else _duration(row["median_reply_seconds"]),
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
    figure.update_layout(
        title="Outbound SMS by sender: Close's AI agent, sequences and reps (bars: SMS, lines: reply rate)",
        barmode="stack",
        xaxis=_day_axis(period, [row["message_date"] for row in rows]),
        yaxis_title=f"outbound SMS per {period.split()[0]}",
        yaxis2={
            "title": "reply rate",
            "overlaying": "y",
            "side": "right",
            "tickformat": ".0%",
            "range": [0, 1.05],
        },
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def _rate_axis(title: str) -> dict[str, Any]:
    """A second x axis on top, for a rate drawn over counts."""
    return {
        "title": title,
        "overlaying": "x",
        "side": "top",
        "tickformat": ".0%",
        # A little room left of 0%, so a marker there is not cut by the axis.
        "range": [-0.03, 1.05],
        "dtick": 0.25,
        "showgrid": False,
    }


def _templates_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
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
                else _duration(row["median_reply_seconds"]),
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
        f"SMS templates (top {TOP_TEMPLATES} by outbound SMS): sent, failed and reply rate",
        "outbound SMS",
        "reply rate",
    )


def _number_label(row: dict[str, Any]) -> str:
    """A local number as people know it: its label and owner, then the number itself."""
    named = " / ".join(part for part in (row["local_phone_label"], row["owner_name"]) if part)
    number = row["local_phone"] or "(no number)"
    return f"{named} ({number})" if named else number


def _numbers_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
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
    return _ranked_bars_layout(
        figure,
        f"Local numbers (top {TOP_NUMBERS} by SMS): volume and delivery failure rate",
        "SMS",
        "failure rate (failed / (sent + failed))",
    )


def _ranked_bars_layout(
    figure: go.Figure, title: str, count_title: str, rate_title: str
) -> go.Figure:
    """Stacked horizontal bars, the largest on top, with a rate axis above them."""
    figure.update_layout(
        title=title,
        barmode="stack",
        yaxis={"autorange": "reversed"},
        xaxis_title=count_title,
        xaxis2=_rate_axis(rate_title),
        # Stacked bars list their legend bottom-up by default; in trace order it reads as drawn.
        legend={"orientation": "h", "y": -0.2, "traceorder": "normal"},
        # Room for the rate axis on top, under the title.
        margin={"t": 110},
    )
    return figure


def _sync_health_figure(figure: go.Figure, rows: list[dict[str, Any]]) -> go.Figure:
    days = [row["run_date"] for row in rows]
    for key, name, color in (
        ("successful_runs", "succeeded", "#2ca02c"),
        ("failed_runs", "failed", "#d62728"),
        ("other_runs", "interrupted or locked out", "#bbbbbb"),
    ):
        figure.add_bar(name=name, x=days, y=[row[key] for row in rows], marker_color=color)
    figure.add_scatter(
        name="max lag (minutes)",
        mode="lines+markers",
        yaxis="y2",
        x=days,
        y=[None if row["max_lag_seconds"] is None else row["max_lag_seconds"] / 60 for row in rows],
        customdata=[[row["last_error"] or ""] for row in rows],
        hovertemplate="%{x}<br>max lag %{y:.1f} min<br>last error: %{customdata[0]}<extra></extra>",
    )
    figure.update_layout(
        title="Sync health: runs of close-sms sync per day, and the longest lag",
        barmode="stack",
        xaxis=_day_axis("day", days),
        yaxis_title="runs",
        yaxis2={
            "title": "max lag (minutes)",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
        },
        # Below the plot: at the right it covered the lag axis and its title.
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _json_script(element_id: str, payload: Any) -> str:
    # "</" would close the script element early; JSON allows the escaped form.
    text = json.dumps(payload, default=str, sort_keys=True).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def collect(sql: SqlClientBase[Any]) -> dict[str, Any]:
    """The rows behind every chart, as JSON-ready records."""
    buckets = {row["bucket"]: row["inbound_count"] for row in _records(sql, _response_sql())}
    order = [label for label, _ in RESPONSE_BUCKETS] + [NO_REPLY]
    return {
        "overview": _records(sql, _OVERVIEW)[0],
        "daily_volume": _records(sql, _DAILY_VOLUME),
        "delivery": _records(sql, _DELIVERY),
        "response_times": [
            {"bucket": label, "inbound_count": buckets.get(label, 0)} for label in order
        ],
        "response_summary": _records(sql, _RESPONSE_SUMMARY)[0],
        "busiest_users": _records(sql, _BUSIEST_USERS),
        "opt_outs": _records(sql, _OPT_OUTS),
        "readable_texts": _records(sql, _READABLE_TEXTS)[0],
        "senders": _records(sql, _SENDERS),
        "templates": _records(sql, _TEMPLATES),
        "numbers": _records(sql, _NUMBERS),
        "sync_health": _records(sql, _SYNC_HEALTH),
    }


def _check_views(sql: SqlClientBase[Any]) -> None:
    missing = [name for name in missing_views(sql) if name in _VIEWS_READ]
    if missing:
        raise ConfigError(
            f"the dataset {DATASET_NAME} has no view(s) {', '.join(missing)}; apply them first "
            "with: close-sms views (with the same --database or --destination)"
        )


def _database_name(sql: SqlClientBase[Any]) -> str:
    # DuckDB's client has no database name: the database is its file.
    return sql.database_name or Path(sql.credentials.database).name


def write_report(sql: SqlClientBase[Any], out: Path) -> Path:
    """Write the HTML report of the dataset behind the open sql client to `out`; returns its path.

    Nothing is written to the database: only SELECTs run.
    """
    with needs_cli_extra("close-sms report"):
        # Imported here: the bare package (no [cli] extra) has no plotly.
        from plotly.graph_objects import Figure
    _check_views(sql)
    data = collect(sql)

    charts = [
        (
            "daily_volume",
            _daily_volume_figure(Figure(), data["daily_volume"]),
            data["daily_volume"],
        ),
        ("delivery", _delivery_figure(Figure(), data["delivery"]), data["delivery"]),
        (
            "response_times",
            _response_figure(Figure(), data["response_times"], data["response_summary"]),
            {"buckets": data["response_times"], "summary": data["response_summary"]},
        ),
        ("busiest_users", _users_figure(Figure(), data["busiest_users"]), data["busiest_users"]),
        (
            "opt_outs",
            _opt_outs_figure(Figure(), data["opt_outs"], data["readable_texts"]),
            {"days": data["opt_outs"], "texts": data["readable_texts"]},
        ),
        ("senders", _senders_figure(Figure(), data["senders"]), data["senders"]),
        ("templates", _templates_figure(Figure(), data["templates"]), data["templates"]),
        ("numbers", _numbers_figure(Figure(), data["numbers"]), data["numbers"]),
        ("sync_health", _sync_health_figure(Figure(), data["sync_health"]), data["sync_health"]),
    ]
    sections = []
    for index, (name, figure, payload) in enumerate(charts):
        figure.update_layout(template="plotly_white", height=420)
        if figure.layout.xaxis.type == "date":
            # A bar spans most of its day: alone, plotly would draw it one millisecond wide.
            bars = [trace for trace in figure.data if trace.type == "bar"]
            group = max(len(bars), 1) if figure.layout.barmode == "group" else 1
            figure.update_traces(width=0.8 * DAY_MS / group, selector={"type": "bar"})
        if not any(value for trace in figure.data for value in trace.y or ()):
            # Axes without data would show a made-up range (January 2000, -1 to 6).
            figure.update_xaxes(visible=False)
            figure.update_yaxes(visible=False)
            figure.add_annotation(
                text="No data yet", showarrow=False, xref="paper", yref="paper", font_size=16
            )
        chart_html = figure.to_html(
            full_html=False,
            # plotly.js itself (~4.7 MB) once, inline: the page needs no network.
            include_plotlyjs=index == 0,
            div_id=f"chart-{name}",
            config={"displaylogo": False, "responsive": True},
        )
        sections.append(
            f'<section class="chart" id="{name}">\n{chart_html}\n'
            f"{_json_script(f'data-{name}', payload)}\n</section>"
        )

    overview = data["overview"]
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = (
        f"{overview['sms_count']:,} SMS from {overview['first_date']} to {overview['last_date']}"
        if overview["sms_count"]
        else "No SMS in this database yet."
    )
    page = f"""<!DOCTYPE html>
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
<p class="meta">{html.escape(summary)} &middot; database {html.escape(_database_name(sql))}
&middot; generated {generated}. Days are UTC.</p>
{chr(10).join(sections)}
{_json_script("data-overview", overview)}
</body>
</html>
"""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--out: cannot write {out} ({exc.strerror or exc})") from None
    return out
