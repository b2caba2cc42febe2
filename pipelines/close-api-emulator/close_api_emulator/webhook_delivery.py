"""Webhook deliveries sent: signed POSTs to receivers, retried with back-off, each recorded.

One worker thread per emulator sends what `Webhooks` holds due on the emulator clock, so a
test that advances the clock makes retries come due at once.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Any

from .clock import Clock
from .config import EmulatorConfig
from .webhooks import ACTIVE, Delivery, Webhooks

# How often the worker looks at the queue when nothing wakes it (time passing in real time).
POLL_SECONDS = 0.05
USER_AGENT = "close-api-emulator webhooks"


@dataclass(frozen=True)
class DeliveryRecord:
    """One attempt to deliver an event to a subscription, as tests see it.

    `outcome`: "delivered" (2xx), "retry" (failed, tried again later), "dropped" (failed, and
    the retry window is over or the subscription went away) or "paused" (failed, and the
    subscription paused itself). `status` is the receiver's HTTP status, None when `error`
    (connection refused, timeout...) says why there was none; `time` is emulator clock time.
    """

    subscription_id: str
    event_id: str
    attempt: int
    status: int | None
    error: str | None
    time: float
    outcome: str
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """Whether the receiver took it (a 2xx answer)."""
        return self.status is not None and 200 <= self.status < 300


def signature(signature_key: str, timestamp: str, body: bytes) -> str:
    """Close's `close-sig-hash`: hex HMAC-SHA256 of the timestamp then the body, keyed with
    the subscription's hex key decoded."""
    return hmac.new(
        bytes.fromhex(signature_key), timestamp.encode() + body, hashlib.sha256
    ).hexdigest()


def forged_signature(signature_key: str, timestamp: str, body: bytes) -> str:
    """A well-formed signature made with another key: what a forger or a rotated key sends."""
    other = hashlib.sha256(bytes.fromhex(signature_key)).hexdigest()
    return signature(other, timestamp, body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx answer is a failed delivery: the POST is not followed elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, verify_ssl: bool
) -> tuple[int | None, str | None]:
    """POST `body`; the answer's status, or None and why there was none."""
    # urllib rather than requests: the emulator needs only werkzeug and waitress.
    context = ssl.create_default_context()
    if not verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        # Straight to the receiver: a proxy from the environment would take loopback calls.
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=context),
        _NoRedirect(),
    )
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read()
            return response.status, None
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, None
    except urllib.error.URLError as exc:
        return None, f"{type(exc.reason).__name__}: {exc.reason}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


class DeliveryWorker:
    """Sends due deliveries from a background thread; `pump()` does one pass in the caller's."""

    def __init__(
        self, webhooks: Webhooks, lock: threading.RLock, clock: Clock, config: EmulatorConfig
    ) -> None:
        self.webhooks = webhooks
        self.lock = lock
        self.clock = clock
        self.config = config
        self.records: deque[DeliveryRecord] = deque(maxlen=config.webhook_delivery_log_max)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._users = 0
        webhooks.wake = self._wake.set
        # A clock jump may bring retries due: look at once.
        clock.subscribe(self._wake.set)

    def start(self) -> None:
        """Run the worker (each server of the emulator starts it; the last stop ends it)."""
        with self.lock:
            self._users += 1
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="close-emulator-webhooks", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop when no server uses the worker any more; an attempt under way may finish."""
        with self.lock:
            self._users = max(0, self._users - 1)
            thread = self._thread
            if self._users or thread is None:
                return
            self._thread = None
        self._stop.set()
        self._wake.set()
        thread.join(timeout=self.config.webhook_timeout_seconds + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self.pump()
            with self.lock:
                due = self.webhooks.next_due()
            wait = (
                POLL_SECONDS
                if due is None
                else min(POLL_SECONDS, max(0.0, due - self.clock.time()))
            )
            self._wake.wait(wait)

    def pump(self) -> int:
        """Attempt every delivery due now; how many were attempted."""
        batch: list[tuple[Delivery, str, str, bool]] = []
        with self.lock:
            for delivery in self.webhooks.take_due():
                sub = self.webhooks.subscriptions.get(delivery.subscription_id)
                if sub is None or sub.status != ACTIVE:
                    continue
                if delivery.body is None:
                    store = delivery.store
                    # "Full event data is delivered regardless of the subscriber's role."
                    event = store.events.render(delivery.event, store.render, False)
                    payload = {"subscription_id": sub.id, "event": event}
                    delivery.body = json.dumps(
                        payload, separators=(",", ":"), ensure_ascii=False
                    ).encode()
                batch.append((delivery, sub.url, sub.signature_key, sub.verify_ssl))
        for delivery, url, key, verify_ssl in batch:
            with self.lock:
                sub = self.webhooks.subscriptions.get(delivery.subscription_id)
                if sub is None or sub.status != ACTIVE:
                    continue  # paused or deleted since taken from the queue
                if self._stop.is_set():
                    self.webhooks.push(delivery, new=False)  # for the next start
                    continue
            status, error = self._send(delivery, url, key, verify_ssl)
            with self.lock:
                self._settle(delivery, status, error)
        return len(batch)

    def _send(
        self, delivery: Delivery, url: str, key: str, verify_ssl: bool
    ) -> tuple[int | None, str | None]:
        assert delivery.body is not None
        timestamp = str(int(self.clock.time()))
        sign = forged_signature if self.config.webhook_forged_signature else signature
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "close-sig-hash": sign(key, timestamp, delivery.body),
            "close-sig-timestamp": timestamp,
        }
        return post(url, delivery.body, headers, self.config.webhook_timeout_seconds, verify_ssl)

    def _settle(self, delivery: Delivery, status: int | None, error: str | None) -> None:
        """Record an attempt, then retry, drop, pause or (sometimes) deliver it twice."""
        hooks = self.webhooks
        delivery.attempts += 1
        now = self.clock.time()
        sub = hooks.subscriptions.get(delivery.subscription_id)
        ok = status is not None and 200 <= status < 300
        outcome = "delivered"
        if ok:
            if sub is not None:
                sub.failing_since = None
            self._done(delivery.subscription_id)
            rate = self.config.webhook_duplicate_rate
            if sub is not None and not delivery.duplicate and rate and hooks.rng.random() < rate:
                copy = Delivery(
                    now,
                    0,
                    sub.id,
                    delivery.event,
                    delivery.store,
                    now,
                    body=delivery.body,
                    duplicate=True,
                )
                hooks.push(copy)
        elif sub is None or sub.status != ACTIVE:
            outcome = "dropped"  # deleted or paused while this attempt was under way
            hooks.dropped[delivery.subscription_id] += 1
        else:
            if sub.failing_since is None:
                sub.failing_since = now
            retry_at = now + hooks.backoff(delivery.attempts)
            if now - sub.failing_since >= self.config.webhook_pause_after_failing_seconds:
                outcome = "paused"
                hooks.pause(sub)
                hooks.dropped[sub.id] += 1
            elif retry_at - delivery.first_due > self.config.webhook_retry_window_seconds:
                outcome = "dropped"
                hooks.dropped[sub.id] += 1
                self._done(sub.id)
            else:
                outcome = "retry"
                delivery.due = retry_at
                hooks.push(delivery, new=False)
        self.records.append(
            DeliveryRecord(
                delivery.subscription_id,
                delivery.event.id,
                delivery.attempts,
                status,
                error,
                now,
                outcome,
                delivery.duplicate,
            )
        )

    def _done(self, subscription_id: str) -> None:
        backlog = self.webhooks.backlog
        if backlog[subscription_id] > 0:
            backlog[subscription_id] -= 1
