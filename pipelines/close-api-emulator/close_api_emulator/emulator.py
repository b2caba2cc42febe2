"""The emulated Close account: organizations' stores, clock, faults, logs and statistics.

One re-entrant lock guards all state, so HTTP threads and test code can mix freely.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import generator
from .auth import DEMO_API_KEY, NON_ADMIN_API_KEY, ORG_ID, OTHER_ORG_ID, PRINCIPALS, Principal
from .clock import Clock
from .config import EmulatorConfig
from .crm import User
from .faults import FaultInjector
from .ids import random_like_id
from .lifecycle import SILENT_FAILURE_MESSAGE, RequestContext
from .ratelimit import RateLimiter, WindowRateLimiter
from .store import SmsStore
from .timefmt import dt_to_ms
from .webhook_delivery import DeliveryRecord, DeliveryWorker
from .webhooks import Webhooks


@dataclass(frozen=True)
class RequestRecord:
    """One answered request as tests see it (the key itself is never recorded)."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    api_key_id: str | None = None
    fault: str | None = None
    time: float = 0.0


@dataclass
class Stats:
    """Response counts by status and faults injected."""

    by_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0

    @property
    def requests(self) -> int:
        """All answered requests."""
        return sum(self.by_status.values())


class Emulator:
    """State of the emulated Close API; `EmulatorServer` puts it on HTTP."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.clock = Clock()
        self.lock = threading.RLock()
        self.faults = FaultInjector()
        self.stats = Stats()
        self._request_log: deque[RequestRecord] = deque(maxlen=self.config.request_log_max)
        self._request_seq = itertools.count(1)
        self.stores: dict[str, SmsStore] = {
            org: SmsStore(org, self.config, self.clock) for org in (ORG_ID, OTHER_ORG_ID)
        }
        # Webhook subscriptions, and the worker that delivers their events (servers run it).
        self.webhooks = Webhooks(self.config, self.clock)
        self.webhook_worker = DeliveryWorker(self.webhooks, self.lock, self.clock, self.config)
        for store in self.stores.values():
            self._watch_events(store)
        self.ratelimiter: RateLimiter | WindowRateLimiter | None = None
        if self.config.rps and self.config.ratelimit_window:
            self.ratelimiter = WindowRateLimiter(self.config.rps, self.config.ratelimit_window)
        elif self.config.rps:
            self.ratelimiter = RateLimiter(self.config.rps, self.config.bucket_size)
        self.clock.subscribe(self._on_clock_jump)

    # ---- plumbing ---------------------------------------------------------------------

    def _on_clock_jump(self) -> None:
        with self.lock:
            for store in self.stores.values():
                store.tick()

    def _watch_events(self, store: SmsStore) -> None:
        """Queue the store's newly logged events for the webhook subscriptions."""
        store.events.listener = functools.partial(self.webhooks.on_event, store)

    def store_for(self, principal: Principal | None) -> SmsStore:
        """The organization store a key works on."""
        org = principal.organization_id if principal else ORG_ID
        return self.stores[org]

    @property
    def store(self) -> SmsStore:
        """The main organization's store (the demo key's)."""
        return self.stores[ORG_ID]

    def new_request_id(self) -> str:
        """A fresh `req_` id."""
        return random_like_id("req_", "emulator", next(self._request_seq), length=22)

    def context(self, api_key: str | None, method: str, path: str) -> RequestContext:
        """The request context of an in-process call made as `api_key`."""
        principal = PRINCIPALS.get(api_key) if api_key else None
        return RequestContext(principal, self.new_request_id(), method, path)

    def record(self, rec: RequestRecord) -> None:
        """Log one answered request and count it."""
        with self.lock:
            self._request_log.append(rec)
            self.stats.by_status[rec.status] += 1
            if rec.fault:
                self.stats.faults[rec.fault] += 1

    @property
    def request_log(self) -> list[RequestRecord]:
        """Answered requests, oldest first (a copy)."""
        with self.lock:
            return list(self._request_log)

    @property
    def webhook_deliveries(self) -> list[DeliveryRecord]:
        """Webhook delivery attempts, oldest first (a copy; the newest
        `webhook_delivery_log_max` are kept)."""
        with self.lock:
            return list(self.webhook_worker.records)

    def clear_webhook_deliveries(self) -> None:
        """Forget recorded delivery attempts (between test phases)."""
        with self.lock:
            self.webhook_worker.records.clear()

    def clear_request_log(self) -> None:
        """Forget logged requests and counters (between test phases)."""
        with self.lock:
            self._request_log.clear()
            self.stats = Stats()

    # ---- data -------------------------------------------------------------------------

    def generate(
        self,
        n: int = 10_000,
        seed: int = 7,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        """Replace the main organization's data with a deterministic synthetic account."""
        end = end or self.clock.now()
        start = start or end - timedelta(days=365)
        with self.lock:
            store = SmsStore(ORG_ID, self.config, self.clock)
            generator.generate(
                store,
                n=n,
                seed=seed,
                start_ms=dt_to_ms(start),
                end_ms=dt_to_ms(end),
                horizon_ms=store.horizon_ms(),
                consolidation_ms=int(self.config.consolidation_seconds * 1000),
                imported_history=self.config.imported_history,
                hostile_texts=self.config.hostile_texts,
                now_ms=self.clock.now_ms(),
            )
            self.stores[ORG_ID] = store
            # The generated history is past: only events logged from now on are delivered.
            self._watch_events(store)
            store.tick()

    def create_sms(self, payload: dict[str, Any], api_key: str = DEMO_API_KEY) -> dict[str, Any]:
        """Same as POST /activity/sms/."""
        ctx = self.context(api_key, "POST", "/api/v1/activity/sms/")
        with self.lock:
            return self.store_for(ctx.principal).create(payload, ctx)

    def update_sms(
        self, sms_id: str, payload: dict[str, Any], api_key: str = DEMO_API_KEY
    ) -> dict[str, Any]:
        """Same as PUT /activity/sms/{id}/."""
        ctx = self.context(api_key, "PUT", f"/api/v1/activity/sms/{sms_id}/")
        with self.lock:
            return self.store_for(ctx.principal).update(sms_id, payload, ctx)

    def delete_sms(
        self, sms_id: str, api_key: str = DEMO_API_KEY, keep_in_index: bool = False
    ) -> None:
        """Same as DELETE /activity/sms/{id}/.

        With `keep_in_index`, the SMS is deleted (404 on GET, a `deleted` event) but keeps its
        place in Close's list index: every /activity/sms/ list page whose `_skip`..`_skip+_limit`
        slice includes it answers 404 "Empty query: Document has been deleted.", on every
        request (tap-closeio met this while paging); a smaller `_limit` can read around it.
        """
        ctx = self.context(api_key, "DELETE", f"/api/v1/activity/sms/{sms_id}/")
        with self.lock:
            self.store_for(ctx.principal).delete(sms_id, ctx, keep_in_index=keep_in_index)

    def forbid_sms(self, sms_id: str) -> None:
        """Make SMS `sms_id` a record the keys may not read: GET /activity/sms/{id}/ answers
        403 and list pages (id__in included) leave it out; every other request works.

        KeyError when no such SMS exists.
        """
        with self.lock:
            row = self.store.row_of(sms_id)
            if row is None:
                raise KeyError(sms_id)
            self.store.forbidden.add(row)

    def forbid_object(self, kind: str, object_id: str) -> None:
        """Make a context object (`kind` of `Crm.select`: lead, contact, user...) one the keys
        may not read: its GET answers 403 and lists (id__in included) leave it out.

        KeyError when no such object exists.
        """
        with self.lock:
            self.store.crm.get(kind, object_id)
            self.store.crm.forbidden.add(object_id)

    def create_lead(
        self,
        name: str,
        contacts: list[dict[str, Any]] | None = None,
        api_key: str = DEMO_API_KEY,
    ) -> dict[str, Any]:
        """Same as POST /lead/ with `contacts` (each with name, and title, phone or email):
        `created` events for the contacts and the lead (see `fold_updates_into_created`)."""
        ctx = self.context(api_key, "POST", "/api/v1/lead/")
        with self.lock:
            return self.store_for(ctx.principal).create_lead(name, contacts or [], ctx)

    def delete_lead(self, lead_id: str, api_key: str = DEMO_API_KEY) -> list[str]:
        """Same as DELETE /lead/{id}/: the lead's SMS and contacts go, each with a `deleted`
        event, then the lead's own `deleted` event; returns the deleted SMS ids."""
        ctx = self.context(api_key, "DELETE", f"/api/v1/lead/{lead_id}/")
        with self.lock:
            return self.store_for(ctx.principal).delete_lead(lead_id, ctx)

    def update_lead(
        self, lead_id: str, payload: dict[str, Any], api_key: str = DEMO_API_KEY
    ) -> dict[str, Any]:
        """Same as PUT /lead/{id}/ with name, description, status_id or `custom.cf_...` keys
        (None clears a custom field): a lead `updated` event."""
        ctx = self.context(api_key, "PUT", f"/api/v1/lead/{lead_id}/")
        with self.lock:
            return self.store_for(ctx.principal).update_lead(lead_id, payload, ctx)

    def rename_lead(self, lead_id: str, name: str, api_key: str = DEMO_API_KEY) -> dict[str, Any]:
        """A lead's new name (see `update_lead`)."""
        return self.update_lead(lead_id, {"name": name}, api_key)

    def set_lead_status(
        self, lead_id: str, status_id: str, api_key: str = DEMO_API_KEY
    ) -> dict[str, Any]:
        """A lead's new status (see `update_lead`); status_label follows."""
        return self.update_lead(lead_id, {"status_id": status_id}, api_key)

    def update_contact(
        self, contact_id: str, payload: dict[str, Any], api_key: str = DEMO_API_KEY
    ) -> dict[str, Any]:
        """Same as PUT /contact/{id}/ with name, title or lead_id (a move to that lead): a
        contact `updated` event, and on a move `updated` events for both leads. The contact's
        SMS stay on their lead."""
        ctx = self.context(api_key, "PUT", f"/api/v1/contact/{contact_id}/")
        with self.lock:
            return self.store_for(ctx.principal).update_contact(contact_id, payload, ctx)

    def delete_contact(self, contact_id: str, api_key: str = DEMO_API_KEY) -> None:
        """Same as DELETE /contact/{id}/: a contact `deleted` event; its SMS keep contact_id."""
        ctx = self.context(api_key, "DELETE", f"/api/v1/contact/{contact_id}/")
        with self.lock:
            self.store_for(ctx.principal).delete_contact(contact_id, ctx)

    def merge_leads(
        self, source: str, destination: str, api_key: str = DEMO_API_KEY
    ) -> dict[str, Any]:
        """Same as POST /lead/merge/ (see `SmsStore.merge_leads` and `merge_events`)."""
        ctx = self.context(api_key, "POST", "/api/v1/lead/merge/")
        with self.lock:
            return self.store_for(ctx.principal).merge_leads(source, destination, ctx)

    def add_user(self, first_name: str, last_name: str, email: str) -> str:
        """A new active member of the main organization; returns its id (no event: the
        published event types have none for users)."""
        with self.lock:
            store = self.store
            crm = store.crm
            user_id = random_like_id("user_", f"added:{store.seed}", len(crm.users))
            now = self.clock.now_ms()
            crm.users[user_id] = User(user_id, first_name, last_name, email, now, now)
            store.user_by_id[user_id] = store.users.add((user_id, crm.users[user_id].name))
            return user_id

    def rename_user(self, user_id: str, first_name: str, last_name: str) -> None:
        """A user's new name; their SMS show it in user_name (no event)."""
        with self.lock:
            self.store.rename_user(user_id, first_name, last_name)

    def deactivate_user(self, user_id: str) -> None:
        """The user leaves the organization: still listed, with no organizations (no event)."""
        with self.lock:
            user = self.store.crm.get("user", user_id)
            user.active = False
            user.date_updated = max(user.date_updated, self.clock.now_ms())

    def delete_lead_status(self, status_id: str) -> None:
        """Same as DELETE /status/lead/{id}/: the status leaves the list (no event); leads on
        it keep its id, with an empty status_label."""
        with self.lock:
            self.store.crm.get("lead_status", status_id)
            del self.store.crm.statuses[status_id]

    def rename_template(self, template_id: str, name: str) -> None:
        """An SMS template's new name (no event)."""
        with self.lock:
            template = self.store.crm.get("sms_template", template_id)
            template.name = name
            template.date_updated = max(template.date_updated, self.clock.now_ms())

    def relabel_number(self, number_id: str, label: str) -> None:
        """A phone number's new label (no event)."""
        with self.lock:
            number = self.store.crm.get("phone_number", number_id)
            number.label = label
            number.date_updated = max(number.date_updated, self.clock.now_ms())

    def record_delivery_failure(
        self, sms_id: str, error_message: str = SILENT_FAILURE_MESSAGE
    ) -> None:
        """A carrier rejects sent SMS `sms_id` now: status error, no event (as Close may log none).

        KeyError when no such SMS exists; ValueError when it is not a sent outbound SMS.
        """
        with self.lock:
            store = self.store
            store.tick()
            row = store.row_of(sms_id)
            if row is None:
                raise KeyError(sms_id)
            sms = store.render(row)
            if sms["direction"] != "outbound" or sms["status"] != "sent":
                raise ValueError(
                    f"{sms_id} is {sms['direction']} {sms['status']}: only a sent SMS can fail"
                )
            store.fail_delivery(row, error_message, self.clock.now_ms())

    def get_sms(self, sms_id: str) -> dict[str, Any] | None:
        """The SMS as GET /activity/sms/{id}/ renders it, or None."""
        with self.lock:
            store = self.store
            store.tick()
            row = store.row_of(sms_id)
            return None if row is None else store.render(row)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every SMS that currently exists in the main organization, by id."""
        with self.lock:
            self.store.tick()
            return self.store.snapshot()

    # ---- test hooks (see hooks.py) ------------------------------------------------------

    def override_raw(self, sms_id: str, fields: dict[str, Any], emit_update: bool = False) -> None:
        """Render `fields` raw in SMS `sms_id` from now on (`hooks.MISSING` removes a field).

        With `emit_update`, the SMS's `date_updated` moves to now and an `updated` event names
        the fields, so a change feed sees it; otherwise only a backfill does.
        """
        with self.lock:
            store = self.store
            row = store.row_of(sms_id)
            if row is None:
                raise KeyError(sms_id)
            before = store.render(row)
            store.raw_overrides.setdefault(row, {}).update(fields)
            if emit_update:
                now = self.clock.now_ms()
                store.date_updated[row] = max(store.date_updated[row], now)
                store.emit_sms_event(
                    "updated",
                    row,
                    now,
                    user_id=before.get("user_id"),
                    data=store.render(row),
                    previous=None,
                    changed=sorted(fields),
                    ctx=None,
                )

    @staticmethod
    def add_api_key(api_key: str, like: str = DEMO_API_KEY) -> None:
        """Accept `api_key` as another key of `like`'s user (e.g. a distinctive secrets-test key).

        The key has its own id, so it has its own rate-limit buckets and its own `api_key_id`
        in the request log.
        """
        key_id = random_like_id("apik_", api_key, 0, length=20)
        PRINCIPALS[api_key] = dataclasses.replace(PRINCIPALS[like], key_id=key_id)

    @staticmethod
    def remove_api_key(api_key: str) -> None:
        """Forget a key added with `add_api_key`."""
        if api_key not in (DEMO_API_KEY, NON_ADMIN_API_KEY):
            PRINCIPALS.pop(api_key, None)

    def lead_ids(self) -> list[str]:
        """Ids of the main organization's leads (for tests that pick one)."""
        with self.lock:
            return list(self.store.leads.values)

    def events(self, api_key: str = DEMO_API_KEY) -> list[dict[str, Any]]:
        """Every event inside retention, newest first, rendered for `api_key`."""
        principal = PRINCIPALS[api_key]
        with self.lock:
            store = self.store_for(principal)
            store.tick()
            page = store.events.query({}, {}, 1 << 30, None, store.horizon_ms())
            return [store.events.render(e, store.render, False) for e in page.events]


__all__ = [
    "DEMO_API_KEY",
    "NON_ADMIN_API_KEY",
    "DeliveryRecord",
    "Emulator",
    "RequestRecord",
    "Stats",
]
