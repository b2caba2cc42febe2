"""Rate limiters per API key and endpoint group, and Close's rate-limit headers and body."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Literal

ResetRounding = Literal["fraction", "floor", "ceil"]
HeaderForm = Literal["ratelimit", "x-rate-limit", "ratelimit-separate", "ietf", "none"]
RESET_ROUNDINGS = ("fraction", "floor", "ceil")
HEADER_FORMS = ("ratelimit", "x-rate-limit", "ratelimit-separate", "ietf", "none")


@dataclass(frozen=True)
class RateDecision:
    """The outcome for one request: allowed or not, and what the headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset: float
    # Seconds of one enforcement window; a token bucket says 1, as the emulator always did.
    window: float = 1.0

    def header(self, separator: str, rounding: ResetRounding = "fraction") -> str:
        """The `ratelimit` header value, e.g. `limit=20, remaining=19, reset=0.050`."""
        sep = f"{separator} "
        reset = self.reset_text(rounding)
        return f"limit={self.limit}{sep}remaining={self.remaining}{sep}reset={reset}"

    def reset_text(self, rounding: ResetRounding) -> str:
        """`reset` as written: 3 decimals, or whole seconds rounded down or up."""
        if rounding == "floor":
            return str(math.floor(self.reset))
        if rounding == "ceil":
            return str(math.ceil(self.reset))
        return f"{self.reset:.3f}"

    def headers(self, form: HeaderForm, separator: str, rounding: ResetRounding) -> dict[str, str]:
        """The rate-limit headers of one answer in `form` (none for "none")."""
        if form == "ratelimit":
            return {"ratelimit": self.header(separator, rounding)}
        if form == "ietf":
            # draft-ietf-httpapi-ratelimit-headers (07+): r, t, q and w are Integers, so a
            # fractional reset is rounded up ("fraction" cannot be written there).
            reset = self.reset_text("floor" if rounding == "floor" else "ceil")
            return {
                "RateLimit": f'"default";r={self.remaining};t={reset}',
                "RateLimit-Policy": f'"default";q={self.limit};w={math.ceil(self.window)}',
            }
        if form == "none":
            return {}
        prefix = "X-Rate-Limit" if form == "x-rate-limit" else "RateLimit"
        return {
            f"{prefix}-Limit": str(self.limit),
            f"{prefix}-Remaining": str(self.remaining),
            f"{prefix}-Reset": self.reset_text(rounding),
        }

    @property
    def retry_after(self) -> int:
        """`retry-after` in whole seconds, rounded up as Close documents."""
        return max(1, math.ceil(self.reset))


def endpoint_group_hash(group: str) -> str:
    """An opaque group id like Close's `rate_endpoint_group`."""
    return hashlib.md5(group.encode(), usedforsecurity=False).hexdigest()


def legacy_body(decision: RateDecision, group: str) -> dict[str, object]:
    """The deprecated 429 body; fields at top level (Singer) and under `error` (Airbyte)."""
    window = decision.window
    fields: dict[str, object] = {
        "message": "API call count exceeded for this period",
        "rate_reset": f"{decision.reset:.6f}",
        "rate_limit": decision.limit,
        "rate_window": int(window) if window == int(window) else window,
        "rate_limit_type": "key",
        "rate_endpoint_group": endpoint_group_hash(group),
    }
    return {**fields, "error": dict(fields)}


class RateLimiter:
    """Classic token bucket on real monotonic time (clients sleep in real seconds)."""

    def __init__(self, rps: float, burst: float) -> None:
        self.rps = rps
        self.burst = burst
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def check(self, key_id: str, group: str, share: float = 1.0) -> RateDecision:
        """Take one token from the bucket of (key, group), whose rate is `share` of the rate."""
        rps, burst = self.rps * share, max(1.0, self.burst * share)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get((key_id, group), (burst, now))
            tokens = min(burst, tokens + (now - last) * rps)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[(key_id, group)] = (tokens, now)
        reset = (burst - tokens) / rps if allowed else (1.0 - tokens) / rps
        return RateDecision(allowed, int(burst), int(tokens), round(reset, 3))


class WindowRateLimiter:
    """Fixed windows as Close enforces them: `limit` requests per window per (key, group).

    A window starts at the first request after the previous one ended.
    """

    def __init__(self, rps: float, window: float) -> None:
        self.rps = rps
        self.window = window
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def check(self, key_id: str, group: str, share: float = 1.0) -> RateDecision:
        """Count one request in the current window of (key, group) if it has room."""
        limit = max(1, round(self.rps * self.window * share))
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get((key_id, group), (now, 0))
            if now - start >= self.window:
                start, used = now, 0
            allowed = used < limit
            if allowed:
                used += 1
            self._windows[(key_id, group)] = (start, used)
        reset = max(0.0, start + self.window - now)
        return RateDecision(allowed, limit, limit - used, round(reset, 3), self.window)
