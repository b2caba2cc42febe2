"""`close-sms report`: one self-contained HTML page of charts over the analytics views.

Its last panel is the sync's health, from the run ledger (view `sync_health`).

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
from ..settings import DATASET_NAME
from .dialect import translate
from .views import missing_views

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
_VIEWS_READ = (
    "sms_messages",
    "sms_daily",
    "sms_delivery",
    "sms_response_times",
    "sms_user_daily",
    "sync_health",
)

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
        xaxis_title="day",
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
        xaxis_title="day",
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
        xaxis_title="day",
        yaxis_title="runs",
        yaxis2={
            "title": "max lag (minutes)",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
        },
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
        ("sync_health", _sync_health_figure(Figure(), data["sync_health"]), data["sync_health"]),
    ]
    sections = []
    for index, (name, figure, payload) in enumerate(charts):
        figure.update_layout(template="plotly_white", height=420)
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
