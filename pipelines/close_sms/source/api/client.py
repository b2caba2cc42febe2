"""HTTP client for Close's API: authentication, retries; pacing is `pacing.py`'s."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sys
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
from urllib3.exceptions import MaxRetryError, NewConnectionError

from ...errors import (
    AuthError,
    CloseApiError,
    ConfigError,
    UnreachableError,
    sleep_heeding_signals,
)
from .. import settings
from .pacing import KeyPool, json_body, read_429_body, read_rate_limit, retry_wait_from_429
from .scheme import wrong_scheme_hint

logger = logging.getLogger(__name__)

# Close's organization limit is three times a key's (its rate-limit documentation).
KEYS_PER_ORGANIZATION_LIMIT = 3
# The start of the 404 body Close's REST framework sends for a record deleted mid-query.
EMPTY_QUERY = "Empty query"
# Quick retries of such a list page, for the transient case, before the caller steps past it.
EMPTY_QUERY_RETRIES = 2
# The connect timeout (TCP and TLS handshake) until the server first answers: an https URL for
# a plain-HTTP server waits it out whole, so a wrong scheme is told within seconds. A slow
# first handshake costs one retry at the full timeout.
FIRST_CONTACT_TIMEOUT = 5.0


class RequestRejected(CloseApiError):
    """Close answered a 4xx other than 401/403/429: the request itself is wrong.

    `request` is its method and path ("GET /activity/sms/"), never its key.
    """

    def __init__(self, status: int, message: str, request: str) -> None:
        super().__init__(f"{request}: HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.request = request


class OverrideRefused(RequestRejected):
    """Close refused the POST override for a query too long for a URL (400 or 405)."""


class DeletedMidQuery(CloseApiError):
    """A list page kept answering 404 "Empty query": a deleted SMS Close still lists lies in it."""


class InvalidResponse(CloseApiError):
    """Close kept answering with something that is not the expected JSON."""


class UncertainWrite(CloseApiError):
    """A write that is not safe to repeat may have reached Close, but its answer did not come."""


@dataclass
class RequestStats:
    """Counters a run reports as progress."""

    requests: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0
    responses_429: int = 0


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
    # Where the client's warnings go (one line each); without it, this module's logger.
    on_warning: Callable[[str], None] | None = field(default=None, repr=False)


def _error_message(response: requests.Response) -> str:
    try:
        body = json_body(response)
    except orjson.JSONDecodeError:
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
        # Paths whose POST override Close refused: their long queries are not sent again.
        self._override_refused: set[str] = set()
        # Whether a successful answer carried a rate-limit header; None until the first one.
        self._paced_by_headers: bool | None = None
        # Whether the server has answered anything yet (see FIRST_CONTACT_TIMEOUT).
        self._answered = False
        if len(self.keys.keys) > KEYS_PER_ORGANIZATION_LIMIT:
            self.warn(
                f"{len(self.keys.keys)} API keys: Close's organization limit is "
                f"{KEYS_PER_ORGANIZATION_LIMIT} times a key's, so a fourth key adds no "
                "requests a second"
            )

    def warn(self, message: str) -> None:
        """Tell the user once: through `on_warning`, which the CLI prints, else the logger."""
        if self.config.on_warning:
            self.config.on_warning(message)
        else:
            logger.warning(message)

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
        """GET `path`; long query strings go as Close's POST with `x-http-method-override`.

        Raises `OverrideRefused` when Close refuses that POST (400, 405), and from then on for
        every query of `path` too long for a URL, without sending it: the caller splits it.
        """
        params = dict(params or {})
        url = self.base_url + path
        if len(url) + len(urlencode(params)) + 1 <= settings.MAX_URL_LENGTH:
            return self._request("GET", path, params=params)
        if path in self._override_refused:
            raise OverrideRefused(
                405, "Close refused the POST override earlier", f"POST {path} (override of GET)"
            )
        try:
            return self._request(
                "POST",
                path,
                json_body={"_params": params},
                headers={"x-http-method-override": "GET"},
            )
        except RequestRejected as exc:
            if exc.status not in (400, 405):
                raise
            with self._stats_lock:
                self._override_refused.add(path)
            raise OverrideRefused(exc.status, exc.message, exc.request) from None

    def get_item(self, list_path: str, object_id: str) -> dict[str, Any]:
        """GET one object of the list at `list_path`; every object's request shares one group."""
        return self._request("GET", f"{list_path}{object_id}/", group=f"{list_path}{{id}}/")

    def write(
        self, method: str, list_path: str, object_id: str | None = None, body: Any = None
    ) -> dict[str, Any]:
        """POST, PUT or DELETE the list at `list_path`, or one object of it, on the first key.

        A POST is not idempotent: it is sent again only when it cannot have reached Close (a
        refused connection, a 429). After a timeout or a 5xx, `UncertainWrite` says so instead.
        """
        path, group = list_path, None
        if object_id is not None:
            path, group = f"{list_path}{object_id}/", f"{list_path}{{id}}/"
        repeatable = method in ("PUT", "DELETE")
        return self._request(
            method, path, json_body=body, key=0, group=group, repeatable=repeatable
        )

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
        group: str | None = None,
        repeatable: bool = True,
    ) -> dict[str, Any]:
        """Send until an answer is final, applying the retry policy to each attempt's outcome.

        `group` is the pacing group of an object's request (see `get_item`); a list's is its path.
        A request that is not `repeatable` is sent again only when it cannot have reached Close.
        """
        # Written here rather than with urllib3's Retry: Close's waits come from the RateLimit
        # header and a legacy body field, and truncated or invalid bodies fail after urllib3.
        group = group or path
        request = {"params": params, "json": json_body, "headers": headers}
        failures = throttled = 0
        while True:
            outcome = self._attempt(method, path, group, key, request)
            if isinstance(outcome, dict):
                return outcome
            if outcome is None:
                throttled += 1
                if throttled > self.config.max_retries * 4:
                    raise UnreachableError(f"{method} {path}: still rate limited (429)")
                continue
            if outcome.refused and failures >= min(2, self.config.max_retries):
                raise UnreachableError(f"cannot connect to {self.base_url}") from None
            if not repeatable and not outcome.refused:
                raise UncertainWrite(
                    f"{method} {path}: {outcome.reason}; Close may or may not have applied it"
                )
            if outcome.transport and not self._answered and not failures:
                # Configuration, not the network: no retry would change the answer.
                wrong_scheme = wrong_scheme_hint(self.base_url)
                if wrong_scheme:
                    raise ConfigError(wrong_scheme)
            failures = self._backoff(failures, method, path, outcome)

    def _attempt(
        self, method: str, path: str, group: str, key: int | None, request: dict[str, Any]
    ) -> dict[str, Any] | _Failure | None:
        """One request: its JSON body, a transient failure, or None when Close answered 429.

        Raises what no retry changes: a rejected key, a rejected request.
        """
        # Close groups its limits by path and method: a POST override is a group of its own.
        paced = f"{method} {group}"
        sender = self._await_slot(paced, key)
        self._count("requests")
        response = None
        connect = self.config.connect_timeout
        if not self._answered:
            connect = min(connect, FIRST_CONTACT_TIMEOUT)
        try:
            response = self._session().request(
                method,
                self.base_url + path,
                auth=(self.keys.keys[sender], ""),
                timeout=(connect, self.config.read_timeout),
                **request,
            )
        # ConnectTimeout is both: it is a connection failure, as it always was here.
        except requests.exceptions.ConnectionError as exc:
            return _Failure("connection failed", refused=_refused(exc), transport=True)
        except (requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError):
            return _Failure("timed out or cut off", transport=True)
        finally:
            # Always ends the request's time in flight, even when no response came.
            self._observe(sender, paced, response)
        self._answered = True
        self._note_server_time(response)
        status = response.status_code
        if status == 429:
            self._count("responses_429")
            self.keys.pause(sender, retry_wait_from_429(response))
            return None
        # A 403 on one item is that item's permission, not the key's.
        if status == 401 or (status == 403 and group == path):
            raise AuthError(
                f"Close rejected {self.keys.describe(sender)} (HTTP {status} on {method} {path}): "
                f"{_error_message(response)}",
                status,
            )
        if 400 <= status < 500:
            message = _error_message(response)
            if status == 404 and message.startswith(EMPTY_QUERY) and group == path:
                # Close's framework answers a list whose record at the offset was deleted
                # mid-query this way; on an item it means the item is gone. It may pass, or
                # repeat at that offset on every request: the caller steps past it.
                return _Failure(f"HTTP 404 {message}", DeletedMidQuery, EMPTY_QUERY_RETRIES)
            raise RequestRejected(status, message, f"{method} {path}")
        if status >= 500:
            return _Failure(f"HTTP {status}")
        return _decode(response)

    def _observe(self, sender: int, paced: str, response: requests.Response | None) -> None:
        """Hand the answer's rate-limit reading to the pacer; say once if Close sends none."""
        if response is None:
            self.keys.observe(sender, paced, {})
            return
        throttled = response.status_code == 429
        self.keys.observe(
            sender, paced, response.headers, read_429_body(response) if throttled else None
        )
        if not response.ok or self._paced_by_headers is not None:
            return
        with self._stats_lock:
            first = self._paced_by_headers is None
            self._paced_by_headers = read_rate_limit(response.headers) is not None
            if first and not self._paced_by_headers:
                self.warn(
                    "Close's answers carry no rate-limit header: pacing from 429 answers alone"
                )

    def _backoff(self, failures: int, method: str, path: str, failure: _Failure) -> int:
        failures += 1
        retries = min(self.config.max_retries, failure.max_retries)
        if failures > retries:
            raise failure.error(f"{method} {path}: {failure.reason}, after {retries} retries")
        self._count("retries")
        cap = min(self.config.backoff_max, self.config.backoff_base * 2 ** (failures - 1))
        self._sleep(random.uniform(cap / 2, cap), failure.reason)
        return failures

    def _await_slot(self, group: str, key: int | None) -> int:
        """Wait for the next slot of `group` (on `key`, or the key free soonest); its key."""
        due = self.keys.due(group, key)
        ahead = 0.0 if due is None else due - time.monotonic()
        if ahead > 0 and self.config.on_wait:
            self.config.on_wait("rate limit", ahead)
        slot = self.keys.claim(group, key)
        if slot.blocked > 0:
            with self._stats_lock:
                self.stats.rate_limit_waits += 1
                self.stats.rate_limit_wait_seconds += slot.blocked
        return slot.key

    def _sleep(self, seconds: float, reason: str) -> None:
        if seconds <= 0:
            return
        if self.config.on_wait:
            self.config.on_wait(reason, seconds)
        sleep_heeding_signals(seconds)

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


@dataclass(frozen=True)
class _Failure:
    """A transient failure of one attempt: retried with capped exponential backoff."""

    reason: str
    # Raised once the retries run out.
    error: type[CloseApiError] = UnreachableError
    # Fewer retries than configured, for failures the caller can work around.
    max_retries: int = sys.maxsize
    # A refused or unresolvable connection: a wrong URL far more often than a blip.
    refused: bool = False
    # No HTTP answer came (a connection failure or a timeout).
    transport: bool = False


def _decode(response: requests.Response) -> dict[str, Any] | _Failure:
    try:
        body = json_body(response)
    except orjson.JSONDecodeError:
        return _Failure("response is not valid JSON", InvalidResponse)
    if not isinstance(body, dict):
        return _Failure("response is not a JSON object", InvalidResponse)
    return body


def _refused(exc: requests.exceptions.ConnectionError) -> bool:
    """Whether no connection was made at all: refused, or the host name did not resolve."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # urllib3's NameResolutionError is a NewConnectionError.
    return isinstance(reason, NewConnectionError)
