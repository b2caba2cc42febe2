"""The rate-limit pacer against simulated servers, in virtual time (no real sleeping).

A simulated Close answers every request with rate-limit headers in one of its readings: fixed
windows (Close's documentation: `reset` is the time until the window ends), fixed windows that
start at the first request after the last one ended (the emulator's), and a token bucket
(`reset` is the time until the bucket is full again). `reset` is written with decimals or in
whole seconds rounded down or up, in any header form Close has sent, or not at all (then only a
429's body and retry-after describe the window). Simulated workers claim slots from the pacer,
send after the slot's wait, and hand the answer back after the round trip, as `CloseClient`
does; a 429 pauses the key for `retry_wait_from_429`.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import orjson
import pytest
import requests

from close_sms.source.api.pacing import KeyPool, read_429_body, retry_wait_from_429

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


class RestartingWindows:
    """The emulator's fixed windows: each starts at the first request after the last one ended."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.start = -math.inf
        self.count = 0

    def answer(self, now: float) -> tuple[bool, float, float]:
        if now - self.start >= self.window:
            self.start, self.count = now, 0
        ends = self.start + self.window
        if self.count < self.limit:
            self.count += 1
            return True, self.limit - self.count, ends - now
        return False, 0, ends - now


Server = TokenBucket | FixedWindows | RestartingWindows
Rounding = Literal["fraction", "floor", "ceil"]
# "ratelimit;" is the combined header with semicolons, as a real account logged it.
Form = Literal["ratelimit", "ratelimit;", "x-rate-limit", "ratelimit-separate", "ietf", "none"]
FORMS = ("ratelimit", "ratelimit;", "x-rate-limit", "ratelimit-separate", "ietf", "none")


def _reset_text(reset: float, rounding: Rounding) -> str:
    if rounding == "floor":
        return str(math.floor(reset))
    if rounding == "ceil":
        return str(math.ceil(reset))
    return f"{reset:.3f}"


def _headers(
    server: Server, remaining: float, reset: float, form: Form, rounding: Rounding
) -> dict[str, str]:
    """The rate-limit headers of one answer in `form`, as the emulator writes them."""
    text = _reset_text(reset, rounding)
    left = int(remaining)
    if form in ("ratelimit", "ratelimit;"):
        sep = ";" if form.endswith(";") else ","
        return {"ratelimit": f"limit={server.limit}{sep} remaining={left}{sep} reset={text}"}
    if form == "ietf":
        # The draft's numbers are integers: a fraction is rounded up.
        text = _reset_text(reset, "floor" if rounding == "floor" else "ceil")
        window = math.ceil(
            server.limit / server.rate if isinstance(server, TokenBucket) else server.window
        )
        return {
            "RateLimit": f'"default";r={left};t={text}',
            "RateLimit-Policy": f'"default";q={server.limit};w={window}',
        }
    if form == "none":
        return {}
    prefix = "X-Rate-Limit" if form == "x-rate-limit" else "RateLimit"
    return {
        f"{prefix}-Limit": str(server.limit),
        f"{prefix}-Remaining": str(left),
        f"{prefix}-Reset": text,
    }


def _response_429(server: Server, reset: float, headers: dict[str, str]) -> requests.Response:
    """A 429 as Close sends it: retry-after rounded up, and the deprecated body."""
    response = requests.Response()
    response.status_code = 429
    response.headers.update({**headers, "retry-after": str(max(1, math.ceil(reset)))})
    window = server.limit / server.rate if isinstance(server, TokenBucket) else server.window
    body = {"rate_reset": f"{reset:.6f}", "rate_limit": server.limit, "rate_window": window}
    response._content = orjson.dumps(body)
    return response


@dataclass
class Simulation:
    """Workers sending through a `KeyPool` to one simulated server per key, in virtual time."""

    servers: list[Server]
    workers: int
    form: Form = "ratelimit"
    rounding: Rounding = "fraction"
    latency: float = LATENCY
    now: float = 0.0
    accepted: list[tuple[float, int]] = field(default_factory=list)
    rejected: int = 0

    def __post_init__(self) -> None:
        self.pool = KeyPool([f"key{i}" for i in range(len(self.servers))], clock=lambda: self.now)
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._parked = 0
        self._wakes: set[float] = set()

    def run(self, until: float) -> None:
        for _ in range(self.workers):
            self._claim()
        while self._events and self._events[0][0] <= until:
            self.now, _, action = heapq.heappop(self._events)
            action()

    def _at(self, moment: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (moment, next(self._order), action))

    def _claim(self) -> bool:
        """One worker claims a slot and sends; False: it waits, parked."""
        slot = self.pool.reserve(GROUP)
        if slot is None:
            self._parked += 1
            # Parked workers ask again once the next slot is due, or at an answer, as
            # `KeyPool.claim` does.
            due = self.pool.due(GROUP)
            if due is not None and due not in self._wakes:
                self._wakes.add(due)
                self._at(due, self._wake)
            return False
        self._at(self.now + self.latency / 2, lambda: self._arrive(slot.key))
        return True

    def _wake(self) -> None:
        self._wakes.discard(self.now)
        parked, self._parked = self._parked, 0
        for waiting in range(parked, 0, -1):
            if not self._claim():
                # The others would be told the same.
                self._parked += waiting - 1
                return

    def _arrive(self, key: int) -> None:
        server = self.servers[key]
        allowed, remaining, reset = server.answer(self.now)
        if allowed:
            self.accepted.append((self.now, key))
        else:
            self.rejected += 1
        headers = _headers(server, remaining, reset, self.form, self.rounding)
        refusal = None if allowed else _response_429(server, reset, headers)
        self._at(self.now + self.latency / 2, lambda: self._answer(key, headers, refusal))

    def _answer(self, key: int, headers: dict[str, str], refusal: requests.Response | None) -> None:
        if refusal is None:
            self.pool.observe(key, GROUP, headers)
        else:
            self.pool.observe(key, GROUP, headers, read_429_body(refusal))
            self.pool.pause(key, retry_wait_from_429(refusal))
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
    server: type[Server], window: float, limit: int, workers: int
):
    simulation = Simulation([server(limit, window)], workers)
    simulation.run(until=WINDOWS * window)
    used = simulation.used(limit, window, WARM_UP_WINDOWS * window, WINDOWS * window)
    assert used >= 0.90, f"{used:.2f} of the budget"
    assert simulation.share_429 <= 0.01, f"{simulation.rejected} 429s of {len(simulation.accepted)}"


def _measure(simulation: Simulation, limit: int, window: float) -> None:
    """Nine tenths of the budget and at most 1% 429s; learning how `reset` is rounded may
    cost one more 429 per key (its first window's end, probed once)."""
    simulation.run(until=WINDOWS * window)
    used = simulation.used(limit, window, WARM_UP_WINDOWS * window, WINDOWS * window)
    assert used >= 0.90, f"{used:.2f} of the budget"
    allowed = 0.01 * (simulation.rejected + len(simulation.accepted)) + len(simulation.servers)
    assert simulation.rejected <= allowed, (
        f"{simulation.rejected} 429s of {len(simulation.accepted)}"
    )


@pytest.mark.parametrize("server", [FixedWindows, RestartingWindows])
@pytest.mark.parametrize("rounding", ["floor", "ceil"])
@pytest.mark.parametrize("window", [1.0, 2.0, 8.0, 10.0, 15.0])
@pytest.mark.parametrize("limit", [2, 8, 20, 100])
@pytest.mark.parametrize("workers", [1, 16])
def test_whole_second_resets_rounded_either_way_keep_nine_tenths_and_one_percent_429s(
    server: type[Server],
    rounding: Rounding,
    window: float,
    limit: int,
    workers: int,
):
    """Rounded down, the last second of a window reads `reset=0`: not the end of the window."""
    _measure(Simulation([server(limit, window)], workers, rounding=rounding), limit, window)


@pytest.mark.parametrize("form", [form for form in FORMS if form != "none"])
@pytest.mark.parametrize("rounding", ["fraction", "floor", "ceil"])
@pytest.mark.parametrize("keys", [1, 2, 3])
@pytest.mark.parametrize("workers", [1, 4, 16])
def test_every_header_form_keeps_nine_tenths_and_one_percent_429s(
    form: Form, rounding: Rounding, keys: int, workers: int
):
    limit, window = 20, 10.0
    servers: list[Server] = [RestartingWindows(limit, window) for _ in range(keys)]
    _measure(Simulation(servers, workers, form=form, rounding=rounding), limit, window)


@pytest.mark.parametrize("server", [FixedWindows, RestartingWindows])
@pytest.mark.parametrize(("limit", "window"), [(2, 1.0), (20, 10.0), (8, 15.0)])
@pytest.mark.parametrize("keys", [1, 2, 3])
@pytest.mark.parametrize("workers", [1, 4, 16])
def test_without_headers_a_429_body_paces_the_windows_after_it(
    server: type[Server], limit: int, window: float, keys: int, workers: int
):
    """Close may answer only 429s with a description (`rate_limit`, `rate_window`, `rate_reset`):
    the one 429 per key that describes the window is the learning one."""
    servers: list[Server] = [server(limit, window) for _ in range(keys)]
    _measure(Simulation(servers, workers, form="none"), limit, window)


def test_without_headers_or_429s_more_requests_go_at_once_as_time_passes():
    """A limit never reached says nothing: one more request in flight after every 15 s."""
    simulation = Simulation([FixedWindows(100_000, 1.0)], workers=16, form="none")
    simulation.run(until=60.0)
    first = sum(1 for moment, _ in simulation.accepted if moment < 15.0)
    last = sum(1 for moment, _ in simulation.accepted if moment >= 45.0)
    assert simulation.rejected == 0
    # One at a time for the first 15 s (a round trip each), four at a time in the last.
    assert first <= 15.0 / LATENCY + 1
    assert last >= 0.95 * 4 * 15.0 / LATENCY, last
