"""HTTP client for Close's API: authentication, pacing by the RateLimit header, retries."""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import requests

from .. import settings
from ..errors import AuthError, CloseApiError, UnreachableError

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
    remaining: float | None = None
    reset_at: float = 0.0
    limit: float | None = None
    window: float = 1.0
    next_slot: float = 0.0
    in_flight: int = 0


class RateLimitPacer:
    """Spaces requests per endpoint group from the `RateLimit` header Close sends.

    Written here because no library reads Close's `limit=, remaining=, reset=` header; it lets
    concurrent workers share one budget and slow down before Close answers 429.

    Close documents `reset` as the seconds until the enforcement window ends, so the
    `remaining` requests, less the ones still in flight and a safety margin, are spread evenly
    over what is left of the window. Against a token bucket whose `reset` is the time until the
    bucket is full again, the same rule settles at the bucket's refill rate with about half the
    bucket in reserve, so it uses the whole budget without a 429 either way.
    """

    def __init__(self, safety_margin: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._budgets: dict[str, _Budget] = {}
        self._paused_until = 0.0
        self._margin = safety_margin
        self._clock = clock

    def reserve(self, group: str) -> float:
        """Claim the next request slot of `group`; returns how long to sleep before sending.

        Every `reserve` must be followed by one `observe` (with the response's headers, or
        empty ones when no response came), which ends the request's time in flight.
        """
        with self._lock:
            now = self._clock()
            budget = self._budgets.setdefault(group, _Budget())
            start = max(now, self._paused_until, budget.next_slot)
            if budget.remaining is not None:
                if start >= budget.reset_at:
                    # The window ended since the last answer: its full limit is back, for a
                    # window as long as the last answer's `reset` said (not an assumed second).
                    budget.remaining = budget.limit
                    budget.reset_at = start + budget.window
                # Requests in flight are not counted in the last `remaining` yet.
                left = (budget.remaining or 0) - self._margin - budget.in_flight
                if left >= 1:
                    # Spreading what is left over the rest of the window never bursts into a
                    # 429 and never starves at the end (benchmark row c: 0.97 of the budget).
                    budget.next_slot = start + (budget.reset_at - start) / left
                else:
                    # Nothing safe left in this window: wait for its end, when the limit is back.
                    start = budget.next_slot = max(start, budget.reset_at)
            budget.in_flight += 1
            return max(0.0, start - now)

    def observe(self, group: str, headers: Mapping[str, str]) -> None:
        """End one request of `group`; update its budget from the `RateLimit` header if any."""
        match = _RATELIMIT.search(headers.get("ratelimit", ""))
        with self._lock:
            budget = self._budgets.setdefault(group, _Budget())
            budget.in_flight = max(0, budget.in_flight - 1)
            if not match:
                return
            budget.limit = float(match["limit"])
            budget.remaining = float(match["remaining"])
            budget.window = max(float(match["reset"]), 0.001)
            budget.reset_at = self._clock() + budget.window

    def pause(self, seconds: float) -> None:
        """Hold every group after a 429, which Close may count per organization."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


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
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for holder in (body, body.get("error")):
            if isinstance(holder, dict) and holder.get("rate_reset") is not None:
                with contextlib.suppress(TypeError, ValueError):
                    waits.append(float(holder["rate_reset"]))
    return max(waits) if waits else 2.0


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
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
        self,
        base_url: str,
        api_key: str,
        config: ClientConfig | None = None,
        pacer: RateLimitPacer | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.config = config or ClientConfig()
        self.pacer = pacer or RateLimitPacer()
        self.stats = RequestStats()
        self._stats_lock = threading.Lock()
        self._local = threading.local()
        self._api_key = api_key
        self.server_time: datetime | None = None

    def _session(self) -> requests.Session:
        # requests.Session is not guaranteed thread-safe: one per worker thread.
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = (self._api_key, "")
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

    def me(self) -> dict[str, Any]:
        """The key's user and organization; the cheapest call that proves the key works."""
        return self.get(settings.ME_ENDPOINT)

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        # Written here rather than with urllib3's Retry: Close's waits come from the RateLimit
        # header and a legacy body field, and truncated or invalid bodies fail after urllib3.
        group = _ID_SEGMENT.sub("/{id}/", path)
        url = self.base_url + path
        failures = throttled = 0
        while True:
            self._sleep(self.pacer.reserve(group), "rate limit")
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
                        timeout=(self.config.connect_timeout, self.config.read_timeout),
                    )
                finally:
                    # Always ends the request's time in flight, even when no response came.
                    self.pacer.observe(group, response.headers if response is not None else {})
                self._note_server_time(response)
                if response.status_code == 429:
                    self._count("responses_429")
                    wait = retry_wait_from_429(response)
                    self.pacer.pause(wait)
                    throttled += 1
                    if throttled > self.config.max_retries * 4:
                        raise UnreachableError(f"{method} {path}: still rate limited (429)")
                    continue
                if response.status_code in (401, 403):
                    raise AuthError(
                        f"Close rejected the API key (HTTP {response.status_code}): "
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
            body = response.json()
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

    def _sleep(self, seconds: float, reason: str) -> None:
        if seconds <= 0:
            return
        if reason == "rate limit":
            with self._stats_lock:
                self.stats.rate_limit_waits += 1
                self.stats.rate_limit_wait_seconds += seconds
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
