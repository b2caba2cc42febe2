"""Checks of the source's arguments: each bad value refused in one line that names its setting."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from ..errors import ConfigError, where_to_set
from . import settings
from .api.keys import parse_api_keys
from .timestamps import parse_timestamp

MISSING_KEY = f"no Close API key: set {where_to_set('api_key', secret=True)}"

# The numeric arguments of `close_sms_source` and their ranges (`check_positive`'s rules), in
# the order they are checked.
NUMBER_RULES: dict[str, dict[str, Any]] = {
    "max_sms": {"optional": True, "whole": True},
    "max_skip": {"whole": True},
    "backfill_workers": {"whole": True},
    "prefetch_sms": {"whole": True},
    "max_retries": {"whole": True},
    "read_timeout": {},
    "backoff_max": {},
    "recent_window_hours": {"allow_zero": True},
    "reconcile_interval_days": {"allow_zero": True},
    "max_delete_share": {"at_most": 1},
    "context_refresh_minutes": {"allow_zero": True},
}


def check_arguments(arguments: Mapping[str, Any]) -> tuple[str, ...]:
    """Refuse the first bad argument of `close_sms_source` (given by name); the API keys.

    The privacy and context settings are checked where they are read (`Privacy.configure`,
    `ContextSettings.configure`).
    """
    api_keys = parse_api_keys(arguments["api_key"])
    if not api_keys:
        raise ConfigError(MISSING_KEY)
    check_url(arguments["base_url"])
    for name, rules in NUMBER_RULES.items():
        check_positive(name, arguments[name], **rules)
    context = arguments["context"]
    if not isinstance(context, bool):
        raise ConfigError(
            f"setting context = {context!r} is not true or false ({where_to_set('context')})"
        )
    return api_keys


def check_positive(
    name: str,
    value: Any,
    optional: bool = False,
    allow_zero: bool = False,
    at_most: float | None = None,
    whole: bool = False,
) -> None:
    """Refuse a numeric setting out of its range (or, with `whole`, not a count), naming it."""
    if value is None and optional:
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    out_of_range = not (number >= 0 if allow_zero else number > 0) or (
        at_most is not None and number > at_most
    )
    if out_of_range or isinstance(value, bool) or (whole and not number.is_integer()):
        kind = "whole number" if whole else "number"
        wanted = f"a {kind} >= 0" if allow_zero else f"a positive {kind}"
        if at_most is not None:
            wanted += f" no larger than {at_most:g}"
        raise ConfigError(f"setting {name} = {value!r} is not {wanted} ({where_to_set(name)})")


def check_url(base_url: str) -> None:
    """Refuse a `base_url` that is not an http(s) URL."""
    text = str(base_url).strip()
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or any(map(str.isspace, text)):
        raise ConfigError(
            f"base_url {base_url!r} is not an http(s) URL, e.g. {settings.DEFAULT_BASE_URL} "
            f"({where_to_set('base_url')})"
        )


def parse_start_date(value: Any) -> datetime | None:
    """`start_date` as a time (None when unset)."""
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(
            f"start_date {value!r} is not a date (use YYYY-MM-DD; {where_to_set('start_date')})"
        ) from None


def hours(value: Any) -> timedelta | None:
    """A setting in hours as a duration; 0 turns the feature off (None)."""
    return timedelta(hours=float(value)) if float(value) > 0 else None
