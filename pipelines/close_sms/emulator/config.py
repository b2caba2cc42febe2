"""Settings of the Close API emulator: one frozen dataclass, validated on creation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

UnknownParams = Literal["ignore", "reject"]
FilterPrecision = Literal["millisecond", "second"]


@dataclass(frozen=True)
class EmulatorConfig:
    """Behaviour switches; the README of the Close facts names the source of each default."""

    # Close's default page size is 100 [OAS]; the SMS maximum is unknown, 100 is what clients use.
    max_limit: int = 100
    # Observed on /activity/email/ (airbyte#20959); unknown for SMS, hence a setting.
    max_skip: int = 250_000
    # Unknown on Close. "ignore" is the default because silently ignoring a filter such as
    # date_updated__gt is the case that corrupts a sync without any error.
    unknown_params: UnknownParams = "ignore"
    # Requests per second per key and endpoint group; None switches rate limiting off.
    rps: float | None = None
    # Token bucket size; None means equal to rps (at least 1).
    burst: float | None = None
    latency_ms: int = 0
    # Docs show ", "; a real account logged "; ". Clients must parse both.
    ratelimit_separator: Literal[",", ";"] = ","
    event_retention_days: int = 30
    # Close says only "a short time frame". 60 s is long enough that tests (and a sync scanning
    # the last five minutes, as Close recommends) really meet consolidated events.
    consolidation_seconds: float = 60.0
    nonadmin_data_hidden_after_seconds: int = 3600
    # Singer observed date_created filters honoured to the second only; "second" drops the
    # fraction of a filter value, which is the stricter case for a windowed sync.
    filter_precision: FilterPrecision = "second"
    # Close: send_in "must be less than 60".
    send_in_max_seconds: int = 60
    # Newest records kept in Emulator.request_log; older ones are dropped to bound memory.
    request_log_max: int = 200_000
    # Actions whose SMS events are never logged: Close's event log can miss events.
    unlogged_actions: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.unknown_params not in ("ignore", "reject"):
            raise ValueError(
                f"unknown_params must be 'ignore' or 'reject', not {self.unknown_params!r}"
            )
        if self.filter_precision not in ("millisecond", "second"):
            raise ValueError(
                f"filter_precision must be 'millisecond' or 'second', not {self.filter_precision!r}"
            )
        if self.ratelimit_separator not in (",", ";"):
            raise ValueError("ratelimit_separator must be ',' or ';'")
        if self.rps is not None and self.rps <= 0:
            raise ValueError("rps must be positive or None")
        object.__setattr__(self, "unlogged_actions", frozenset(self.unlogged_actions))
        if self.max_limit < 1 or self.max_skip < 0:
            raise ValueError("max_limit must be >= 1 and max_skip >= 0")

    @property
    def bucket_size(self) -> float:
        """Token bucket capacity used by the rate limiter."""
        if self.rps is None:
            return 0.0
        return max(1.0, self.burst if self.burst is not None else self.rps)
