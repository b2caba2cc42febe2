"""HTTP client for Close's API: authentication, pacing by the RateLimit header, retries."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import requests

from ... import settings
from ...errors import AuthError, CloseApiError, UnreachableError

_RATELIMIT = re.compile(
    r"limit=(?P<limit>[\d.]+)\s*[,;]\s*remaining=(?P<remaining>[\d.]+)\s*[,;]\s*reset=(?P<reset>[\d.]+)"
)
_RETRY_STATUSES = frozenset({502, 503, 504})
# An object id in a path (`acti_...`): item requests share one pacing group, and a path
# without one is a list.
_ID_SEGMENT = re.compile(r"/[a-z]+_[A-Za-z0-9_-]+/")
# The start of the 404 body Close's REST framework sends for a record deleted mid-query.
EMPTY_QUERY = "Empty query"


class RequestRejected(CloseApiError):
    """Close answered a 4xx other than 401/403/429: the request itself is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class InvalidResponse(CloseApiError):
    """Close kept answering with something that is not the expected JSON."""


@dataclass
class RequestStats:
    """Counters a run reports as progress."""

    requests: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0
    responses_429: int = 0


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


@dataclass
class ClientConfig:
    """Transport settings of a `CloseClient`."""

    connect_timeout: float = settings.CONNECT_TIMEOUT
    read_timeout: float = settings.READ_TIMEOUT
    max_retries: int = settings.MAX_RETRIES
    backoff_base: float = settings.BACKOFF_BASE_SECONDS
    backoff_max: float = settings.BACKOFF_MAX_SECONDS
    user_agent: str = "close-sms/0.1 (+dlt)"
    on_wait: Callable[[str, float], None] | None = field(default=None, repr=False)


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
        body = _json_body(response)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for holder in (body, body.get("error")):
            if isinstance(holder, dict) and holder.get("rate_reset") is not None:
                with contextlib.suppress(TypeError, ValueError):
                    waits.append(float(holder["rate_reset"]))
    return max(waits) if waits else 2.0


def _json_body(response: requests.Response) -> Any:
    """The response's JSON body; ValueError if it is not JSON.

    orjson decodes a page of 100 SMS in half the time of `response.json()` (simplejson or json).
    """
    return orjson.loads(response.content)


def _error_message(response: requests.Response) -> str:
    try:
        body = _json_body(response)
    except ValueError:
        return (response.text or response.reason or "").strip()[:300]
    if isinstance(body, dict):
        if body.get("error"):
            return str(body["error"])
        if body.get("field-errors") or body.get("errors"):
            return json.dumps({k: body.get(k) for k in ("errors", "field-errors")})
    return str(body)[:300]


class CloseClient:
    """A thread-safe JSON client for Close's REST API."""

    def __init__(
        self, base_url: str, api_keys: str | Sequence[str], config: ClientConfig | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.config = config or ClientConfig()
        self.keys = KeyPool([api_keys] if isinstance(api_keys, str) else api_keys)
        self.stats = RequestStats()
        self._stats_lock = threading.Lock()
        self._local = threading.local()
        self.server_time: datetime | None = None

    def _session(self) -> requests.Session:
        # requests.Session is not guaranteed thread-safe: one per worker thread.
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(
                {"User-Agent": self.config.user_agent, "Accept": "application/json"}
            )
            self._local.session = session
        return session

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET `path`; long query strings go as Close's POST with `x-http-method-override`."""
        params = dict(params or {})
        url = self.base_url + path
        if len(url) + len(urlencode(params)) + 1 > settings.MAX_URL_LENGTH:
            return self._request(
                "POST",
                path,
                json_body={"_params": params},
                headers={"x-http-method-override": "GET"},
            )
        return self._request("GET", path, params=params)

    def check_keys(self) -> None:
        """GET `/me/` (the cheapest call) with every key: a rejected one stops the run first."""
        for key in range(len(self.keys.keys)):
            self._request("GET", settings.ME_ENDPOINT, key=key)

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        key: int | None = None,
    ) -> dict[str, Any]:
        # Written here rather than with urllib3's Retry: Close's waits come from the RateLimit
        # header and a legacy body field, and truncated or invalid bodies fail after urllib3.
        group = _ID_SEGMENT.sub("/{id}/", path)
        url = self.base_url + path
        failures = throttled = 0
        while True:
            sender = self._await_slot(group, key)
            self._count("requests")
            try:
                response = None
                try:
                    response = self._session().request(
                        method,
                        url,
                        params=params,
                        json=json_body,
                        headers=headers,
                        auth=(self.keys.keys[sender], ""),
                        timeout=(self.config.connect_timeout, self.config.read_timeout),
                    )
                finally:
                    # Always ends the request's time in flight, even when no response came.
                    self.keys.observe(
                        sender, group, response.headers if response is not None else {}
                    )
                self._note_server_time(response)
                if response.status_code == 429:
                    self._count("responses_429")
                    self.keys.pause(sender, retry_wait_from_429(response))
                    throttled += 1
                    if throttled > self.config.max_retries * 4:
                        raise UnreachableError(f"{method} {path}: still rate limited (429)")
                    continue
                if response.status_code in (401, 403):
                    raise AuthError(
                        f"Close rejected {self.keys.describe(sender)} (HTTP {response.status_code}): "
                        f"{_error_message(response)}"
                    )
                if response.status_code in _RETRY_STATUSES:
                    raise _Retryable(f"HTTP {response.status_code}")
                if 400 <= response.status_code < 500:
                    message = _error_message(response)
                    if (
                        response.status_code == 404
                        and message.startswith(EMPTY_QUERY)
                        and group == path
                    ):
                        # Close's framework answers a list whose record at the offset was
                        # deleted mid-query this way; on an item it means the item is gone.
                        raise _Retryable(f"HTTP 404 {message}")
                    raise RequestRejected(response.status_code, message)
                if response.status_code >= 500:
                    raise _Retryable(f"HTTP {response.status_code}")
                body = self._decode(response)
            except requests.exceptions.ConnectionError as exc:
                if _is_connect_failure(exc) and failures >= min(2, self.config.max_retries):
                    raise UnreachableError(f"cannot connect to {self.base_url}") from None
                failures = self._backoff(failures, method, path, "connection failed")
            except (requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError):
                failures = self._backoff(failures, method, path, "timed out or cut off")
            except _Retryable as exc:
                failures = self._backoff(failures, method, path, str(exc))
            else:
                return body

    def _decode(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = _json_body(response)
        except ValueError:
            raise _Retryable("response is not valid JSON") from None
        if not isinstance(body, dict):
            raise _Retryable("response is not a JSON object")
        return body

    def _backoff(self, failures: int, method: str, path: str, reason: str) -> int:
        failures += 1
        if failures > self.config.max_retries:
            error = InvalidResponse if "JSON" in reason else UnreachableError
            raise error(f"{method} {path}: {reason}, after {self.config.max_retries} retries")
        self._count("retries")
        cap = min(self.config.backoff_max, self.config.backoff_base * 2 ** (failures - 1))
        self._sleep(random.uniform(cap / 2, cap), reason)
        return failures

    def _await_slot(self, group: str, key: int | None) -> int:
        """Wait for the next slot of `group` (on `key`, or the key free soonest); its key."""
        slot = self.keys.claim(group, key)
        if slot.wait > 0 or slot.blocked > 0:
            with self._stats_lock:
                self.stats.rate_limit_waits += 1
                self.stats.rate_limit_wait_seconds += slot.wait + slot.blocked
        self._sleep(slot.wait, "rate limit")
        return slot.key

    def _sleep(self, seconds: float, reason: str) -> None:
        if seconds <= 0:
            return
        if self.config.on_wait:
            self.config.on_wait(reason, seconds)
        time.sleep(seconds)

    def _count(self, name: str) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _note_server_time(self, response: requests.Response) -> None:
        header = response.headers.get("date")
        if not header:
            return
        with contextlib.suppress(TypeError, ValueError):
            self.server_time = parsedate_to_datetime(header).astimezone(timezone.utc)

    def now(self) -> datetime:
        """Close's clock as of the last response, else the local clock."""
        return self.server_time or datetime.now(timezone.utc)


class _Retryable(Exception):
    """A transient failure: retried with capped exponential backoff."""


def _is_connect_failure(exc: requests.exceptions.ConnectionError) -> bool:
    # A refused or unresolvable connection means a wrong URL far more often than a blip.
    text = repr(exc)
    return any(
        marker in text
        for marker in ("NewConnectionError", "NameResolutionError", "Connection refused")
    )
