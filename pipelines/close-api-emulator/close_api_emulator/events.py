"""The event log: ordering, consolidation, retention, filter combinations and cursors."""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .ids import random_like_id
from .timefmt import format_ms

# Close's supported filter combinations (README §6.3); date_updated may join any of them.
ALLOWED_COMBINATIONS: frozenset[frozenset[str]] = frozenset(
    frozenset(combo)
    for combo in (
        ("object_type", "object_id"),
        ("object_type", "action"),
        ("object_id", "action"),
        ("lead_id", "object_type"),
        ("lead_id", "object_type", "action"),
        ("lead_id", "user_id", "object_type"),
        ("lead_id", "user_id", "object_type", "action"),
        ("lead_id", "user_id"),
        ("user_id", "object_id"),
        ("user_id", "object_id", "action"),
        ("user_id", "object_type"),
        ("user_id", "object_type", "action"),
        ("lead_id",),
        ("user_id",),
        ("request_id",),
        # No filter at all: the whole log (Close documents the unfiltered list, too).
        (),
    )
)
FILTER_NAMES = ("object_type", "object_id", "action", "lead_id", "user_id", "request_id")
# Actions that may be merged into an earlier event of the same object.
_CONSOLIDATING = frozenset({"created", "updated"})
# With empty pages on, every page whose number in its chain of cursors is a multiple of this
# (the first page included) comes back empty; never two in a row, so paging always ends.
EMPTY_PAGE_EVERY = 4


class CursorError(ValueError):
    """An `_cursor` value this log did not issue."""


@dataclass(slots=True)
class Event:
    """One event; `data_row`/`prev_row` >= 0 means "render that SMS row when asked"."""

    id: str
    seq: int
    date_created: int
    date_updated: int
    organization_id: str
    user_id: str | None
    request_id: str | None
    api_key_id: str | None
    object_type: str
    object_id: str
    lead_id: str | None
    action: str
    changed_fields: list[str]
    data: dict[str, Any] | None
    previous_data: dict[str, Any] | None
    meta: dict[str, Any]
    data_row: int = -1
    prev_row: int = -1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        """Sort key: date_updated, then emission order (so one object's events stay ordered)."""
        return (self.date_updated, self.seq)


@dataclass(frozen=True)
class EventPage:
    """One page of `/event/`."""

    events: list[Event]
    cursor_next: str | None
    cursor_previous: str | None


def _encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(value: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict) or payload.get("d") not in ("n", "p"):
            raise ValueError
        date_updated, seq = payload["k"]
        payload["k"] = (int(date_updated), int(seq))
        payload["n"] = int(payload.get("n", 0))
        return payload
    except (ValueError, KeyError, TypeError) as exc:
        raise CursorError("Invalid cursor.") from exc


class EventLog:
    """Events of one organization, kept sorted by (date_updated, seq) ascending."""

    def __init__(self, organization_id: str, seed: int | str = 0) -> None:
        self.organization_id = organization_id
        self._seed = seed
        self._keys: list[tuple[int, int]] = []
        self._events: list[Event] = []
        self._by_id: dict[str, Event] = {}
        self._latest_by_object: dict[str, Event] = {}
        self._seq = 0
        # Told of every event `emit` stores anew (not of folds): the webhook deliveries.
        self.listener: Callable[[Event], None] | None = None

    def __len__(self) -> int:
        return len(self._events)

    def reseed(self, seed: int | str) -> None:
        """Change the seed of future event ids (the generator makes ids deterministic)."""
        self._seed = seed

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _insert(self, event: Event) -> None:
        key = event.key
        pos = bisect.bisect_right(self._keys, key)
        self._keys.insert(pos, key)
        self._events.insert(pos, event)

    def _remove(self, event: Event) -> None:
        pos = bisect.bisect_left(self._keys, event.key)
        while self._events[pos] is not event:
            pos += 1
        del self._keys[pos]
        del self._events[pos]

    def append_sorted_bulk(self, events: list[Event]) -> None:
        """Add many events at once (the generator); one sort instead of many inserts."""
        for event in events:
            self._by_id[event.id] = event
            latest = self._latest_by_object.get(event.object_id)
            if latest is None or event.key > latest.key:
                self._latest_by_object[event.object_id] = event
        merged = self._events + events
        merged.sort(key=lambda e: (e.date_updated, e.seq))
        self._events = merged
        self._keys = [e.key for e in merged]

    def new_event(self, ts: int, **fields: Any) -> Event:
        """An event with a fresh id and sequence number (not yet stored)."""
        seq = self._next_seq()
        return Event(
            id=random_like_id("ev_", f"{self.organization_id}:{self._seed}", seq, length=22),
            seq=seq,
            date_created=ts,
            date_updated=ts,
            organization_id=self.organization_id,
            **fields,
        )

    def emit(self, event: Event, consolidation_ms: int, into_created: bool = True) -> Event:
        """Store `event`, or fold it into the object's recent event (Close's consolidation).

        A `created`/`updated` event followed within the window by an `updated` from the same
        user keeps its id, action and date_created; its date_updated, data and changed fields
        move. Without `into_created`, only an `updated` event takes the update in.
        """
        latest = self._latest_by_object.get(event.object_id)
        if (
            event.action == "updated"
            and latest is not None
            and latest.action in _CONSOLIDATING
            and (into_created or latest.action != "created")
            and latest.user_id == event.user_id
            and 0 <= event.date_updated - latest.date_created <= consolidation_ms
        ):
            self._remove(latest)
            latest.date_updated = max(latest.date_updated, event.date_updated)
            latest.seq = event.seq
            latest.changed_fields = sorted(set(latest.changed_fields) | set(event.changed_fields))
            latest.data, latest.data_row = event.data, event.data_row
            if latest.action == "updated" and latest.previous_data is not None:
                # The earliest previous value is the one the consolidated event replaces.
                for name, value in (event.previous_data or {}).items():
                    latest.previous_data.setdefault(name, value)
            latest.extra["consolidated"] = latest.extra.get("consolidated", 1) + 1
            self._insert(latest)
            return latest
        self._insert(event)
        self._by_id[event.id] = event
        self._latest_by_object[event.object_id] = event
        if self.listener is not None:
            self.listener(event)
        return event

    def get(self, event_id: str, horizon_ms: int) -> Event | None:
        """An event by id, unless it fell out of retention."""
        event = self._by_id.get(event_id)
        if event is None or event.date_updated < horizon_ms:
            return None
        return event

    def query(
        self,
        filters: dict[str, str],
        bounds: dict[str, int],
        limit: int,
        cursor: str | None,
        horizon_ms: int,
        empty_pages: bool = False,
    ) -> EventPage:
        """Newest-first page of matching events; `bounds` are date_updated gt/gte/lt/lte in ms.

        With `empty_pages`, some pages that have events answer none, with a cursor_next from
        which the next page reads them (see EMPTY_PAGE_EVERY).
        """
        direction = "n"
        page_number = 0  # of this answer in its chain of cursor_next values
        if cursor:
            payload = _decode_cursor(cursor)
            direction = payload["d"]
            page_number = payload["n"] + 1
            # date_updated bounds travel inside the cursor, as Close lets clients omit them.
            if not bounds:
                bounds = {k: int(v) for k, v in payload.get("b", {}).items()}
            anchor: tuple[int, int] | None = payload["k"]
        else:
            anchor = None

        lo_key = (horizon_ms, -1)
        hi_pos = len(self._keys)
        if "gte" in bounds:
            lo_key = max(lo_key, (bounds["gte"], -1))
        if "gt" in bounds:
            lo_key = max(lo_key, (bounds["gt"] + 1, -1))
        lo_pos = bisect.bisect_left(self._keys, lo_key)
        if "lte" in bounds:
            hi_pos = min(hi_pos, bisect.bisect_right(self._keys, (bounds["lte"], 1 << 62)))
        if "lt" in bounds:
            hi_pos = min(hi_pos, bisect.bisect_left(self._keys, (bounds["lt"], -1)))

        match = _matcher(filters)
        found: list[Event] = []
        if direction == "n":
            start = (
                hi_pos if anchor is None else min(hi_pos, bisect.bisect_left(self._keys, anchor))
            )
            pos = start - 1
            while pos >= lo_pos and len(found) <= limit:
                event = self._events[pos]
                if match(event):
                    found.append(event)
                pos -= 1
            has_older = len(found) > limit
            page = found[:limit]
            has_newer = bool(page) and self._any_match(match, self._pos_after(page[0]), hi_pos, 1)
            if not page and anchor is not None:
                has_newer = self._any_match(match, start, hi_pos, 1)
        else:
            assert anchor is not None
            start = max(lo_pos, bisect.bisect_right(self._keys, anchor))
            pos = start
            while pos < hi_pos and len(found) <= limit:
                event = self._events[pos]
                if match(event):
                    found.append(event)
                pos += 1
            has_newer = len(found) > limit
            page = list(reversed(found[:limit]))
            has_older = bool(page) and self._any_match(match, lo_pos, self._pos_of(page[-1]), -1)

        bounds_payload = {k: v for k, v in bounds.items()}
        if empty_pages and direction == "n" and page and page_number % EMPTY_PAGE_EVERY == 0:
            # Resume just above this page's newest event, so the next page starts with it.
            resume = [page[0].date_updated, page[0].seq + 1]
            return EventPage(
                [],
                _encode_cursor({"d": "n", "k": resume, "b": bounds_payload, "n": page_number}),
                None,
            )
        cursor_next = (
            _encode_cursor(
                {"d": "n", "k": list(page[-1].key), "b": bounds_payload, "n": page_number}
            )
            if page and has_older
            else None
        )
        cursor_previous = (
            _encode_cursor({"d": "p", "k": list(page[0].key), "b": bounds_payload})
            if page and has_newer
            else None
        )
        return EventPage(page, cursor_next, cursor_previous)

    def _pos_of(self, event: Event) -> int:
        return bisect.bisect_left(self._keys, event.key)

    def _pos_after(self, event: Event) -> int:
        return bisect.bisect_right(self._keys, event.key)

    def _any_match(self, match: Callable[[Event], bool], lo: int, hi: int, step: int) -> bool:
        rng = range(lo, hi) if step > 0 else range(hi - 1, lo - 1, -1)
        return any(match(self._events[pos]) for pos in rng)

    def render(
        self,
        event: Event,
        render_row: Callable[[int], dict[str, Any]],
        hide_data: bool,
    ) -> dict[str, Any]:
        """The event as `/event/` returns it; `hide_data` blanks data for non-admin keys."""
        data = event.data
        if data is None and event.data_row >= 0:
            data = render_row(event.data_row)
        previous = event.previous_data
        if previous is None and event.prev_row >= 0:
            previous = render_row(event.prev_row)
        if hide_data:
            data = previous = None
        return {
            "id": event.id,
            "date_created": format_ms(event.date_created),
            "date_updated": format_ms(event.date_updated),
            "organization_id": event.organization_id,
            "user_id": event.user_id,
            "request_id": event.request_id,
            "api_key_id": event.api_key_id,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "lead_id": event.lead_id,
            "action": event.action,
            "changed_fields": list(event.changed_fields),
            "data": data,
            "previous_data": previous,
            "meta": dict(event.meta),
        }


def _matcher(filters: dict[str, str]) -> Callable[[Event], bool]:
    items = [(name, value) for name, value in filters.items() if name in FILTER_NAMES]
    if not items:
        return lambda _event: True

    def match(event: Event) -> bool:
        return all(getattr(event, name) == value for name, value in items)

    return match
