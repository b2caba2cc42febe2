"""Webhook subscriptions of Close (`/webhook/`) and the deliveries their events wait in.

Callers hold the emulator lock; nothing here locks by itself. `webhook_delivery.py` sends
what comes due.
"""

from __future__ import annotations

import heapq
import itertools
import random
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .clock import Clock
from .config import EmulatorConfig
from .errors import NotFound, ValidationError
from .events import Event
from .ids import random_like_id
from .timefmt import format_ms

ACTIVE = "active"
PAUSED = "paused"
STATUSES = (ACTIVE, PAUSED)
# Close sends these only once its consolidation window closed; the others at once.
CONSOLIDATED_ACTIONS = frozenset({"updated", "deleted"})
REQUIRED = "This field is required."
LIMIT_MESSAGE = "An organization can have at most {limit} webhook subscriptions."


@dataclass
class Subscription:
    """One webhook subscription of an organization."""

    id: str
    organization_id: str
    url: str
    events: list[dict[str, Any]]
    verify_ssl: bool
    event_filter: dict[str, Any] | None
    signature_key: str
    created_by: str | None
    date_created: int
    status: str = ACTIVE
    updated_by: str | None = None
    date_updated: int = 0
    # Clock time of the first failed attempt since the last success; None while healthy.
    failing_since: float | None = None

    def render(self, with_key: bool = False) -> dict[str, Any]:
        """The subscription as Close answers it; the key only in the create answer."""
        body: dict[str, Any] = {
            "id": self.id,
            "organization_id": self.organization_id,
            "url": self.url,
            "events": [dict(e) for e in self.events],
            "verify_ssl": self.verify_ssl,
            "event_filter": self.event_filter,
            "status": self.status,
            "created_by": self.created_by,
            "updated_by": self.updated_by,
            "date_created": format_ms(self.date_created),
            "date_updated": format_ms(self.date_updated or self.date_created),
        }
        if with_key:
            body["signature_key"] = self.signature_key
        return body

    def wants(self, event: Event) -> bool:
        """Whether the event's object_type and action are subscribed (filters not applied)."""
        return any(
            e["object_type"] == event.object_type and e["action"] == event.action
            for e in self.events
        )


@dataclass(order=True)
class Delivery:
    """One event on its way to one subscription; ordered by due time."""

    due: float
    seq: int
    subscription_id: str = field(compare=False)
    event: Event = field(compare=False)
    # The store whose rows render the event (generate() replaces the main store).
    store: Any = field(compare=False)
    first_due: float = field(compare=False, default=0.0)
    attempts: int = field(compare=False, default=0)
    # Rendered at the first attempt and resent unchanged on every retry.
    body: bytes | None = field(compare=False, default=None)
    duplicate: bool = field(compare=False, default=False)


def _check_events(events: Any) -> list[dict[str, Any]]:
    if not isinstance(events, list) or not events:
        raise ValidationError({"events": REQUIRED if not events else "Enter a list of events."})
    out = []
    for item in events:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item.get(k) for k in ("object_type", "action")
        ):
            raise ValidationError({"events": "Each event needs an object_type and an action."})
        extra = item.get("extra_filter")
        if extra is not None and not isinstance(extra, dict):
            raise ValidationError({"events": "extra_filter must be an object or null."})
        out.append(
            {"object_type": item["object_type"], "action": item["action"], "extra_filter": extra}
        )
    return out


def _check_url(url: Any) -> str:
    if url in (None, ""):
        raise ValidationError({"url": REQUIRED})
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"url": "Enter a valid URL."})
    return url


def _checked(payload: Any, creating: bool) -> dict[str, Any]:
    """The fields of a create or update body, validated as Close validates them."""
    if not isinstance(payload, dict):
        raise ValidationError({}, ["Expected a JSON object."])
    out: dict[str, Any] = {}
    if creating or "url" in payload:
        out["url"] = _check_url(payload.get("url"))
    if creating or "events" in payload:
        out["events"] = _check_events(payload.get("events"))
    if "verify_ssl" in payload:
        if not isinstance(payload["verify_ssl"], bool):
            raise ValidationError({"verify_ssl": "Must be a valid boolean."})
        out["verify_ssl"] = payload["verify_ssl"]
    if "event_filter" in payload:
        if payload["event_filter"] is not None and not isinstance(payload["event_filter"], dict):
            raise ValidationError({"event_filter": "Must be an object or null."})
        out["event_filter"] = payload["event_filter"]
    if not creating and "status" in payload:
        if payload["status"] not in STATUSES:
            raise ValidationError({"status": f'"{payload["status"]}" is not a valid choice.'})
        out["status"] = payload["status"]
    return out


class Webhooks:
    """Subscriptions of every organization and the deliveries waiting to be sent."""

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.subscriptions: dict[str, Subscription] = {}
        self.pending: list[Delivery] = []  # a heap by due time
        self.backlog: Counter[str] = Counter()
        # Deliveries given up: dropped after the retry window, or with their paused subscription.
        self.dropped: Counter[str] = Counter()
        self.rng = random.Random(0)
        self._seq = itertools.count(1)
        # Called when something new may be due, so the delivery worker looks at once.
        self.wake: Callable[[], None] | None = None

    # ---- subscriptions ------------------------------------------------------------------

    def create(self, organization_id: str, user_id: str | None, payload: Any) -> dict[str, Any]:
        """A new active subscription; its answer is the only one showing signature_key."""
        fields = _checked(payload, creating=True)
        owned = sum(1 for s in self.subscriptions.values() if s.organization_id == organization_id)
        if owned >= self.config.webhook_subscription_limit:
            limit = self.config.webhook_subscription_limit
            raise ValidationError({}, [LIMIT_MESSAGE.format(limit=limit)])
        sub = Subscription(
            id=random_like_id("whsub_", secrets.token_hex(8), 0, length=22),
            organization_id=organization_id,
            url=fields["url"],
            events=fields["events"],
            verify_ssl=fields.get("verify_ssl", True),
            event_filter=fields.get("event_filter"),
            # Close's keys are 32 random bytes in hex (receivers decode them with fromhex).
            signature_key=secrets.token_hex(32),
            created_by=user_id,
            date_created=self.clock.now_ms(),
        )
        self.subscriptions[sub.id] = sub
        return sub.render(with_key=True)

    def get(self, organization_id: str, subscription_id: str) -> Subscription:
        """A subscription of the organization; NotFound otherwise."""
        sub = self.subscriptions.get(subscription_id)
        if sub is None or sub.organization_id != organization_id:
            raise NotFound("WebhookSubscription")
        return sub

    def listed(self, organization_id: str) -> list[dict[str, Any]]:
        """The organization's subscriptions, oldest first, without their keys."""
        subs = [s for s in self.subscriptions.values() if s.organization_id == organization_id]
        return [s.render() for s in sorted(subs, key=lambda s: s.date_created)]

    def update(
        self, organization_id: str, subscription_id: str, user_id: str | None, payload: Any
    ) -> dict[str, Any]:
        """Change the fields given; `status` active re-activates a paused subscription."""
        sub = self.get(organization_id, subscription_id)
        fields = _checked(payload, creating=False)
        status = fields.pop("status", None)
        for name, value in fields.items():
            setattr(sub, name, value)
        if status == PAUSED and sub.status == ACTIVE:
            self.pause(sub)
        elif status == ACTIVE and sub.status == PAUSED:
            sub.status = ACTIVE
            sub.failing_since = None
        sub.updated_by = user_id
        sub.date_updated = self.clock.now_ms()
        return sub.render()

    def delete(self, organization_id: str, subscription_id: str) -> None:
        """Forget the subscription and what waited for it."""
        sub = self.get(organization_id, subscription_id)
        self._discard_backlog(sub.id)
        del self.subscriptions[sub.id]

    def pause(self, sub: Subscription) -> None:
        """Pause: its backlog is dropped and nothing is queued for it until re-activated
        (Close replays nothing; the event log is the record of what was missed)."""
        sub.status = PAUSED
        self.dropped[sub.id] += self._discard_backlog(sub.id)

    def _discard_backlog(self, subscription_id: str) -> int:
        kept = [d for d in self.pending if d.subscription_id != subscription_id]
        gone = len(self.pending) - len(kept)
        if gone:
            heapq.heapify(kept)
            self.pending = kept
        self.backlog.pop(subscription_id, None)
        return gone

    # ---- deliveries ---------------------------------------------------------------------

    def on_event(self, store: Any, event: Event) -> None:
        """Queue a newly logged event for every active subscription of its organization
        that subscribed its object_type and action."""
        now = self.clock.time()
        due = now
        if event.action in CONSOLIDATED_ACTIONS:
            due = max(now, event.date_created / 1000 + self.config.consolidation_seconds)
        queued = False
        for sub in list(self.subscriptions.values()):
            if (
                sub.organization_id != event.organization_id
                or sub.status != ACTIVE
                or not sub.wants(event)
            ):
                continue
            # The event that would fill the backlog to its limit pauses the subscription.
            if self.backlog[sub.id] + 1 >= self.config.webhook_backlog_limit:
                self.pause(sub)
                self.dropped[sub.id] += 1
                continue
            self.push(Delivery(due, 0, sub.id, event, store, first_due=due))
            queued = True
        if queued and self.wake is not None:
            self.wake()

    def push(self, delivery: Delivery, new: bool = True) -> None:
        """Queue a delivery (a retry when not `new`), with its random extra wait if any."""
        if self.config.webhook_reorder_seconds:
            delivery.due += self.rng.uniform(0, self.config.webhook_reorder_seconds)
        delivery.seq = next(self._seq)
        heapq.heappush(self.pending, delivery)
        if new:
            self.backlog[delivery.subscription_id] += 1

    def take_due(self) -> list[Delivery]:
        """Deliveries due now, in due order, out of the queue."""
        now = self.clock.time()
        out = []
        while self.pending and self.pending[0].due <= now:
            out.append(heapq.heappop(self.pending))
        return out

    def next_due(self) -> float | None:
        """Clock time of the next delivery, or None."""
        return self.pending[0].due if self.pending else None

    def backoff(self, attempts: int) -> float:
        """Seconds before retry after `attempts` failures: doubling from the base, capped."""
        base = self.config.webhook_backoff_base_seconds
        return min(self.config.webhook_backoff_cap_seconds, base * 2 ** min(attempts - 1, 60))
