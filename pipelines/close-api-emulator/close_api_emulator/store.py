"""SMS data of one organization: compact columns, sorted index, lifecycle and its events.

Records live in typed arrays (about 100 bytes per SMS) and are rendered into Close's JSON
shape only when asked for, so a store of a million SMS stays small and quick to build.
Callers hold the emulator lock; nothing here locks by itself.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import random
import re
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .auth import Principal
from .clock import Clock
from .config import EmulatorConfig
from .crm import Crm, Lead, format_phone
from .events import Event, EventLog
from .extras import extra_fields_renderer
from .hooks import apply_raw_overrides
from .ids import IdCodec, random_like_id
from .schema import (
    ATTACHMENT_CONTENT_TYPES,
    CREATE_FIELDS,
    DIRECTION_CODE,
    DIRECTIONS,
    MMS_COST_CENTS,
    SOURCE_CODE,
    SOURCES,
    STATUS_CODE,
    STATUSES,
    UPDATE_FIELDS,
    sms_cost,
)
from .timefmt import NO_TS, dt_to_ms, format_ms, format_opt, parse_datetime

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_INBOX, _DRAFT, _SCHEDULED, _OUTBOX, _SENT, _ERROR = range(6)
_OUTBOUND = DIRECTION_CODE["outbound"]
# Outbox sends to numbers ending like this fail, so tests can pick the outcome.
FAILING_NUMBER_SUFFIX = "0000"
SEND_ERROR_MESSAGE = "Message delivery failed: the carrier rejected the destination number."
SILENT_FAILURE_MESSAGE = "Carrier rejected the message"
INVALID_NUMBER_MESSAGE = "The 'To' number is not a valid phone number."
# flask-mongorest's answer when a record at the offset was deleted mid-query (tap-closeio).
DELETED_MID_QUERY_MESSAGE = "Empty query: Document has been deleted."


class ValidationError(Exception):
    """400 with Close's `{"errors": [...], "field-errors": {...}}` body."""

    def __init__(self, field_errors: dict[str, str], errors: list[str] | None = None) -> None:
        super().__init__(field_errors or errors)
        self.field_errors = field_errors
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        """The response body."""
        return {"errors": self.errors, "field-errors": self.field_errors}


class NotFound(Exception):
    """404 with `{"error": "Empty query: ... matching query does not exist."}`."""

    def __init__(self, model: str = "Activity") -> None:
        super().__init__(f"Empty query: {model} matching query does not exist.")


class Forbidden(Exception):
    """403: the key may not do this."""


class DeletedInPage(Exception):
    """A list page holds a deleted SMS that Close's list index still has: 404 with
    DELETED_MID_QUERY_MESSAGE (flask-mongorest's answer, met by tap-closeio)."""


@dataclass(frozen=True)
class RequestContext:
    """Who asked, and which request, so events carry request_id/api_key_id/meta."""

    principal: Principal | None
    request_id: str
    method: str
    path: str

    @property
    def user_id(self) -> str | None:
        """The acting user."""
        return self.principal.user_id if self.principal else None


@dataclass
class SmsQuery:
    """Parsed filters of an SMS list; rows/leads/contacts/users are already pool indexes."""

    rows: list[int] | None = None
    leads: list[int] | None = None
    contacts: list[int] | None = None
    users: list[int] | None = None
    date_created: dict[str, int] = field(default_factory=dict)
    activity_at: dict[str, int] = field(default_factory=dict)
    skip: int = 0
    limit: int = 100
    order_field: str = "date_created"
    descending: bool = True


class Pool:
    """Interned values referenced by index from the columns (index 0 may mean null)."""

    def __init__(self, values: Iterable[Any] = ()) -> None:
        self.values: list[Any] = []
        self.index: dict[Any, int] = {}
        for value in values:
            self.add(value)

    def add(self, value: Any) -> int:
        """Index of `value`, adding it on first sight."""
        idx = self.index.get(value)
        if idx is None:
            idx = len(self.values)
            self.values.append(value)
            self.index[value] = idx
        return idx

    def get(self, idx: int) -> Any:
        """The value at `idx`, None for -1."""
        return None if idx < 0 else self.values[idx]

    def __len__(self) -> int:
        return len(self.values)


def _bounds_test(bounds: dict[str, int]) -> Callable[[int], bool]:
    gt, gte = bounds.get("gt"), bounds.get("gte")
    lt, lte = bounds.get("lt"), bounds.get("lte")

    def test(value: int) -> bool:
        if value == NO_TS:
            return False
        if gt is not None and value <= gt:
            return False
        if gte is not None and value < gte:
            return False
        if lt is not None and value >= lt:
            return False
        return not (lte is not None and value > lte)

    return test


class SmsStore:
    """All SMS of one organization plus its event log."""

    def __init__(self, organization_id: str, config: EmulatorConfig, clock: Clock) -> None:
        self.organization_id = organization_id
        self.config = config
        self.clock = clock
        self.seed: int | str = 0
        # Seeds the order of SMS sharing an instant per request (config.unstable_tie_order).
        self._tie_orders = 0
        self.ids = IdCodec("acti_", f"{organization_id}:0")
        self.events = EventLog(organization_id)
        # Users, leads, contacts, templates, numbers ... the SMS point to.
        self.crm = Crm(organization_id)
        self.users = Pool()  # (id, name)
        self.user_by_id: dict[str, int] = {}
        self.leads = Pool()  # id
        self.contacts = Pool()  # id
        self.phones = Pool()  # e164
        self.texts = Pool([None])
        self.costs = Pool([None])
        self.errors = Pool([None])
        self.templates = Pool([None])
        self.sequences = Pool()  # (id, name)
        self.media_base = "https://app.close.com/go/sms"
        # Test hook (see hooks.py): raw fields of one SMS as rendered, by row.
        self.raw_overrides: dict[int, dict[str, Any]] = {}
        # 404s "deleted mid-query" waiting for offset list requests (empty_query_on_delete).
        self.armed_empty_queries = 0
        # Deleted rows the list index still holds: a page including one answers 404.
        self.ghosts: set[int] = set()
        # Rows GET /activity/sms/{id}/ answers 403 for, and lists leave out.
        self.forbidden: set[int] = set()
        # Fields added to every rendered SMS (recorded and undeclared fields), or None.
        self._extra_fields = extra_fields_renderer(config)
        self._init_columns()

    def _init_columns(self) -> None:
        self.dc = array("q")
        self.du = array("q")
        self.aa = array("q")
        self.dsent = array("q")
        self.dsched = array("q")
        self.status = array("b")
        self.direction = array("b")
        self.source = array("b")
        self.lead = array("i")
        self.contact = array("i")
        self.user = array("i")
        self.created_by = array("i")
        self.updated_by = array("i")
        self.local = array("i")
        self.remote = array("i")
        self.text = array("i")
        self.cost = array("i")
        self.err = array("i")
        self.tmpl = array("i")
        self.natt = array("b")
        self.seq = array("h")
        self.deleted = bytearray()
        self.attach_override: dict[int, list[dict[str, Any]]] = {}
        # Listing order: keys are -date_created ascending, ties by row ascending.
        self.keys = array("q")
        self.order = array("i")
        self.by_lead: dict[int, array] = {}
        self.by_contact: dict[int, array] = {}
        self._pending: list[tuple[int, int]] = []
        self._pending_due: dict[int, int] = {}
        # Silent delivery failures to come: (due, row), a heap.
        self._outcomes: list[tuple[int, int]] = []

    # ---- rows -------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        """Rows ever stored, deleted ones included."""
        return len(self.dc)

    @property
    def live_count(self) -> int:
        """SMS that currently exist."""
        return len(self.order)

    def sms_id(self, row: int) -> str:
        """The `acti_` id of a row."""
        return self.ids.encode(row)

    def row_of(self, sms_id: str) -> int | None:
        """The row of a live SMS id, or None."""
        row = self.ids.decode(sms_id)
        if row is None or row >= len(self.dc) or self.deleted[row]:
            return None
        return row

    def listed_row_of(self, sms_id: str) -> int | None:
        """The row of an SMS id the list index holds: live, or deleted but kept (a ghost)."""
        row = self.row_of(sms_id)
        if row is None and self.ghosts:
            row = self.ids.decode(sms_id)
            return row if row in self.ghosts else None
        return row

    def append_row(
        self,
        *,
        dc: int,
        du: int,
        aa: int,
        dsent: int,
        dsched: int,
        status: int,
        direction: int,
        source: int,
        lead: int,
        contact: int,
        user: int,
        created_by: int,
        updated_by: int,
        local: int,
        remote: int,
        text: int,
        cost: int,
        err: int,
        tmpl: int,
        natt: int = 0,
        seq: int = -1,
        deleted: bool = False,
    ) -> int:
        """Append one record to the columns (not yet indexed)."""
        row = len(self.dc)
        self.dc.append(dc)
        self.du.append(du)
        self.aa.append(aa)
        self.dsent.append(dsent)
        self.dsched.append(dsched)
        self.status.append(status)
        self.direction.append(direction)
        self.source.append(source)
        self.lead.append(lead)
        self.contact.append(contact)
        self.user.append(user)
        self.created_by.append(created_by)
        self.updated_by.append(updated_by)
        self.local.append(local)
        self.remote.append(remote)
        self.text.append(text)
        self.cost.append(cost)
        self.err.append(err)
        self.tmpl.append(tmpl)
        self.natt.append(natt)
        self.seq.append(seq)
        self.deleted.append(1 if deleted else 0)
        return row

    def index_row(self, row: int) -> None:
        """Put a live row into the sorted listing index and the lead/contact indexes."""
        key = -self.dc[row]
        pos = bisect.bisect_right(self.keys, key)
        self.keys.insert(pos, key)
        self.order.insert(pos, row)
        self._index_owner(row)

    def _index_owner(self, row: int) -> None:
        lead, contact = self.lead[row], self.contact[row]
        if lead >= 0:
            self.by_lead.setdefault(lead, array("i")).append(row)
        if contact >= 0:
            self.by_contact.setdefault(contact, array("i")).append(row)

    def _unindex_owner(self, row: int) -> None:
        for idx, index in ((self.lead[row], self.by_lead), (self.contact[row], self.by_contact)):
            if idx >= 0 and idx in index:
                rows = index[idx]
                if row in rows:
                    rows.remove(row)

    def build_index(self, live_rows_in_order: array) -> None:
        """Install a ready listing order (the generator emits rows sorted already)."""
        self.order = live_rows_in_order
        self.keys = array("q", (-self.dc[row] for row in live_rows_in_order))
        for row in live_rows_in_order:
            self._index_owner(row)

    def _unindex(self, row: int) -> None:
        key = -self.dc[row]
        lo = bisect.bisect_left(self.keys, key)
        hi = bisect.bisect_right(self.keys, key)
        for pos in range(lo, hi):
            if self.order[pos] == row:
                del self.keys[pos]
                del self.order[pos]
                break
        self._unindex_owner(row)

    # ---- rendering ----------------------------------------------------------------------

    def attachments(self, row: int) -> list[dict[str, Any]]:
        """Attachments of a row: stored ones from the API, or derived from the row's hash."""
        override = self.attach_override.get(row)
        if override is not None:
            return [dict(item) for item in override]
        count = self.natt[row]
        if not count:
            return []
        sms_id = self.sms_id(row)
        digest = hashlib.blake2b(f"{self.seed}:{row}".encode(), digest_size=32).digest()
        result = []
        for k in range(count):
            ctype = ATTACHMENT_CONTENT_TYPES[digest[k] % len(ATTACHMENT_CONTENT_TYPES)]
            media_id = random_like_id("media_", f"{self.seed}:{row}", k, length=22)
            ext = ctype.split("/", 1)[1].split("-")[0].replace("x-", "").lower()
            url = f"{self.media_base}/{sms_id}/media/{media_id}/"
            result.append(
                {
                    "media_id": media_id,
                    "content_type": ctype,
                    "filename": f"media_{k + 1}.{ext}",
                    "size": 1024 + int.from_bytes(digest[8 + 3 * k : 11 + 3 * k], "big"),
                    "url": url,
                    # Close only has thumbnails when it could make one: images.
                    "thumbnail_url": f"{url}thumbnail/" if ctype.startswith("image/") else None,
                }
            )
        return result

    def render(self, row: int) -> dict[str, Any]:
        """The SMS as GET /activity/sms/{id}/ returns it."""
        user = self.users.get(self.user[row])
        created_by = self.users.get(self.created_by[row])
        updated_by = self.users.get(self.updated_by[row])
        local = self.phones.get(self.local[row])
        remote = self.phones.get(self.remote[row])
        local_fmt, local_iso = format_phone(local) if local else (None, None)
        remote_fmt, remote_iso = format_phone(remote) if remote else (None, None)
        seq = self.sequences.get(self.seq[row])
        rendered = {
            "_type": "SMS",
            "activity_at": format_opt(self.aa[row]),
            "agent_action_reason": None,
            "agent_config_id": None,
            "attachments": self.attachments(row),
            "contact_id": self.contacts.get(self.contact[row]),
            "cost": self.costs.values[self.cost[row]],
            "created_by": created_by[0] if created_by else None,
            "created_by_name": created_by[1] if created_by else None,
            "date_created": format_ms(self.dc[row]),
            "date_scheduled": format_opt(self.dsched[row]),
            "date_sent": format_opt(self.dsent[row]),
            "date_updated": format_ms(self.du[row]),
            "direction": DIRECTIONS[self.direction[row]],
            "error_message": self.errors.values[self.err[row]],
            "id": self.sms_id(row),
            "lead_id": self.leads.get(self.lead[row]),
            "local_country_iso": local_iso,
            "local_phone": local,
            "local_phone_formatted": local_fmt,
            "organization_id": self.organization_id,
            "remote_country_iso": remote_iso,
            "remote_phone": remote,
            "remote_phone_formatted": remote_fmt,
            "sequence_id": seq[0] if seq else None,
            "sequence_name": seq[1] if seq else None,
            "sequence_subscription_id": (
                random_like_id("sub_", self.seed, row, length=22) if seq else None
            ),
            "source": SOURCES[self.source[row]],
            "status": STATUSES[self.status[row]],
            "template_id": self.templates.values[self.tmpl[row]],
            "text": self.texts.values[self.text[row]],
            "updated_by": updated_by[0] if updated_by else None,
            "updated_by_name": updated_by[1] if updated_by else None,
            "user_id": user[0] if user else None,
            "user_name": user[1] if user else None,
            "users": [],
        }
        if self._extra_fields is not None:
            rendered.update(self._extra_fields(self.seed, row, rendered))
        return apply_raw_overrides(rendered, self.raw_overrides.get(row))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every live SMS, rendered, by id."""
        return {self.sms_id(row): self.render(row) for row in self.order}

    # ---- listing ------------------------------------------------------------------------

    def _sort_key(self, order_field: str) -> Callable[[int], tuple[int, int]]:
        column = self.dc if order_field == "date_created" else self.aa
        return lambda row: (-column[row], row)

    def _tie_order(self) -> Callable[[int], tuple[int, float]] | None:
        """With `unstable_tie_order`, a sort key ordering SMS of one instant anew each request."""
        if not self.config.unstable_tie_order:
            return None
        self._tie_orders += 1
        shuffled = random.Random(self._tie_orders).random
        ties: dict[int, float] = {}
        return lambda row: (-self.dc[row], ties.setdefault(row, shuffled()))

    def list_rows(self, q: SmsQuery) -> tuple[list[int], bool]:
        """Rows of one page and has_more, newest first by date_created (ties by row)."""
        dc_test = _bounds_test(q.date_created) if q.date_created else None
        aa_test = _bounds_test(q.activity_at) if q.activity_at else None
        users = set(q.users) if q.users is not None else None
        contacts = set(q.contacts) if q.contacts is not None else None
        leads = set(q.leads) if q.leads is not None else None
        want = q.skip + q.limit + 1
        tie_order = self._tie_order()

        def extra_ok(row: int) -> bool:
            if users is not None and self.user[row] not in users:
                return False
            if contacts is not None and self.contact[row] not in contacts:
                return False
            if leads is not None and self.lead[row] not in leads:
                return False
            return aa_test is None or aa_test(self.aa[row])

        candidates: Iterable[int] | None = None
        if q.rows is not None:
            candidates = q.rows
        elif q.leads is not None:
            candidates = [r for lead in q.leads for r in self.by_lead.get(lead, ())]
        elif q.contacts is not None:
            candidates = [r for c in q.contacts for r in self.by_contact.get(c, ())]
        ghosts, hidden = self.ghosts, self.forbidden
        if (
            candidates is not None
            or q.order_field != "date_created"
            or tie_order
            or ghosts
            or hidden
        ):
            if candidates is None:
                candidates = self.order
            if ghosts and q.rows is None:
                candidates = itertools.chain(candidates, ghosts)
            rows = sorted(
                {
                    r
                    for r in candidates
                    if (not self.deleted[r] or r in ghosts)
                    and r not in hidden
                    and (dc_test is None or dc_test(self.dc[r]))
                    and extra_ok(r)
                },
                key=tie_order or self._sort_key(q.order_field),
                reverse=not q.descending,
            )
            page = rows[q.skip : q.skip + q.limit + 1]
            if ghosts and not ghosts.isdisjoint(page[: q.limit]):
                raise DeletedInPage()
            return page[: q.limit], len(page) > q.limit

        # date_created window -> position range in the sorted index (binary search).
        lo, hi = 0, len(self.keys)
        b = q.date_created
        if "gt" in b:
            hi = min(hi, bisect.bisect_left(self.keys, -b["gt"]))
        if "gte" in b:
            hi = min(hi, bisect.bisect_right(self.keys, -b["gte"]))
        if "lt" in b:
            lo = max(lo, bisect.bisect_right(self.keys, -b["lt"]))
        if "lte" in b:
            lo = max(lo, bisect.bisect_left(self.keys, -b["lte"]))
        if hi <= lo:
            return [], False
        filtered = users is not None or aa_test is not None
        if not filtered:
            if q.descending:
                page = list(self.order[lo + q.skip : min(hi, lo + want)])
            else:
                start = hi - 1 - q.skip
                stop = max(lo - 1, hi - 1 - want)
                page = [self.order[p] for p in range(start, stop, -1)] if start >= lo else []
            return page[: q.limit], len(page) > q.limit
        positions = range(lo, hi) if q.descending else range(hi - 1, lo - 1, -1)
        page = []
        seen = 0
        for pos in positions:
            row = self.order[pos]
            if extra_ok(row):
                seen += 1
                if seen > q.skip:
                    page.append(row)
                    if len(page) > q.limit:
                        break
        return page[: q.limit], len(page) > q.limit

    # ---- lifecycle ----------------------------------------------------------------------

    def tick(self) -> None:
        """Send due outbox/scheduled SMS; lazy, so it runs on every read and clock jump."""
        now = self.clock.now_ms()
        while self._pending and self._pending[0][0] <= now:
            due, row = heapq.heappop(self._pending)
            if self._pending_due.get(row) != due:
                continue  # cancelled or rescheduled
            del self._pending_due[row]
            if self.deleted[row] or self.status[row] not in (_OUTBOX, _SCHEDULED):
                continue
            self._send(row, due)
        while self._outcomes and self._outcomes[0][0] <= now:
            due, row = heapq.heappop(self._outcomes)
            if not self.deleted[row] and self.status[row] == _SENT:
                self.fail_delivery(row, SILENT_FAILURE_MESSAGE, due)

    def _send(self, row: int, at: int) -> None:
        before = self.render(row)
        remote = self.phones.get(self.remote[row])
        if remote is None or not _E164.match(remote):
            error = INVALID_NUMBER_MESSAGE
        elif remote.endswith(FAILING_NUMBER_SUFFIX):
            error = SEND_ERROR_MESSAGE
        else:
            error = None
        self.du[row] = at
        if error is None:
            self.status[row] = _SENT
            self.dsent[row] = at
            self.aa[row] = at
            is_mms = bool(self.natt[row] or self.attach_override.get(row))
            text = self.texts.values[self.text[row]]
            self.cost[row] = self.costs.add(MMS_COST_CENTS if is_mms else sms_cost(text))
            action = "sent"
            if self._fails_silently(row):
                delay_ms = int(self.config.delivery_outcome_delay_seconds * 1000)
                heapq.heappush(self._outcomes, (at + delay_ms, row))
        else:
            self.status[row] = _ERROR
            self.err[row] = self.errors.add(error)
            action = "updated"
        after = self.render(row)
        changed = sorted(k for k in after if after[k] != before[k])
        previous = {k: before[k] for k in changed}
        user_id = after["user_id"]
        self._emit(
            action,
            row,
            at,
            user_id=user_id,
            data=after,
            previous=previous,
            changed=changed,
            ctx=None,
        )

    def _fails_silently(self, row: int) -> bool:
        """Whether a sent SMS gets a silent delivery failure: a seeded hash, so reproducible."""
        rate = self.config.silent_delivery_failure_rate
        if rate <= 0:
            return False
        digest = hashlib.blake2b(f"delivery:{self.seed}:{row}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < rate * (1 << 64)

    def fail_delivery(self, row: int, error_message: str, at: int) -> None:
        """A carrier's late delivery failure: status error and date_updated move, no event.

        Close logs no event for some outcomes it records itself (README of the Close facts).
        """
        self.status[row] = _ERROR
        self.err[row] = self.errors.add(error_message)
        self.du[row] = max(self.du[row], at)

    def _emit(
        self,
        action: str,
        row: int,
        at: int,
        *,
        user_id: str | None,
        data: dict[str, Any] | None,
        previous: dict[str, Any] | None,
        changed: list[str],
        ctx: RequestContext | None,
        meta: dict[str, Any] | None = None,
    ) -> Event:
        event = self._new_event(
            "activity.sms",
            self.sms_id(row),
            self.leads.get(self.lead[row]),
            action,
            at,
            user_id=user_id,
            data=data,
            previous=previous,
            changed=changed,
            ctx=ctx,
            meta=meta,
        )
        if action in self.config.unlogged_actions:
            return event
        return self.events.emit(event, int(self.config.consolidation_seconds * 1000))

    def _new_event(
        self,
        object_type: str,
        object_id: str,
        lead_id: str | None,
        action: str,
        at: int,
        *,
        user_id: str | None,
        data: dict[str, Any] | None,
        previous: dict[str, Any] | None,
        changed: list[str],
        ctx: RequestContext | None,
        meta: dict[str, Any] | None = None,
    ) -> Event:
        """An event of any object, not yet logged; a request's context names its actor."""
        return self.events.new_event(
            at,
            user_id=ctx.user_id if ctx else user_id,
            request_id=ctx.request_id if ctx else None,
            api_key_id=ctx.principal.key_id if ctx and ctx.principal else None,
            object_type=object_type,
            object_id=object_id,
            lead_id=lead_id,
            action=action,
            changed_fields=changed,
            data=data,
            previous_data=previous,
            meta={
                **({"request_method": ctx.method, "request_path": ctx.path} if ctx else {}),
                **(meta or {}),
            },
        )

    def emit_object_event(
        self,
        object_type: str,
        object_id: str,
        lead_id: str | None,
        action: str,
        *,
        data: dict[str, Any] | None,
        previous: dict[str, Any] | None,
        changed: list[str],
        ctx: RequestContext | None,
        meta: dict[str, Any] | None = None,
    ) -> Event:
        """Log an event of a lead, contact or other activity, now."""
        event = self._new_event(
            object_type,
            object_id,
            lead_id,
            action,
            self.clock.now_ms(),
            user_id=None,
            data=data,
            previous=previous,
            changed=changed,
            ctx=ctx,
            meta=meta,
        )
        return self.events.emit(event, int(self.config.consolidation_seconds * 1000))

    def _schedule(self, row: int, due: int) -> None:
        self._pending_due[row] = due
        heapq.heappush(self._pending, (due, row))

    def _user_index(self, user_id: str | None, principal: Principal | None) -> int:
        if user_id is None:
            return -1
        idx = self.user_by_id.get(user_id)
        if idx is None:
            name = principal.user_name if principal and principal.user_id == user_id else None
            idx = self.users.add((user_id, name))
            self.user_by_id[user_id] = idx
        return idx

    def _validate(
        self, payload: dict[str, Any], allowed: frozenset[str], creating: bool
    ) -> dict[str, Any]:
        """Type-check a create/update body; returns the accepted fields."""
        errors: dict[str, str] = {}
        clean: dict[str, Any] = {}
        if not isinstance(payload, dict):
            raise ValidationError({}, ["Invalid JSON body: expected an object."])
        for name, value in payload.items():
            if name not in allowed:
                continue  # Close ignores fields it does not know
            clean[name] = value
        if creating and "status" not in clean:
            errors["status"] = "This field is required."
        if "status" in clean and clean["status"] not in STATUS_CODE:
            errors["status"] = f"Value must be one of: {', '.join(STATUSES)}."
        if "direction" in clean and clean["direction"] not in DIRECTION_CODE:
            errors["direction"] = f"Value must be one of: {', '.join(DIRECTIONS)}."
        if "source" in clean and clean["source"] not in SOURCE_CODE:
            errors["source"] = f"Value must be one of: {', '.join(SOURCES)}."
        for name in (
            "text",
            "lead_id",
            "contact_id",
            "user_id",
            "created_by_id",
            "template_id",
            "local_phone",
            "remote_phone",
            "organization_id",
        ):
            if name in clean and clean[name] is not None and not isinstance(clean[name], str):
                errors[name] = "Not a valid string."
        for name in ("local_phone", "remote_phone"):
            value = clean.get(name)
            if isinstance(value, str) and not _E164.match(value):
                errors[name] = "Invalid phone number: use E.164, e.g. +16503334444."
        for name in ("activity_at", "date_created", "date_scheduled"):
            value = clean.get(name)
            if value is None:
                continue
            try:
                clean[name] = dt_to_ms(parse_datetime(str(value)))
            except ValueError:
                errors[name] = "Not a valid datetime."
        if "send_in" in clean and clean["send_in"] is not None:
            value = clean["send_in"]
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value < self.config.send_in_max_seconds
            ):
                errors["send_in"] = (
                    f"Ensure this value is a number of seconds less than "
                    f"{self.config.send_in_max_seconds}."
                )
        if clean.get("organization_id") not in (None, self.organization_id):
            errors["organization_id"] = "Object does not exist."
        if "attachments" in clean and clean["attachments"] is not None:
            items = clean["attachments"]
            if not isinstance(items, list):
                errors["attachments"] = "Expected a list of attachments."
            else:
                for i, item in enumerate(items):
                    if not isinstance(item, dict) or not all(
                        isinstance(item.get(k), str) for k in ("content_type", "filename", "url")
                    ):
                        errors["attachments"] = (
                            f"Item {i}: content_type, filename and url are required."
                        )
                    elif item["content_type"] not in ATTACHMENT_CONTENT_TYPES:
                        errors["attachments"] = f"Item {i}: unsupported content_type."
        if errors:
            raise ValidationError(errors)
        return clean

    def _check_sendable(
        self, status: int, row_values: dict[str, Any], errors: dict[str, str]
    ) -> None:
        if status in (_OUTBOX, _SCHEDULED):
            if not row_values.get("local_phone"):
                errors["local_phone"] = "This field is required to send an SMS."
            if not row_values.get("text") and not row_values.get("template_id"):
                errors["text"] = "Provide text or template_id to send an SMS."
        if status == _SCHEDULED and row_values.get("date_scheduled") in (None, NO_TS):
            errors["date_scheduled"] = "This field is required for scheduled SMS."

    def _store_attachments(self, row: int, sms_id: str, items: list[dict[str, Any]] | None) -> None:
        if not items:
            self.attach_override[row] = []
            return
        stored = []
        for k, item in enumerate(items):
            media_id = random_like_id("media_", f"api:{sms_id}", k, length=22)
            url = f"{self.media_base}/{sms_id}/media/{media_id}/"
            stored.append(
                {
                    "media_id": media_id,
                    "content_type": item["content_type"],
                    "filename": item["filename"],
                    "size": item.get("size") if isinstance(item.get("size"), int) else None,
                    "url": url,
                    "thumbnail_url": (
                        f"{url}thumbnail/" if item["content_type"].startswith("image/") else None
                    ),
                }
            )
        self.attach_override[row] = stored

    def create(self, payload: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """POST /activity/sms/: validate, store, emit `created` (and `sent`)."""
        self.tick()
        clean = self._validate(payload, CREATE_FIELDS, creating=True)
        now = self.clock.now_ms()
        status = STATUS_CODE[clean["status"]]
        direction_name = clean.get("direction") or ("inbound" if status == _INBOX else "outbound")
        source_name = clean.get("source") or (
            "Close.io" if status in (_OUTBOX, _SCHEDULED) else "External"
        )
        errors: dict[str, str] = {}
        self._check_sendable(status, clean, errors)
        dsched = clean.get("date_scheduled")
        if status == _SCHEDULED and dsched is not None and dsched <= now:
            errors["date_scheduled"] = "The scheduled date must be in the future."
        if errors:
            raise ValidationError(errors)
        # `is None`, not `or`: 1970-01-01T00:00:00Z is 0 ms, a valid imported date.
        dc = now if clean.get("date_created") is None else clean["date_created"]
        principal = ctx.principal
        user_id = clean.get("user_id") or (principal.user_id if principal else None)
        created_by_id = clean.get("created_by_id") or (principal.user_id if principal else None)
        dsent = dc if status == _SENT else NO_TS
        aa = clean.get("activity_at")
        if aa is None:
            aa = dsent if dsent != NO_TS else dc
        lead_idx = self.leads.add(clean["lead_id"]) if clean.get("lead_id") else -1
        contact_idx = self.contacts.add(clean["contact_id"]) if clean.get("contact_id") else -1
        text = clean.get("text")
        template_id = clean.get("template_id")
        if text is None and template_id:
            text = f"(rendered from template {template_id})"
        row = self.append_row(
            dc=dc,
            # Saved now, whatever date_created says (an import may date it in the future).
            du=now,
            aa=aa,
            dsent=dsent,
            dsched=dsched if status == _SCHEDULED else NO_TS,
            status=status,
            direction=DIRECTION_CODE[direction_name],
            source=SOURCE_CODE[source_name],
            lead=lead_idx,
            contact=contact_idx,
            user=self._user_index(user_id, principal),
            created_by=self._user_index(created_by_id, principal),
            updated_by=self._user_index(created_by_id, principal),
            local=self.phones.add(clean["local_phone"]) if clean.get("local_phone") else -1,
            remote=self.phones.add(clean["remote_phone"]) if clean.get("remote_phone") else -1,
            text=self.texts.add(text) if text is not None else 0,
            cost=0,
            err=0,
            tmpl=self.templates.add(template_id) if template_id else 0,
        )
        sms_id = self.sms_id(row)
        if clean.get("attachments"):
            self._store_attachments(row, sms_id, clean["attachments"])
        self.index_row(row)
        rendered = self.render(row)
        self._emit(
            "created", row, now, user_id=user_id, data=rendered, previous=None, changed=[], ctx=ctx
        )
        if status == _SENT and self.direction[row] == _OUTBOUND:
            self._emit(
                "sent", row, now, user_id=user_id, data=rendered, previous=None, changed=[], ctx=ctx
            )
        if status == _OUTBOX:
            self._schedule(row, now + int(float(clean.get("send_in") or 0) * 1000))
        elif status == _SCHEDULED:
            self._schedule(row, dsched)  # type: ignore[arg-type]
        return rendered

    def update(self, sms_id: str, payload: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """PUT /activity/sms/{id}/ (a PATCH): drafts only, plus cancelling back to draft."""
        self.tick()
        row = self.row_of(sms_id)
        if row is None:
            raise NotFound()
        clean = self._validate(payload, UPDATE_FIELDS, creating=False)
        now = self.clock.now_ms()
        current = self.status[row]
        new_status = STATUS_CODE[clean["status"]] if "status" in clean else current
        if current != _DRAFT:
            cancelling = current in (_SCHEDULED, _OUTBOX) and new_status == _DRAFT
            if not cancelling:
                raise ValidationError({"status": "Only draft SMS can be modified."})
        elif new_status not in (_DRAFT, _SCHEDULED, _OUTBOX):
            raise ValidationError(
                {"status": "A draft can only be changed to draft, scheduled or outbox."}
            )
        before = self.render(row)
        merged = {
            "local_phone": clean.get("local_phone", before["local_phone"]),
            "text": clean.get("text", before["text"]),
            "template_id": clean.get("template_id", before["template_id"]),
            "date_scheduled": clean.get("date_scheduled", self.dsched[row]),
        }
        errors: dict[str, str] = {}
        self._check_sendable(new_status, merged, errors)
        if (
            new_status == _SCHEDULED
            and merged["date_scheduled"] not in (None, NO_TS)
            and merged["date_scheduled"] <= now
        ):
            errors["date_scheduled"] = "The scheduled date must be in the future."
        if errors:
            raise ValidationError(errors)

        if "text" in clean:
            self.text[row] = self.texts.add(clean["text"]) if clean["text"] is not None else 0
        if "template_id" in clean:
            tid = clean["template_id"]
            self.tmpl[row] = self.templates.add(tid) if tid else 0
        for name, column in (("local_phone", self.local), ("remote_phone", self.remote)):
            if name in clean:
                column[row] = self.phones.add(clean[name]) if clean[name] else -1
        if "activity_at" in clean:
            self.aa[row] = clean["activity_at"] if clean["activity_at"] is not None else NO_TS
        if "user_id" in clean:
            self.user[row] = self._user_index(clean["user_id"], ctx.principal)
        if "lead_id" in clean or "contact_id" in clean:
            self._unindex_owner(row)
            if "lead_id" in clean:
                self.lead[row] = self.leads.add(clean["lead_id"]) if clean["lead_id"] else -1
            if "contact_id" in clean:
                cid = clean["contact_id"]
                self.contact[row] = self.contacts.add(cid) if cid else -1
            self._index_owner(row)
        if "attachments" in clean:
            self._store_attachments(row, sms_id, clean["attachments"])
        self.status[row] = new_status
        self._pending_due.pop(row, None)
        if new_status == _SCHEDULED:
            self.dsched[row] = merged["date_scheduled"]
            self._schedule(row, self.dsched[row])
        elif new_status == _OUTBOX:
            self.dsched[row] = NO_TS
            self._schedule(row, now + int(float(clean.get("send_in") or 0) * 1000))
        else:
            self.dsched[row] = NO_TS
        self.du[row] = max(now, self.du[row])
        if ctx.principal is not None:
            self.updated_by[row] = self._user_index(ctx.principal.user_id, ctx.principal)
        after = self.render(row)
        changed = sorted(k for k in after if after[k] != before[k])
        self._emit(
            "updated",
            row,
            self.du[row],
            user_id=after["user_id"],
            data=after,
            previous={k: before[k] for k in changed},
            changed=changed,
            ctx=ctx,
        )
        return after

    def delete(self, sms_id: str, ctx: RequestContext, keep_in_index: bool = False) -> None:
        """DELETE /activity/sms/{id}/: emits `deleted` with data null.

        With `keep_in_index`, the SMS stays in the list ordering as a ghost (see DeletedInPage).
        """
        self.tick()
        row = self.row_of(sms_id)
        if row is None:
            raise NotFound()
        principal = ctx.principal
        if principal is not None and not principal.is_admin:
            owner = self.users.get(self.user[row])
            if owner is None or owner[0] != principal.user_id:
                raise Forbidden()
        self._delete_row(row, ctx)
        if keep_in_index:
            self.ghosts.add(row)

    def _delete_row(self, row: int, ctx: RequestContext | None) -> None:
        now = self.clock.now_ms()
        previous = self.render(row)
        self.deleted[row] = 1
        self._unindex(row)
        self._pending_due.pop(row, None)
        if self.config.empty_query_on_delete:
            self.armed_empty_queries += 1
        self._emit(
            "deleted",
            row,
            max(now, self.du[row]),
            user_id=previous["user_id"],
            data=None,
            previous=previous,
            changed=[],
            ctx=ctx,
        )

    def _live_rows_of_lead(self, lead_id: str) -> list[int]:
        """Live SMS rows of a lead, newest first."""
        idx = self.leads.index.get(lead_id)
        rows = self.by_lead.get(idx, ()) if idx is not None else ()
        return sorted(
            (r for r in rows if not self.deleted[r]),
            key=self._sort_key("date_created"),
        )

    def delete_lead(self, lead_id: str, ctx: RequestContext | None) -> list[str]:
        """Delete a lead with its SMS and contacts, each with a `deleted` event, then the lead's
        own `deleted` event (Close: deleting a lead deletes its child objects). Returns the ids
        of the deleted SMS."""
        self.tick()
        lead = self.crm.leads.get(lead_id)
        if lead is None and lead_id not in self.leads.index:
            raise NotFound("Lead")
        deleted = []
        for row in self._live_rows_of_lead(lead_id):
            deleted.append(self.sms_id(row))
            self._delete_row(row, ctx)
        previous = {"id": lead_id, "organization_id": self.organization_id}
        if lead is not None:
            previous = self.crm.render("lead", lead)
            user_id = ctx.user_id if ctx else None
            for contact_id in list(lead.contact_ids):
                self._delete_contact(contact_id, ctx, user_id)
            del self.crm.leads[lead_id]
        self.emit_object_event(
            "lead", lead_id, lead_id, "deleted", data=None, previous=previous, changed=[], ctx=ctx
        )
        return deleted

    def _delete_contact(
        self, contact_id: str, ctx: RequestContext | None, user_id: str | None
    ) -> None:
        previous = self.crm.delete_contact(contact_id, self.clock.now_ms(), user_id)
        self.emit_object_event(
            "contact",
            contact_id,
            previous["lead_id"],
            "deleted",
            data=None,
            previous=previous,
            changed=[],
            ctx=ctx,
        )

    def delete_contact(self, contact_id: str, ctx: RequestContext | None) -> None:
        """Delete a contact (its SMS keep their contact_id, as activities outlive contacts)."""
        self.tick()
        self._delete_contact(contact_id, ctx, ctx.user_id if ctx else None)

    def update_lead(
        self, lead_id: str, payload: dict[str, Any], ctx: RequestContext | None
    ) -> dict[str, Any]:
        """Rename a lead, change its status, description or custom fields: an `updated` event."""
        before, after = self.crm.update_lead(
            lead_id, payload, self.clock.now_ms(), ctx.user_id if ctx else None
        )
        self._emit_change("lead", lead_id, lead_id, before, after, ctx)
        return after

    def update_contact(
        self, contact_id: str, payload: dict[str, Any], ctx: RequestContext | None
    ) -> dict[str, Any]:
        """Rename a contact, change its title or move it to another lead: `updated` events
        for the contact and, on a move, for both leads."""
        before, after = self.crm.update_contact(
            contact_id, payload, self.clock.now_ms(), ctx.user_id if ctx else None
        )
        self._emit_change("contact", contact_id, after["lead_id"], before, after, ctx)
        if before["lead_id"] != after["lead_id"]:
            for lead_id in (before["lead_id"], after["lead_id"]):
                lead = self.crm.leads.get(lead_id)
                if lead is not None:
                    rendered = self.crm.render("lead", lead)
                    self.emit_object_event(
                        "lead",
                        lead_id,
                        lead_id,
                        "updated",
                        data=rendered,
                        previous=None,
                        changed=["contact_ids", "date_updated"],
                        ctx=ctx,
                    )
        return after

    def _emit_change(
        self,
        object_type: str,
        object_id: str,
        lead_id: str | None,
        before: dict[str, Any],
        after: dict[str, Any],
        ctx: RequestContext | None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        changed = sorted(k for k in after if after.get(k) != before.get(k))
        self.emit_object_event(
            object_type,
            object_id,
            lead_id,
            "updated",
            data=after,
            previous={k: before.get(k) for k in changed},
            changed=changed,
            ctx=ctx,
            meta=meta,
        )

    def merge_leads(
        self, source_id: str, destination_id: str, ctx: RequestContext | None
    ) -> dict[str, Any]:
        """POST /lead/merge/: the source's contacts and SMS move to the destination (SMS keep
        their ids; lead_id and date_updated change), a LeadMerge activity is created on the
        destination and the source is deleted. Events per `config.merge_events`."""
        self.tick()
        crm = self.crm
        errors = {
            name: "Object does not exist."
            for name, lead_id in (("source", source_id), ("destination", destination_id))
            if not isinstance(lead_id, str) or lead_id not in crm.leads
        }
        if not errors and source_id == destination_id:
            errors["destination"] = "Source and destination must be different leads."
        if errors:
            raise ValidationError(errors)
        source: Lead = crm.leads[source_id]
        destination: Lead = crm.leads[destination_id]
        every_object = self.config.merge_events == "all"
        meta = {"merge_source_lead_id": source_id, "merge_destination_lead_id": destination_id}
        now = self.clock.now_ms()
        user_id = ctx.user_id if ctx else None
        destination_before = crm.render("lead", destination)
        source_before = crm.render("lead", source)

        target = self.leads.add(destination_id)
        for row in self._live_rows_of_lead(source_id):
            before = {"lead_id": source_id, "date_updated": format_ms(self.du[row])}
            self._unindex_owner(row)
            self.lead[row] = target
            self._index_owner(row)
            self.du[row] = max(now, self.du[row])
            if every_object:
                after = self.render(row)
                self._emit(
                    "updated",
                    row,
                    self.du[row],
                    user_id=after["user_id"],
                    data=after,
                    previous=before,
                    changed=sorted(before),
                    ctx=ctx,
                    meta=meta,
                )
        for contact_id in list(source.contact_ids):
            contact = crm.contacts[contact_id]
            contact_before = crm.render("contact", contact)
            crm.move_contact(contact, destination_id, now, user_id)
            if every_object:
                contact_after = crm.render("contact", contact)
                self._emit_change(
                    "contact", contact_id, destination_id, contact_before, contact_after, ctx, meta
                )
        merge = crm.add_merge(source, destination, now, user_id)
        if every_object:
            self.emit_object_event(
                "activity.lead_merge",
                merge.id,
                destination_id,
                "created",
                data=crm.render("lead_merge", merge),
                previous=None,
                changed=[],
                ctx=ctx,
                meta=meta,
            )
        crm.touch_lead(destination, now, user_id)
        self._emit_change(
            "lead",
            destination_id,
            destination_id,
            destination_before,
            crm.render("lead", destination),
            ctx,
            meta,
        )
        del crm.leads[source_id]
        self.emit_object_event(
            "lead",
            source_id,
            source_id,
            "deleted",
            data=None,
            previous=source_before,
            changed=[],
            ctx=ctx,
            meta=meta,
        )
        return {"status": "ok"}

    def rename_user(self, user_id: str, first_name: str, last_name: str) -> None:
        """A user's new name, which their SMS show in user_name from now on."""
        user = self.crm.get("user", user_id)
        user.first_name, user.last_name = first_name, last_name
        user.date_updated = max(user.date_updated, self.clock.now_ms())
        idx = self.user_by_id.get(user_id)
        if idx is not None:
            self.users.values[idx] = (user_id, user.name)

    def take_armed_empty_query(self) -> bool:
        """Use up one armed "deleted mid-query" 404, if any is waiting."""
        if not self.armed_empty_queries:
            return False
        self.armed_empty_queries -= 1
        return True

    def horizon_ms(self) -> int:
        """Events last updated before this instant are gone (retention)."""
        return self.clock.now_ms() - self.config.event_retention_days * 86_400_000
