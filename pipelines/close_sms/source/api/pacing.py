"""Pacing by Close's rate-limit headers: one pacer per API key, a pool of keys, waits after a 429."""

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

from .. import settings

_RATELIMIT = re.compile(
    r"limit=(?P<limit>[\d.]+)\s*[,;]\s*remaining=(?P<remaining>[\d.]+)\s*[,;]\s*reset=(?P<reset>[\d.]+)"
)
# draft-ietf-httpapi-ratelimit-headers: `RateLimit: "default";r=5;t=3` (remaining, reset) and
# `RateLimit-Policy: "default";q=10;w=10` (limit, window).
_IETF_ITEM = re.compile(r"(?:^|;)\s*(?P<name>[rtqw])=(?P<value>\d+(?:\.\d+)?)")
# Close's longest recorded window: without any rate-limit description, one more request may be
# in flight after each such span without a 429.
_HEADERLESS_RAMP_SECONDS = 15.0
# Where a whole-second `reset` may put the window's end, from (request sent + reset) to
# (answer received + reset): rounded down, up to a second later; rounded up, up to one earlier.
_ROUNDING_SLACK = {"floor": (0.0, 1.0), "ceil": (-1.0, 0.0)}


@dataclass(frozen=True)
class RateReading:
    """What one answer says of its endpoint group's window."""

    limit: float | None
    remaining: float
    reset: float
    # `reset` written in whole seconds, rounded one way or the other (Close's 2025 answers).
    whole: bool = False
    # The window's length when the answer states it (the IETF policy's `w`, a 429 body's).
    window: float | None = None


def read_rate_limit(headers: Mapping[str, str]) -> RateReading | None:
    """The reading of any rate-limit header form Close has sent, or None when there is none.

    Forms: `RateLimit: limit=, remaining=, reset=` (commas or semicolons), the IETF draft's
    `RateLimit`/`RateLimit-Policy`, and `X-Rate-Limit-*` or `RateLimit-*` as separate headers.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    combined = lowered.get("ratelimit", "")
    if match := _RATELIMIT.search(combined):
        return _reading(match["limit"], match["remaining"], match["reset"])
    items = {m["name"]: m["value"] for m in _IETF_ITEM.finditer(combined)}
    if "r" in items and "t" in items:
        policy = {
            m["name"]: m["value"] for m in _IETF_ITEM.finditer(lowered.get("ratelimit-policy", ""))
        }
        window = float(policy["w"]) if "w" in policy else None
        return _reading(policy.get("q"), items["r"], items["t"], window)
    for prefix in ("x-rate-limit-", "ratelimit-"):
        remaining, reset = lowered.get(prefix + "remaining"), lowered.get(prefix + "reset")
        if remaining is not None and reset is not None:
            with contextlib.suppress(ValueError):
                return _reading(lowered.get(prefix + "limit"), remaining, reset)
    return None


def read_429_body(response: requests.Response) -> RateReading | None:
    """The deprecated 429 body's `rate_limit`/`rate_reset`/`rate_window` (top level or under
    `error`): the only description of the window when no header carries one."""
    try:
        body = json_body(response)
    except ValueError:
        return None
    for holder in (body, body.get("error")) if isinstance(body, dict) else ():
        if isinstance(holder, dict) and holder.get("rate_reset") is not None:
            with contextlib.suppress(TypeError, ValueError):
                window = holder.get("rate_window")
                return _reading(
                    holder.get("rate_limit"),
                    0,
                    holder["rate_reset"],
                    float(window) if window else None,
                )
    return None


def _reading(limit: Any, remaining: Any, reset: Any, window: float | None = None) -> RateReading:
    """A reading from the header's text; ValueError when a number is not one."""
    text = str(reset).strip()
    return RateReading(
        float(limit) if limit is not None else None,
        float(remaining),
        float(text),
        whole="." not in text,
        window=window,
    )


@dataclass
class _Budget:
    """One endpoint group's budget: what its last answers said, and slots promised since."""

    limit: float | None = None
    remaining: float = 0.0
    # Where the described window ends, at the earliest and at the latest: its remaining
    # requests are spread up to the first, the next window is assumed from the second. They
    # differ only when `reset` is whole seconds.
    ends_early: float = 0.0
    ends_at: float = 0.0
    # The longest `reset` seen: how long the windows after the described one are assumed to last.
    window: float = 0.0
    # When the first answer came (None: not yet).
    first_answer: float | None = None
    # Seconds from a slot to its answer (moving average): a request sent later than this before
    # a window's end lands in the next window.
    round_trip: float = 0.0
    # Slot times handed out and not answered yet, earliest first. Answers come back in the
    # order requests were sent, so each answer is matched with the earliest slot.
    slots: list[float] = field(default_factory=list)
    # Whole-second readings: the roundings not yet ruled out, where each puts the described
    # window's end (the intersection of its answers), and its last request and `remaining`.
    roundings: tuple[str, ...] = tuple(_ROUNDING_SLACK)
    ends: dict[str, tuple[float, float]] = field(default_factory=dict)
    last_sent: float = 0.0
    last_remaining: float = 0.0
    # Described by a 429's body only: Close's answers carry no rate-limit header. Then the
    # answer times of the requests since that 429 (the latest `limit`) are all there is to count.
    headerless: bool = False
    answers: list[float] = field(default_factory=list)


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
    low limit. `tests/source/test_pacer.py` holds it to 0.90 of the budget in both readings.
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

    def _next_slot(self, budget: _Budget, now: float) -> float | None:
        if budget.slots and budget.slots[-1] > now:
            # One slot promised ahead at a time: the next is placed once it is due, with what
            # the answers that came meanwhile said, not with what was known when it was asked.
            return None
        start = max(now, self._paused_until)
        if budget.limit is None:
            if budget.first_answer is None:
                return None if budget.slots else start
            # No description yet (answers without headers): one request at a time, one more
            # for every span of Close's longest window without a 429, so that the 429 that
            # describes the window finds few others in flight.
            allowed = 1 + (now - budget.first_answer) // _HEADERLESS_RAMP_SECONDS
            return None if len(budget.slots) >= allowed else start
        if budget.headerless:
            return _sliding_slot(budget, start)
        described = [slot for slot in budget.slots if slot < budget.ends_at]
        # Whole-second resets, rounding unknown: the window ends by the earliest of the
        # roundings' latest ends, or a second later.
        probe_at = min(hi for _, hi in budget.ends.values()) if budget.ends else budget.ends_at
        if start < probe_at:
            left = budget.remaining - len(described)
            if left >= 1:
                return _spread(start, described, budget.ends_early - budget.round_trip, left)
            start = probe_at
        if start < budget.ends_at:
            # One request at a time until an answer says which: a new window, or `reset=0`
            # (rounded down) that rules the other rounding out for the rest of the run.
            return None if any(slot >= probe_at for slot in budget.slots) else start
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

    def observe(
        self, group: str, headers: Mapping[str, str], fallback: RateReading | None = None
    ) -> None:
        """End one request of `group`; update its budget from its rate-limit headers, else from
        `fallback` (a 429 body's reading)."""
        reading = read_rate_limit(headers)
        headerless = reading is None and fallback is not None
        reading = reading or fallback
        with self._lock:
            now = self._clock()
            budget = self._budgets.setdefault(group, _Budget())
            sent = now
            if budget.slots:
                sent = budget.slots.pop(0)
                sample = max(0.0, now - sent)
                first = budget.first_answer is None
                budget.round_trip += sample if first else (sample - budget.round_trip) / 5
            if budget.first_answer is None:
                budget.first_answer = now
            if reading is None:
                if budget.headerless and budget.limit is not None:
                    budget.answers = [*budget.answers, now][-int(budget.limit) :]
                return
            # Without a stated limit, at least what is left plus the answered request.
            budget.limit = (
                reading.limit
                if reading.limit is not None
                else max(budget.limit or 0.0, reading.remaining + 1)
            )
            budget.remaining = reading.remaining
            budget.headerless = headerless
            # The 429's window holds every request before it; the count starts at its end.
            budget.answers = []
            if reading.whole:
                _place_whole_second_end(budget, reading, sent, now)
                # The spread of the next window's first slots, not its count, hangs on it: a
                # second at least, as whole seconds are written.
                longest = max(reading.reset, 1.0)
            else:
                longest = max(reading.reset, 0.001)
                budget.ends = {}
                budget.ends_early = budget.ends_at = now + longest
            budget.window = reading.window or max(budget.window, longest)

    def pause(self, seconds: float) -> None:
        """Hold every group after a 429: the key's limits may be counted across groups."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


def _place_whole_second_end(budget: _Budget, reading: RateReading, sent: float, now: float) -> None:
    """Narrow where the described window ends from a whole-second `reset`.

    Each answer puts the end within a second (rounded down: `reset` to `reset + 1` after the
    request; rounded up: `reset - 1` to `reset`); the answers of one window together narrow it
    to their intersection. A rounding is ruled out once its intersection is empty, and rounded
    up, no answer reads 0 before the window's very end.
    """
    if reading.reset == 0 and "floor" in budget.roundings:
        budget.roundings = ("floor",)
    answer = {
        rounding: (sent + reading.reset + early, now + reading.reset + late)
        for rounding in budget.roundings
        for early, late in [_ROUNDING_SLACK[rounding]]
    }
    new_window = (
        not budget.ends or reading.remaining > budget.last_remaining or sent >= budget.ends_at
    )
    if new_window and budget.ends:
        # The described window ended between its last request and this one.
        bracketed = {
            r: (max(lo, budget.last_sent), min(hi, now)) for r, (lo, hi) in budget.ends.items()
        }
        _rule_out(budget, bracketed)
    elif not new_window:
        merged = {
            r: (max(lo, budget.ends[r][0]), min(hi, budget.ends[r][1]))
            for r, (lo, hi) in answer.items()
            if r in budget.ends
        }
        # No rounding fits both: Close started a new window after all.
        if _rule_out(budget, merged):
            answer = merged
    budget.ends = {r: answer[r] for r in budget.roundings if r in answer}
    budget.last_sent, budget.last_remaining = sent, reading.remaining
    budget.ends_early = min(lo for lo, _ in budget.ends.values())
    budget.ends_at = max(hi for _, hi in budget.ends.values())


def _sliding_slot(budget: _Budget, start: float) -> float | None:
    """The next slot when only a 429's body described the window: none before its end, then
    no more than `limit` requests within any `window` (the answer `limit` requests back plus a
    window), which holds whether Close's windows are aligned or start at their first request."""
    start = max(start, budget.ends_at)
    free = int(budget.limit or 1) - len(budget.slots)
    if free < 1:
        return None
    if len(budget.answers) < free:
        return start
    return max(start, budget.answers[-free] + budget.window)


def _rule_out(budget: _Budget, ends: Mapping[str, tuple[float, float]]) -> bool:
    """Drop the roundings whose `ends` are empty, unless that is all of them (then False)."""
    possible = tuple(r for r in budget.roundings if r in ends and ends[r][0] <= ends[r][1])
    if not possible:
        return False
    budget.roundings = possible
    return True


def _spread(start: float, promised: list[float], window_end: float, left: float) -> float:
    """The next slot of a window: its `left` requests evenly from its last promised slot to its end."""
    if not promised:
        return start
    return max(start, promised[-1] + max(0.0, window_end - promised[-1]) / (left + 1))


@dataclass(frozen=True)
class KeySlot:
    """A claimed request slot, due now: which key sends."""

    key: int
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
        """Claim a slot of `group` that is due now on any key (or on `key`); None: wait.

        Slots are claimed only once due, never promised ahead: a slot computed earlier would
        miss what the answers that came meanwhile said (a window's end narrowed, a 429).
        """
        with self._answered:
            moment = self._soonest(group, key)
            if moment is None or moment[0] > self._clock():
                return None
            wait = self._pacers[moment[1]].reserve(group)
            return None if wait is None else KeySlot(moment[1])

    def due(self, group: str, key: int | None = None) -> float | None:
        """When the next slot of `group` (on `key`) is due; None: not before an answer."""
        with self._answered:
            moment = self._soonest(group, key)
            return None if moment is None else moment[0]

    def _soonest(self, group: str, key: int | None) -> tuple[float, int] | None:
        """The soonest next slot of `group` over the keys (or `key`), and its key."""
        candidates = range(len(self.keys)) if key is None else [key]
        # Rotating the start breaks ties between equally free keys in turn.
        turn = next(self._turn)
        soonest: tuple[float, int] | None = None
        for index in sorted(candidates, key=lambda i: (i - turn) % len(self.keys)):
            moment = self._pacers[index].next_slot(group)
            if moment is not None and (soonest is None or moment < soonest[0]):
                soonest = (moment, index)
        return soonest

    def claim(self, group: str, key: int | None = None) -> KeySlot:
        """`reserve`, waiting while it has no slot: until an answer, or the next slot is due."""
        began = None
        with self._answered:
            while (slot := self.reserve(group, key)) is None:
                began = self._clock() if began is None else began
                due = self.due(group, key)
                # Answers wake the waiters; the timeout only re-checks in case one never comes.
                timeout = (
                    due - self._clock() if due is not None else settings.KEY_POOL_RECHECK_SECONDS
                )
                self._answered.wait(max(0.0, timeout))
        blocked = 0.0 if began is None else self._clock() - began
        return KeySlot(slot.key, blocked)

    def observe(
        self, key: int, group: str, headers: Mapping[str, str], fallback: RateReading | None = None
    ) -> None:
        """End one request of `key` (see `RateLimitPacer.observe`)."""
        with self._answered:
            self._pacers[key].observe(group, headers, fallback)
            self._answered.notify_all()

    def pause(self, key: int, seconds: float) -> None:
        """Hold every group of `key` after a 429."""
        self._pacers[key].pause(seconds)


def retry_wait_from_429(response: requests.Response) -> float:
    """Seconds to wait after a 429: the longest of the rate-limit header's reset, Retry-After
    and the legacy body's rate_reset, since each may describe a different limit."""
    waits: list[float] = []
    for reading in (read_rate_limit(response.headers), read_429_body(response)):
        if reading is not None:
            waits.append(reading.reset)
    with contextlib.suppress(TypeError, ValueError):
        waits.append(float(response.headers.get("retry-after")))
    return max(waits) if waits else 2.0


def json_body(response: requests.Response) -> Any:
    """The response's JSON body; ValueError if it is not JSON.

    orjson decodes a page of 100 SMS in half the time of `response.json()` (simplejson or json).
    """
    return orjson.loads(response.content)
