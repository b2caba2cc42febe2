"""Token buckets per API key and endpoint group, and Close's rate-limit headers and body."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    """The outcome for one request: allowed or not, and what the headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset: float

    def header(self, separator: str) -> str:
        """The `ratelimit` header value, e.g. `limit=20, remaining=19, reset=0.05`."""
        sep = f"{separator} "
        return f"limit={self.limit}{sep}remaining={self.remaining}{sep}reset={self.reset:.3f}"

    @property
    def retry_after(self) -> int:
        """`retry-after` in whole seconds, rounded up as Close documents."""
        return max(1, math.ceil(self.reset))


def endpoint_group_hash(group: str) -> str:
    """An opaque group id like Close's `rate_endpoint_group`."""
    return hashlib.md5(group.encode(), usedforsecurity=False).hexdigest()


def legacy_body(decision: RateDecision, group: str) -> dict[str, object]:
    """The deprecated 429 body; fields at top level (Singer) and under `error` (Airbyte)."""
    fields: dict[str, object] = {
        "message": "API call count exceeded for this period",
        "rate_reset": f"{decision.reset:.6f}",
        "rate_limit": decision.limit,
        "rate_window": 1,
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

    def check(self, key_id: str, group: str) -> RateDecision:
        """Take one token from the bucket of (key, group) if there is one."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get((key_id, group), (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rps)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[(key_id, group)] = (tokens, now)
        limit = int(self.burst)
        reset = (self.burst - tokens) / self.rps if allowed else (1.0 - tokens) / self.rps
        return RateDecision(allowed, limit, int(tokens), round(reset, 3))
