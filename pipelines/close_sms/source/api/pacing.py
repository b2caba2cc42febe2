"""Pacing by Close's `RateLimit` header: one pacer per API key, a pool of keys, waits after a 429."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests

from ... import settings

_RATELIMIT = re.compile(
    r"limit=(?P<limit>[\d.]+)\s*[,;]\s*remaining=(?P<remaining>[\d.]+)\s*[,;]\s*reset=(?P<reset>[\d.]+)"
)


@dataclass
class _Budget:
    """One endpoint group's budget: what its last `RateLimit` answer said, and slots promised since."""

    limit: float | None = None
    remaining: float = 0.0
    ends_at: float = 0.0
    # The longest `reset` seen: how long the windows after the described one are assumed to last.
    window: float = 0.0
    answered: bool = False
    # Seconds from a slot to its answer (moving average): a request sent later than this before
    # a window's end lands in the next window.
    round_trip: float = 0.0
    # Slot times handed out and not answered yet, earliest first. Answers come back in the
    # order requests were sent, so each answer is matched with the earliest slot.
    slots: list[float] = field(default_factory=list)


class RateLimitPacer:
    """Spaces one API key's requests per endpoint group from the `RateLimit` header Close sends.

    Written here because no library reads Close's `limit=, remaining=, reset=` header; it lets
    concurrent workers share one budget and slow down before Close answers 429.

    Every request gets a slot in time. The last answer says how many requests its window has
    left (`remaining`) and when the window ends (`reset`); the slots promised after that answer's
    request count against it, and its remaining requests are spread evenly up to its end, less
    one round trip (a request sent later lands in the next window). The window after it is
    assumed as long as the longest `reset` seen, with `limit` less the slots promised before
    the described window's end. This holds in both readings of the header:

    - fixed windows (Close's documentation): no window gets more slots than it allows;
    - a token bucket whose `reset` is the time until the bucket is full again: the described
      window's `remaining` tokens are there now, and at its end the bucket holds `limit` less
      what was sent since; spreading `remaining` over `reset` is faster than the refill when the
      bucket is more than half full and slower below, so the pace settles at the refill rate.

    Only one slot is promised ahead at a time (`reserve` returns None to the others until it is
    due, or until an answer), so every slot is placed with the latest answer. Until a group's
    first answer one request probes it, so many workers starting together do not burst past a
    low limit. `tests/reliability/test_pacer.py` holds it to 0.90 of the budget in both readings.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._budgets: dict[str, _Budget] = {}
        self._paused_until = 0.0
        self._clock = clock

    def next_slot(self, group: str) -> float | None:
        """When the next request of `group` may go (clock time); None: wait (see the class)."""
        with self._lock:
            return self._next_slot(self._budgets.setdefault(group, _Budget()), self._clock())

    def reserve(self, group: str) -> float | None:
        """Claim the next slot of `group`: seconds to sleep before sending, or None (see class).

        Every claimed slot must be followed by one `observe` (with the response's headers, or
        empty ones when no response came), which ends the request's time in flight.
        """
        with self._lock:
            now = self._clock()
            budget = self._budgets.setdefault(group, _Budget())
            slot = self._next_slot(budget, now)
            if slot is None:
                return None
            bisect.insort(budget.slots, slot)
            return slot - now

    def due(self, group: str) -> float | None:
        """When the slot `group` has promised ahead is due (None: none is, wait for an answer)."""
        with self._lock:
            slots = self._budgets.setdefault(group, _Budget()).slots
            return slots[-1] if slots and slots[-1] > self._clock() else None

    def _next_slot(self, budget: _Budget, now: float) -> float | None:
        if budget.slots and budget.slots[-1] > now:
            # One slot promised ahead at a time: the next is placed once it is due, with what
            # the answers that came meanwhile said, not with what was known when it was asked.
            return None
        start = max(now, self._paused_until)
        if budget.limit is None:
            return None if budget.slots and not budget.answered else start
        described = [slot for slot in budget.slots if slot < budget.ends_at]
        if start < budget.ends_at:
            left = budget.remaining - len(described)
            if left >= 1:
                return _spread(start, described, budget.ends_at - budget.round_trip, left)
            start = budget.ends_at
        if start < budget.ends_at + budget.window:
            # The window after the described one. In a token bucket's reading its `limit` is
            # back only if nothing was sent since the answer: the slots promised before the
            # described window's end are taken from it.
            window_start, allowed = budget.ends_at, budget.limit - len(described)
        elif budget.slots:
            # No promises further ahead: an answer first says how the budget really stands.
            return None
        else:
            window_start = start - (start - budget.ends_at) % budget.window
            allowed = budget.limit
        window_end = window_start + budget.window
        promised = [slot for slot in budget.slots if window_start <= slot < window_end]
        left = allowed - len(promised)
        if left < 1:
            # Nothing left means slots are promised: their answers come before any new slot.
            return None
        return _spread(start, promised, window_end - budget.round_trip, left)

    def observe(self, group: str, headers: Mapping[str, str]) -> None:
        """End one request of `group`; update its budget from the `RateLimit` header if any."""
        match = _RATELIMIT.search(headers.get("ratelimit", ""))
        with self._lock:
            budget = self._budgets.setdefault(group, _Budget())
            if budget.slots:
                sample = max(0.0, self._clock() - budget.slots.pop(0))
                budget.round_trip += (sample - budget.round_trip) / 5 if budget.answered else sample
            budget.answered = True
            if not match:
                return
            reset = max(float(match["reset"]), 0.001)
            budget.limit = float(match["limit"])
            budget.remaining = float(match["remaining"])
            budget.window = max(budget.window, reset)
            budget.ends_at = self._clock() + reset

    def pause(self, seconds: float) -> None:
        """Hold every group after a 429: the key's limits may be counted across groups."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


def _spread(start: float, promised: list[float], window_end: float, left: float) -> float:
    """The next slot of a window: its `left` requests evenly from its last promised slot to its end."""
    if not promised:
        return start
    return max(start, promised[-1] + max(0.0, window_end - promised[-1]) / (left + 1))


@dataclass(frozen=True)
class KeySlot:
    """A claimed request slot: which key sends, and how long to sleep first."""

    key: int
    wait: float
    # Seconds `KeyPool.claim` waited before the slot was claimed.
    blocked: float = 0.0


class KeyPool:
    """Close API keys of one organization, each paced by its own `RateLimitPacer`.

    Each request goes to the key whose budget frees soonest (ties in turn), so every key's
    budget is used whatever the number of workers, and the others take over while one is
    paused. A 429 pauses only its own key: Close's organization limit is three times a key's,
    so with up to three keys it is the key's own limit that answered.
    """

    def __init__(self, keys: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = tuple(keys)
        self._clock = clock
        self._pacers = [RateLimitPacer(clock) for _ in self.keys]
        self._answered = threading.Condition()
        self._turn = itertools.count()

    def describe(self, key: int) -> str:
        """The key by position, never by value: "key 2 of 3" (or "the API key")."""
        return f"key {key + 1} of {len(self.keys)}" if len(self.keys) > 1 else "the API key"

    def reserve(self, group: str, key: int | None = None) -> KeySlot | None:
        """Claim the soonest slot of `group` on any key (or on `key`); None: wait for an answer."""
        with self._answered:
            candidates = range(len(self.keys)) if key is None else [key]
            # Rotating the start breaks ties between equally free keys in turn.
            turn = next(self._turn)
            soonest: tuple[float, int] | None = None
            for index in sorted(candidates, key=lambda i: (i - turn) % len(self.keys)):
                moment = self._pacers[index].next_slot(group)
                if moment is not None and (soonest is None or moment < soonest[0]):
                    soonest = (moment, index)
            if soonest is None:
                return None
            wait = self._pacers[soonest[1]].reserve(group)
            return None if wait is None else KeySlot(soonest[1], wait)

    def claim(self, group: str, key: int | None = None) -> KeySlot:
        """`reserve`, waiting while it has no slot: until an answer, or a promised slot is due."""
        began = None
        with self._answered:
            while (slot := self.reserve(group, key)) is None:
                began = self._clock() if began is None else began
                candidates = range(len(self.keys)) if key is None else [key]
                due = [d for i in candidates if (d := self._pacers[i].due(group)) is not None]
                # Answers wake the waiters; the timeout only re-checks in case one never comes.
                timeout = min(due) - self._clock() if due else settings.KEY_POOL_RECHECK_SECONDS
                self._answered.wait(max(0.0, timeout))
        blocked = 0.0 if began is None else self._clock() - began
        return KeySlot(slot.key, slot.wait, blocked)

    def observe(self, key: int, group: str, headers: Mapping[str, str]) -> None:
        """End one request of `key` (see `RateLimitPacer.observe`)."""
        with self._answered:
            self._pacers[key].observe(group, headers)
            self._answered.notify_all()

    def pause(self, key: int, seconds: float) -> None:
        """Hold every group of `key` after a 429."""
        self._pacers[key].pause(seconds)


def retry_wait_from_429(response: requests.Response) -> float:
    """Seconds to wait after a 429: the longest of RateLimit's reset, Retry-After and the
    legacy body's rate_reset, since each may describe a different limit."""
    waits: list[float] = []
    match = _RATELIMIT.search(response.headers.get("ratelimit", ""))
    if match:
        waits.append(float(match["reset"]))
    with contextlib.suppress(TypeError, ValueError):
        waits.append(float(response.headers.get("retry-after")))
    try:
        body = json_body(response)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for holder in (body, body.get("error")):
            if isinstance(holder, dict) and holder.get("rate_reset") is not None:
                with contextlib.suppress(TypeError, ValueError):
                    waits.append(float(holder["rate_reset"]))
    return max(waits) if waits else 2.0


def json_body(response: requests.Response) -> Any:
    """The response's JSON body; ValueError if it is not JSON.

    orjson decodes a page of 100 SMS in half the time of `response.json()` (simplejson or json).
    """
    return orjson.loads(response.content)
