"""Close's timestamps: tolerant parsing, epoch milliseconds, and filter values Close accepts."""

from __future__ import annotations

import calendar
from datetime import datetime, timezone
from typing import Any

import pendulum


def parse_timestamp(value: Any) -> datetime | None:
    """Parse Close's timestamps tolerantly: with or without a fraction, `Z`, offset or naive UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        # Fast path for Close's ISO form (pendulum.parse was ~60% of a backfill's CPU in
        # cProfile); anything fromisoformat refuses still goes to pendulum below.
        try:
            parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] == "Z" else value)
        except ValueError:
            pass
        else:
            return _in_utc(parsed)
    if isinstance(value, datetime):
        # Rows read back from the warehouse: every incremental run compares thousands.
        return _in_utc(value)
    parsed = pendulum.parse(str(value), tz="UTC")
    if not isinstance(parsed, datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed.in_timezone("UTC")


def _in_utc(moment: datetime) -> datetime:
    """A naive time is UTC, as Close's are."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of a tz-aware datetime, rounded down: a microsecond fraction never
    moves a timestamp into the next millisecond (or second) of the backfill's windows."""
    return calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000


def from_ms(epoch_ms: int) -> datetime:
    """Tz-aware UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)


def format_filter(epoch_ms: int) -> str:
    """A filter value Close accepts, in UTC with an explicit offset."""
    moment = from_ms(epoch_ms)
    if epoch_ms % 1000:
        return moment.isoformat(timespec="milliseconds")
    return moment.isoformat(timespec="seconds")
