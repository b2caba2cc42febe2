"""The SMS of one organization as compact columns, and the indexes that list them.

Records live in typed arrays (about 100 bytes per SMS) and are rendered into Close's JSON
shape only when asked for (rendering.py), so a store of a million SMS stays small and quick to
build. A row is one SMS; its `acti_` id encodes the row number. The columns, one value per row:

    date_created, date_updated,   epoch milliseconds ("q"); NO_TS where the SMS has none
    activity_at, date_sent,
    date_scheduled
    status, direction, source     codes of schema.STATUSES, DIRECTIONS, SOURCES ("b")
    lead, contact                 index into the `leads`, `contacts` pools; -1: none ("i")
    user, created_by, updated_by  index into the `users` pool of (id, name); -1: none ("i")
    local_phone, remote_phone     index into the `phones` pool of E.164 numbers; -1: none ("i")
    text, cost, error, template   index into the `texts`, `costs`, `errors` (error messages),
                                  `templates` (template ids) pools; 0 is null ("i")
    attachment_count              attachments derived from the row's hash ("b"), unless the API
                                  gave some (`api_attachments`)
    sequence                      index into the `sequences` pool of (id, name); -1: none ("h")
    deleted                       1 once deleted (a bytearray)

Callers hold the emulator lock; nothing here locks by itself.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable
from typing import Any

from .auth import Principal
from .clock import Clock
from .config import EmulatorConfig
from .crm import Crm
from .ids import IdCodec


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


class SmsColumns:
    """Every SMS row of one organization, the pools its columns point into, and its indexes:
    the listing order (newest date_created first) and the rows of each lead and contact."""

    def __init__(self, organization_id: str, config: EmulatorConfig, clock: Clock) -> None:
        self.organization_id = organization_id
        self.config = config
        self.clock = clock
        # The generator's seed: ids, attachments and extra fields derive from it.
        self.seed: int | str = 0
        self.ids = IdCodec("acti_", f"{organization_id}:0")
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
        # Deleted rows the list index still holds: a page including one answers 404.
        self.ghosts: set[int] = set()
        # Rows GET /activity/sms/{id}/ answers 403 for, and lists leave out.
        self.forbidden: set[int] = set()
        self._init_columns()

    def _init_columns(self) -> None:
        self.date_created = array("q")
        self.date_updated = array("q")
        self.activity_at = array("q")
        self.date_sent = array("q")
        self.date_scheduled = array("q")
        self.status = array("b")
        self.direction = array("b")
        self.source = array("b")
        self.lead = array("i")
        self.contact = array("i")
        self.user = array("i")
        self.created_by = array("i")
        self.updated_by = array("i")
        self.local_phone = array("i")
        self.remote_phone = array("i")
        self.text = array("i")
        self.cost = array("i")
        self.error = array("i")
        self.template = array("i")
        self.attachment_count = array("b")
        self.sequence = array("h")
        self.deleted = bytearray()
        # Attachments given through the API, by row (they replace the derived ones).
        self.api_attachments: dict[int, list[dict[str, Any]]] = {}
        # Listing order: keys are -date_created ascending, ties by row ascending.
        self.listing_keys = array("q")
        self.listing_order = array("i")
        self.rows_by_lead: dict[int, array] = {}
        self.rows_by_contact: dict[int, array] = {}

    # ---- rows -------------------------------------------------------------------------

    def sms_id(self, row: int) -> str:
        """The `acti_` id of a row."""
        return self.ids.encode(row)

    def row_of(self, sms_id: str) -> int | None:
        """The row of a live SMS id, or None."""
        row = self.ids.decode(sms_id)
        if row is None or row >= len(self.date_created) or self.deleted[row]:
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
        date_created: int,
        date_updated: int,
        activity_at: int,
        date_sent: int,
        date_scheduled: int,
        status: int,
        direction: int,
        source: int,
        lead: int,
        contact: int,
        user: int,
        created_by: int,
        updated_by: int,
        local_phone: int,
        remote_phone: int,
        text: int,
        cost: int,
        error: int,
        template: int,
        attachment_count: int = 0,
        sequence: int = -1,
        deleted: bool = False,
    ) -> int:
        """Append one record to the columns (not yet indexed)."""
        row = len(self.date_created)
        self.date_created.append(date_created)
        self.date_updated.append(date_updated)
        self.activity_at.append(activity_at)
        self.date_sent.append(date_sent)
        self.date_scheduled.append(date_scheduled)
        self.status.append(status)
        self.direction.append(direction)
        self.source.append(source)
        self.lead.append(lead)
        self.contact.append(contact)
        self.user.append(user)
        self.created_by.append(created_by)
        self.updated_by.append(updated_by)
        self.local_phone.append(local_phone)
        self.remote_phone.append(remote_phone)
        self.text.append(text)
        self.cost.append(cost)
        self.error.append(error)
        self.template.append(template)
        self.attachment_count.append(attachment_count)
        self.sequence.append(sequence)
        self.deleted.append(1 if deleted else 0)
        return row

    def user_index(self, user_id: str | None, principal: Principal | None) -> int:
        """The `users` pool index of `user_id` (-1 for None), adding an unknown user; its name
        is the principal's when the principal is that user, else unknown."""
        if user_id is None:
            return -1
        idx = self.user_by_id.get(user_id)
        if idx is None:
            name = principal.user_name if principal and principal.user_id == user_id else None
            idx = self.users.add((user_id, name))
            self.user_by_id[user_id] = idx
        return idx

    # ---- indexes ------------------------------------------------------------------------

    def sort_key(self, order_field: str) -> Callable[[int], tuple[int, int]]:
        """Newest first by `order_field` (date_created or activity_at), ties by row."""
        column = self.date_created if order_field == "date_created" else self.activity_at
        return lambda row: (-column[row], row)

    def index_row(self, row: int) -> None:
        """Put a live row into the sorted listing index and the lead/contact indexes."""
        key = -self.date_created[row]
        pos = bisect.bisect_right(self.listing_keys, key)
        self.listing_keys.insert(pos, key)
        self.listing_order.insert(pos, row)
        self.index_owner(row)

    def build_index(self, live_rows_in_order: array) -> None:
        """Install a ready listing order (the generator emits rows sorted already)."""
        self.listing_order = live_rows_in_order
        self.listing_keys = array("q", (-self.date_created[row] for row in live_rows_in_order))
        for row in live_rows_in_order:
            self.index_owner(row)

    def unindex_row(self, row: int) -> None:
        """Take a row out of the listing index and the lead/contact indexes."""
        key = -self.date_created[row]
        lo = bisect.bisect_left(self.listing_keys, key)
        hi = bisect.bisect_right(self.listing_keys, key)
        for pos in range(lo, hi):
            if self.listing_order[pos] == row:
                del self.listing_keys[pos]
                del self.listing_order[pos]
                break
        self.unindex_owner(row)

    def index_owner(self, row: int) -> None:
        """Add a row to the rows of its lead and of its contact."""
        lead, contact = self.lead[row], self.contact[row]
        if lead >= 0:
            self.rows_by_lead.setdefault(lead, array("i")).append(row)
        if contact >= 0:
            self.rows_by_contact.setdefault(contact, array("i")).append(row)

    def unindex_owner(self, row: int) -> None:
        """Take a row out of the rows of its lead and of its contact (before they change)."""
        for idx, index in (
            (self.lead[row], self.rows_by_lead),
            (self.contact[row], self.rows_by_contact),
        ):
            if idx >= 0 and idx in index:
                rows = index[idx]
                if row in rows:
                    rows.remove(row)
