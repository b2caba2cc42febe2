"""Close's timestamp format and the parsing of date filters."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

# Sentinel for "no timestamp" inside integer columns.
NO_TS = -(1 << 62)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


def format_ms(ms: int) -> str:
    """Render epoch milliseconds the way Close does: `.fff000+00:00`, no fraction when zero."""
    # isoformat() writes exactly that; it is the hot path of every listing page.
    return ms_to_dt(ms).isoformat()


def format_opt(ms: int) -> str | None:
    """Like format_ms, but the NO_TS sentinel renders as null."""
    return None if ms == NO_TS else format_ms(ms)


def dt_to_ms(dt: datetime) -> int:
    """Epoch milliseconds of a datetime (naive means UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


def ms_to_dt(ms: int) -> datetime:
    """Tz-aware UTC datetime of epoch milliseconds."""
    return _EPOCH + ms * _ONE_MS


def parse_datetime(value: str, tz_offset_hours: float = 0.0) -> datetime:
    """Parse an ISO date-time or date; naive values are in the x-tz-offset zone (default UTC).

    Raises ValueError for anything else.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty date")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if len(text) == 10:
        d = date.fromisoformat(text)
        parsed = datetime(d.year, d.month, d.day)
    else:
        # '+' in a query string often arrives decoded as a space.
        if len(text) > 19 and text[-6] == " " and text[-3] == ":":
            text = text[:-6] + "+" + text[-5:]
        parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone(timedelta(hours=tz_offset_hours)))
    return parsed.astimezone(timezone.utc)
