"""When a sync is unhealthy, and telling someone: one message per incident, not one per run.

An incident opens when a run fails or leaves a context table behind (exit 9), or when the change
feed was last read more than `max_lag` ago; the sync then POSTs one Slack-compatible message
(`{"text": ...}`) to `notify_url`. The open incident is kept in `incident.json` in the
warehouse's local working folder, so a cron job failing every five minutes sends one message;
the first later run that succeeds and is fresh closes it and sends one "recovered" message.
`status --max-lag` applies the same rule, and also to each context table's age.

This lives in the app room: it reports to people, like the CLI, and the warehouse room stays
free of HTTP.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pendulum
import requests

from ..errors import EXIT_CONTEXT_FAILED
from ..warehouse.destination import Warehouse
from ..warehouse.ledger import Outcome, SyncRun

INCIDENT_FILE = "incident.json"
# An alert is one short POST: a receiver slower than this is skipped (logged), not waited for.
NOTIFY_TIMEOUT_SECONDS = 5.0

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


def parse_duration(value: Any) -> float:
    """Seconds in `90s`, `30m`, `2h`, `1d`, a bare number of seconds, or ISO 8601 `PT30M`."""
    text = str(value).strip().lower()
    match = _DURATION.fullmatch(text)
    if match:
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    else:
        try:
            # pendulum reads ISO 8601 durations; dates and times it also parses are refused.
            parsed = pendulum.parse(text.upper())
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            parsed = None
        if not isinstance(parsed, pendulum.Duration):
            raise ValueError(f"{value!r} is not a duration (e.g. 90s, 30m, 2h, 1d or PT30M)")
        seconds = parsed.total_seconds()
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """`1d 02:03:04`, or `00:12:03` under a day."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


@dataclass(frozen=True)
class Alerts:
    """Where to send alerts (it may hold a token: never printed) and the longest lag allowed.

    Made from the checked settings by `app.config.CommandSettings.alerts`.
    """

    notify_url: str = field(repr=False)
    max_lag_seconds: float | None = None


def find_problem(
    last_run: SyncRun | None, lag_seconds: float | None, max_lag_seconds: float | None
) -> str | None:
    """Why the sync is unhealthy: the last run failed, or loaded its SMS but not every context
    table, or the feed is older than the limit."""
    if last_run is not None and last_run.outcome is Outcome.FAILED:
        return (
            f"the last sync failed (exit {last_run.exit_status}, "
            f"{last_run.ended_at:%Y-%m-%d %H:%M:%S} UTC): {last_run.error}"
        )
    if last_run is not None and last_run.exit_status == EXIT_CONTEXT_FAILED:
        return (
            f"the last sync left context tables behind (exit {EXIT_CONTEXT_FAILED}, "
            f"{last_run.ended_at:%Y-%m-%d %H:%M:%S} UTC): {last_run.error}"
        )
    if max_lag_seconds is not None and lag_seconds is not None and lag_seconds > max_lag_seconds:
        return (
            f"the change feed was last read {format_duration(lag_seconds)} ago, "
            f"more than {format_duration(max_lag_seconds)}"
        )
    return None


def stale_context(tables: dict[str, dict[str, Any]], max_lag_seconds: float) -> str | None:
    """Which context tables were last read longer ago than `max_lag_seconds` beyond how old
    they may be by design (`warehouse.status.context_ages`), or None."""
    late = {
        table: age["age_seconds"]
        for table, age in tables.items()
        if age["age_seconds"] > max_lag_seconds + age["allowed_seconds"]
    }
    if not late:
        return None
    named = ", ".join(f"{table} {format_duration(seconds)} ago" for table, seconds in late.items())
    return f"context tables were last read longer ago than allowed: {named}"


def after_run(
    alerts: Alerts, warehouse: Warehouse, run: SyncRun, warn: Callable[[str], None]
) -> None:
    """Open, keep or close the incident after `run`, sending at most one message each way."""
    path = warehouse.working_dir / INCIDENT_FILE
    incident = _read_incident(path)
    problem = find_problem(run, run.lag_seconds, alerts.max_lag_seconds)
    where = f"close-sms on {socket.gethostname()}, {warehouse.describe()}"
    if problem is not None:
        if incident is None:
            incident = {"opened_at": run.ended_at.isoformat(), "problem": problem, "sent": False}
        if not incident["sent"]:
            # A message that could not be sent is tried again by the next run of the incident.
            incident["sent"] = send_alert(alerts, f":rotating_light: {where}: {problem}", warn)
        path.write_text(json.dumps(incident), encoding="utf-8")
    elif incident is not None and run.outcome is Outcome.SUCCESS:
        if incident["sent"]:
            send_alert(
                alerts,
                f":white_check_mark: {where}: recovered; the sync succeeded and is fresh "
                f"(incident opened {incident['opened_at']}: {incident['problem']})",
                warn,
            )
        path.unlink()


def _read_incident(path: Any) -> dict[str, Any] | None:
    try:
        incident = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return incident if isinstance(incident, dict) and "sent" in incident else None


def send_alert(alerts: Alerts, text: str, warn: Callable[[str], None]) -> bool:
    """POST one message; True if the receiver took it. A failure is one warning, never raised."""
    try:
        response = requests.post(
            alerts.notify_url, json={"text": text}, timeout=NOTIFY_TIMEOUT_SECONDS
        )
    except requests.RequestException as exc:
        # Only the type: requests' messages name the URL, which may carry a token.
        warn(f"alert not sent to notify_url ({type(exc).__name__})")
        return False
    if not response.ok:
        warn(f"alert not sent: notify_url answered HTTP {response.status_code}")
        return False
    return True
