"""The rate-limit pacer against simulated servers, in virtual time (no real sleeping).

A simulated Close answers every request with a `RateLimit` header in one of its two readings:
fixed windows (Close's documentation: `reset` is the time until the window ends) and a token
bucket (the emulator: `reset` is the time until the bucket is full again). Simulated workers
claim slots from the pacer, send after the slot's wait, and hand the answer back after the
round trip, as `CloseClient` does; a 429 pauses the key for `retry_wait_from_429`.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import requests

from close_sms.source.api.pacing import KeyPool, retry_wait_from_429

GROUP = "/activity/sms/"
LATENCY = 0.05
# Windows simulated, and the first ones left out of the measure: a bucket starts full, and
# its first `limit` requests are free.
WINDOWS = 40
WARM_UP_WINDOWS = 4


class TokenBucket:
    """The emulator's limiter: `limit` tokens, refilled at `limit` per `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.rate = limit / window
        self.tokens = float(limit)
        self.last = 0.0

    def answer(self, now: float) -> tuple[bool, float, float]:
        self.tokens = min(self.limit, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True, self.tokens, (self.limit - self.tokens) / self.rate
        return False, self.tokens, (1 - self.tokens) / self.rate


class FixedWindows:
    """Close's documented reading: `limit` requests per window; windows are not aligned to 0."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.phase = 0.37 * window
        self.index = -1
        self.count = 0

    def answer(self, now: float) -> tuple[bool, float, float]:
        index = math.floor((now - self.phase) / self.window)
        if index != self.index:
            self.index, self.count = index, 0
        ends = self.phase + (index + 1) * self.window
        if self.count < self.limit:
            self.count += 1
            return True, self.limit - self.count, ends - now
        return False, 0, ends - now


def _headers(limit: int, remaining: float, reset: float, allowed: bool) -> dict[str, str]:
    headers = {"ratelimit": f"limit={limit}, remaining={int(remaining)}, reset={reset:.3f}"}
    if not allowed:
        headers["retry-after"] = str(max(1, math.ceil(reset)))
    return headers


def _wait_after_429(headers: dict[str, str]) -> float:
    response = requests.Response()
    response.status_code = 429
    response.headers.update(headers)
    response._content = b"{}"
    return retry_wait_from_429(response)


@dataclass
class Simulation:
    """Workers sending through a `KeyPool` to one simulated server per key, in virtual time."""

    servers: list[TokenBucket | FixedWindows]
    workers: int
    latency: float = LATENCY
    now: float = 0.0
    accepted: list[tuple[float, int]] = field(default_factory=list)
    rejected: int = 0

    def __post_init__(self) -> None:
        self.pool = KeyPool([f"key{i}" for i in range(len(self.servers))], clock=lambda: self.now)
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._parked: list[int] = []

    def run(self, until: float) -> None:
        for _ in range(self.workers):
            self._claim()
        while self._events and self._events[0][0] <= until:
            self.now, _, action = heapq.heappop(self._events)
            action()

    def _at(self, moment: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (moment, next(self._order), action))

    def _claim(self) -> None:
        slot = self.pool.reserve(GROUP)
        if slot is None:
            self._parked.append(0)
            return
        if slot.wait > 0:
            # The others ask again once this slot is due, as CloseClient's workers do.
            self._at(self.now + slot.wait, self._wake)
        self._at(self.now + slot.wait + self.latency / 2, lambda: self._arrive(slot.key))

    def _wake(self) -> None:
        parked, self._parked = self._parked, []
        for _ in parked:
            self._claim()

    def _arrive(self, key: int) -> None:
        server = self.servers[key]
        allowed, remaining, reset = server.answer(self.now)
        if allowed:
            self.accepted.append((self.now, key))
        else:
            self.rejected += 1
        headers = _headers(server.limit, remaining, reset, allowed)
        self._at(self.now + self.latency / 2, lambda: self._answer(key, headers, allowed))

    def _answer(self, key: int, headers: dict[str, str], allowed: bool) -> None:
        self.pool.observe(key, GROUP, headers)
        if not allowed:
            self.pool.pause(key, _wait_after_429(headers))
        self._wake()
        self._claim()

    def used(self, limit: int, window: float, since: float, until: float) -> float:
        """Requests accepted from `since` to `until` over what the keys and workers allow."""
        per_key = limit / window
        reachable = min(per_key * len(self.servers), self.workers / self.latency)
        done = sum(1 for moment, _ in self.accepted if since <= moment < until)
        return done / (reachable * (until - since))

    @property
    def share_429(self) -> float:
        return self.rejected / (self.rejected + len(self.accepted))


@pytest.mark.parametrize("server", [TokenBucket, FixedWindows])
@pytest.mark.parametrize("window", [1.0, 10.0, 60.0])
@pytest.mark.parametrize("limit", [2, 5, 8, 20, 100])
@pytest.mark.parametrize("workers", [1, 8, 16])
def test_the_pacer_uses_nine_tenths_of_any_budget_with_at_most_one_percent_429s(
    server: type[TokenBucket | FixedWindows], window: float, limit: int, workers: int
):
    simulation = Simulation([server(limit, window)], workers)
    simulation.run(until=WINDOWS * window)
    used = simulation.used(limit, window, WARM_UP_WINDOWS * window, WINDOWS * window)
    assert used >= 0.90, f"{used:.2f} of the budget"
    assert simulation.share_429 <= 0.01, f"{simulation.rejected} 429s of {len(simulation.accepted)}"
