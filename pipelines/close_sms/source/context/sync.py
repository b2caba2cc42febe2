"""One run's context: the small tables read whole when due, the leads and contacts the SMS name
kept current from the lead and contact events, and the SMS a lead merge moved read again.

A table whose read fails is that table's problem: the run's SMS and the other tables load, and
the run's progress says which table failed and why (`SyncProgress.context_reads`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import dlt
from dlt.sources import TDataItems

from ...errors import AuthError, CloseApiError, ConfigError, one_line, where_to_set
from .. import settings
from ..api.objects import Fetched
from ..loaded import LoadedTable, refuse_mass_delete
from ..progress import RunMode
from ..run import Run
from ..sms.schema import normalize_sms
from ..state import ContextState, CustomField
from . import schema
from .events import ContextEvents, read_context_events
from .reads import IdReader, read_list

# The resources that load SMS: the context waits for them, as they name what it fetches.
SMS_RESOURCES = ("sms_backfill", "sms_events", "sms_merged")
# The resource that runs on every item of sms_events.
SMS_TRANSFORMER = "sms_changes"


@dataclass
class References:
    """The ids the SMS loaded in this run point to."""

    lead_ids: set[str] = field(default_factory=set)
    contact_ids: set[str] = field(default_factory=set)
    user_ids: set[str] = field(default_factory=set)
    template_ids: set[str] = field(default_factory=set)

    def add(self, items: Iterable[dict[str, Any]]) -> None:
        for item in items:
            for ids, name in (
                (self.lead_ids, "lead_id"),
                (self.contact_ids, "contact_id"),
                (self.user_ids, "user_id"),
                (self.template_ids, "template_id"),
            ):
                if item.get(name):
                    ids.add(item[name])


@dataclass
class Waits:
    """Which resources of this extraction have finished, so that others can wait for them.

    A resource yields None while it waits: dlt skips None and goes on with the other resources,
    in `round_robin` and `fifo` item modes alike.
    """

    finished: set[str] = field(default_factory=set)
    # Items of sms_events handed to sms_changes whose SMS are not all loaded yet.
    in_flight: int = 0

    def track(self, name: str, items: Iterator[TDataItems]) -> Iterator[TDataItems]:
        """`items`, recording when the resource `name` has yielded them all (or was closed)."""
        try:
            yield from items
        finally:
            self.finished.add(name)

    def hand_over(self, items: Iterator[TDataItems]) -> Iterator[TDataItems]:
        """The items of sms_events, each counted until sms_changes is done with it."""
        for item in items:
            self.in_flight += 1
            yield item

    def changes_done(self, items: Iterator[TDataItems]) -> Iterator[TDataItems]:
        """The rows of sms_changes for one item of sms_events."""
        try:
            yield from items
        finally:
            self.in_flight -= 1

    def until_done(self, names: Iterable[str]) -> Iterator[None]:
        """Yield None while a resource of `names` that runs in this extraction is unfinished."""
        names = tuple(names)
        while self._busy(names):
            yield None

    def _busy(self, names: tuple[str, ...]) -> bool:
        selected = dlt.current.source().selected_resources
        # sms_events runs, unselected, as the parent of a selected sms_changes.
        runs = set(selected) | ({"sms_events"} if SMS_TRANSFORMER in selected else set())
        return self.in_flight > 0 or any(n in runs and n not in self.finished for n in names)


@dataclass
class ContextSettings:
    """The context's settings, checked."""

    refresh: timedelta
    lead_custom_fields: list[str]

    @classmethod
    def configure(cls, refresh_minutes: Any, lead_custom_fields: Any) -> ContextSettings:
        names = lead_custom_fields or []
        if isinstance(names, str):
            names = [name.strip() for name in names.split(",")]
        if not isinstance(names, list | tuple) or not all(
            isinstance(name, str) and name.strip() for name in names
        ):
            raise ConfigError(
                f"setting lead_custom_fields = {lead_custom_fields!r} is not a list of custom "
                f"field names ({where_to_set('lead_custom_fields')})"
            )
        return cls(timedelta(minutes=float(refresh_minutes)), list(dict.fromkeys(names)))


@dataclass
class TableRead:
    """A context table's read, done: its rows, and what marks the table read in the state."""

    items: list[TDataItems]
    commit: Callable[[], None]


def table_failure(exc: CloseApiError) -> str | None:
    """Why a context read failed, when the failure is that table's alone; None when it stops the
    run (a key Close rejects, 401, fails every read)."""
    if isinstance(exc, AuthError) and exc.status == 401:
        return None
    return one_line(exc)


@dataclass
class ContextRun:
    """The context's share of one run of the source.

    Each table is read whole before any of its rows is handed to dlt: a read that fails (an
    answer Close refuses or cannot give, an assumption broken) leaves that table, and its place
    in the state, as the last run left them, while the SMS and the other tables load.
    """

    run: Run
    settings: ContextSettings
    references: References = field(default_factory=References)
    waits: Waits = field(default_factory=Waits)
    _events: ContextEvents | None = None
    _unproven: Counter[str] = field(default_factory=Counter)
    # Contacts embedded in the leads fetched in this run, by id.
    _embedded: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The tables this run made current with its lead and contact events.
    _followed: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.run.on_sms = self.references.add

    @property
    def client(self) -> Any:
        return self.run.client

    def _state(self) -> ContextState:
        return self.run.decide().context

    def _save(self) -> None:
        self.run.decide().write(dlt.current.source_state())

    def _whole(self, table: str, read: Callable[[], TableRead | None]) -> Iterator[TDataItems]:
        """The rows `read` returns (None: the table is not due), once it has read them all.

        A failure that is the table's alone (`table_failure`) is recorded in the run's progress,
        and the table yields nothing: its rows and its state stay, and the next run reads it.
        """
        try:
            done = read()
        except CloseApiError as exc:
            why = table_failure(exc)
            if why is None:
                raise
            self.run.progress.context_reads[table] = why
            return
        if done is None:
            return
        self.run.progress.context_reads[table] = None
        yield from done.items
        done.commit()

    # ---- the small tables -----------------------------------------------------------------

    def users(self) -> Iterator[TDataItems]:
        """Every user, former members included; a user Close no longer lists keeps its row."""
        yield from self._small(schema.USERS, settings.USER_ENDPOINT, schema.user_row, "user_ids")

    def lead_statuses(self) -> Iterator[TDataItems]:
        yield from self._small(
            schema.LEAD_STATUSES, settings.LEAD_STATUS_ENDPOINT, schema.status_row
        )

    def sms_templates(self) -> Iterator[TDataItems]:
        yield from self._small(
            schema.SMS_TEMPLATES,
            settings.SMS_TEMPLATE_ENDPOINT,
            schema.template_row,
            "template_ids",
        )

    def phone_numbers(self) -> Iterator[TDataItems]:
        yield from self._small(
            schema.PHONE_NUMBERS, settings.PHONE_NUMBER_ENDPOINT, schema.number_row
        )

    def _small(
        self,
        table: str,
        endpoint: str,
        to_row: Callable[..., dict[str, Any]],
        referenced: str | None = None,
    ) -> Iterator[TDataItems]:
        yield from self.waits.until_done(SMS_RESOURCES)
        yield from self._whole(table, lambda: self._read_small(table, endpoint, to_row, referenced))

    def _read_small(
        self,
        table: str,
        endpoint: str,
        to_row: Callable[..., dict[str, Any]],
        referenced: str | None,
    ) -> TableRead | None:
        """The whole list when due, or when the SMS name an id the warehouse does not hold.

        The list read to its last page is the proof of what Close no longer holds: an object
        the warehouse has and the list lacks is deleted (users never are: Close keeps former
        members). No object is asked for alone: Close documents no GET of one lead status.
        """
        state = self._state()
        now = self.client.now()
        due = state.refresh_due(table, now, self.settings.refresh)
        named = getattr(self.references, referenced) if referenced else set()
        if not (due or named):
            # Not even the warehouse is asked: a quiet run opens no connection for it.
            return None
        loaded = LoadedTable.of_current_resource()
        known = loaded.ids()
        if not (due or named - known):
            return None
        rows = [
            to_row(item, self.run.privacy)
            for page in read_list(self.client, endpoint)
            for item in page
        ]
        if table != schema.USERS:
            gone = sorted(known - {row["id"] for row in rows})
            self._removing(table, len(gone), loaded)
            rows += [schema.tombstone(object_id) for object_id in gone]

        def commit() -> None:
            state.refreshed[table] = now
            state.refresh_seconds = self.settings.refresh.total_seconds()
            self._save()

        return TableRead([rows] if rows else [], commit)

    # ---- leads, contacts and merges -------------------------------------------------------

    def events(self) -> ContextEvents:
        """The lead and contact events since the last check, read once per run.

        Where the tables cannot follow them (no check yet, or one past the event log's
        history, or a reconcile), the events since the SMS feed's start are still read in an
        incremental run: the merges among them move SMS.
        """
        if self._events is not None:
            return self._events
        source = self.run.decide()
        state = source.context
        started = self.client.now()
        incremental = self.run.progress.mode is RunMode.INCREMENTAL
        full = not state.follows_events(started) or self.run.progress.mode is RunMode.RECONCILE
        since = None
        if not full:
            since = state.events_since()
        elif incremental:
            since = source.feed_start(started)
        self._events = read_context_events(self.client, since, full, started)
        return self._events

    def _follow_events(self, table: str) -> None:
        """`table` is current with this run's events; once every such table this run loads
        is, the events' check moves on (a table that failed keeps it where it was)."""
        self._followed.add(table)
        selected = dlt.current.source().selected_resources
        if any(t in selected and t not in self._followed for t in (schema.LEADS, schema.CONTACTS)):
            return
        events = self.events()
        state = self._state()
        if events.full or events.count or state.check_due(events.started):
            state.checked_at = events.started
            self._save()

    def merged_sms(self) -> Iterator[TDataItems]:
        """The SMS now on a lead others were merged into: their lead_id changed.

        The merged lead's `deleted` event carries the merge in its meta whether or not Close
        logs events for the SMS that moved, so it is what triggers this read. These are SMS:
        a failure here stops the run as any SMS read's does, and a position of an SMS Close
        deleted but still lists is stepped past, as the backfill does.
        """
        events = self.events()
        progress = self.run.progress

        def stepped_past() -> None:
            progress.skipped_positions += 1

        for destination in sorted(set(events.merges.values())):
            lead = {"lead_id": destination}
            for page in read_list(self.client, settings.SMS_ENDPOINT, lead, stepped_past):
                self.references.add(page)
                progress.upserted += len(page)
                yield [normalize_sms(item, self.run.privacy) for item in page]

    def leads(self) -> Iterator[TDataItems]:
        """The leads the SMS name: new ones, changed ones, merged and deleted ones."""
        yield from self.waits.until_done(SMS_RESOURCES)
        yield from self._whole(schema.LEADS, self._read_leads)

    def _read_leads(self) -> TableRead:
        events = self.events()
        followed = partial(self._follow_events, schema.LEADS)
        if not (self.references.lead_ids or events.touches("lead")):
            return TableRead([], followed)
        loaded = LoadedTable.of_current_resource()
        known = loaded.ids()
        wanted = self._wanted("lead", "lead_id", known, self.references.lead_ids, events)
        wanted |= set(events.merges.values())
        deleted = events.deleted.get("lead", set())
        wanted -= deleted
        custom_fields = self._custom_fields() if wanted else []
        reader = IdReader(self.client, settings.LEAD_ENDPOINT, "leads")
        rows = []
        for batch in reader.fetch(sorted(wanted)):
            self._checked(schema.LEADS, batch, loaded)
            for lead in batch.found:
                for contact in lead.get("contacts") or []:
                    if isinstance(contact, dict) and contact.get("id"):
                        self._embedded[contact["id"]] = contact
            rows += [schema.lead_row(item, self.run.privacy, custom_fields) for item in batch.found]
            rows += [schema.tombstone(lead_id) for lead_id in batch.gone]
        rows += [schema.tombstone(lead_id) for lead_id in sorted(deleted & known)]
        self._warn_fallback(reader)
        items: list[TDataItems] = [rows] if rows else []
        if rows and custom_fields:
            # The custom fields' columns are known only now, from Close's definitions.
            columns = schema.table_hints(schema.LEADS, custom_fields)["columns"]
            items = [dlt.mark.with_hints(rows, dlt.mark.make_hints(columns=columns))]
        return TableRead(items, followed)

    def contacts(self) -> Iterator[TDataItems]:
        """The contacts the SMS name, taken from the leads fetched in this run where possible."""
        yield from self.waits.until_done((*SMS_RESOURCES, "leads"))
        yield from self._whole(schema.CONTACTS, self._read_contacts)

    def _read_contacts(self) -> TableRead:
        events = self.events()
        followed = partial(self._follow_events, schema.CONTACTS)
        referenced = self.references.contact_ids
        if not (referenced or self._embedded or events.touches("contact")):
            return TableRead([], followed)
        loaded = LoadedTable.of_current_resource()
        known = loaded.ids()
        wanted = self._wanted("contact", "contact_id", known, referenced, events)
        # The leads fetched in this run embed their contacts as they are now.
        wanted |= self._embedded.keys() & (known | referenced)
        deleted = events.deleted.get("contact", set())
        wanted -= deleted
        rows = [
            schema.contact_row(self._embedded[i], self.run.privacy)
            for i in sorted(wanted)
            if i in self._embedded
        ]
        reader = IdReader(self.client, settings.CONTACT_ENDPOINT, "contacts")
        for batch in reader.fetch(sorted(wanted - self._embedded.keys())):
            self._checked(schema.CONTACTS, batch, loaded)
            rows += [schema.contact_row(item, self.run.privacy) for item in batch.found]
            rows += [schema.tombstone(i) for i in batch.gone]
        rows += [schema.tombstone(i) for i in sorted(deleted & known)]
        self._warn_fallback(reader)
        return TableRead([rows] if rows else [], followed)

    def _wanted(
        self,
        kind: str,
        sms_column: str,
        known: set[str],
        referenced: set[str],
        events: ContextEvents,
    ) -> set[str]:
        """The ids of `kind` to fetch: all of them when the events do not cover the gap."""
        if events.full:
            return known | referenced | LoadedTable("sms").values_of(sms_column)
        return (referenced - known) | (events.changed.get(kind, set()) & (known | referenced))

    def _warn_fallback(self, reader: IdReader) -> None:
        warning = reader.fallback_warning()
        if warning:
            self.client.warn(warning)

    def _custom_fields(self) -> list[CustomField]:
        """The lead custom fields the settings name, resolved to Close's ids and types."""
        names = self.settings.lead_custom_fields
        if not names:
            return []
        state = self._state()
        now = self.client.now()
        recorded = [cf.name for cf in state.custom_fields]
        if recorded == names and not state.refresh_due("custom_fields", now, self.settings.refresh):
            return state.custom_fields
        defined = [
            item
            for page in read_list(self.client, settings.LEAD_CUSTOM_FIELD_ENDPOINT)
            for item in page
        ]
        resolved = [_resolve(name, defined) for name in names]
        state.refreshed["custom_fields"] = now
        state.custom_fields = resolved
        self._save()
        return resolved

    def _checked(self, table: str, fetched: Fetched, loaded: LoadedTable) -> None:
        """Count `fetched`'s unreadable objects; put its removals under the mass-delete guard."""
        self.run.progress.context_unreadable += len(fetched.unreadable)
        self._removing(table, len(fetched.gone), loaded)

    def _removing(self, table: str, count: int, loaded: LoadedTable) -> None:
        """Stop before this run removes too much of a context table without `deleted` events
        (the SMS's guard, per table)."""
        if not count:
            return
        self._unproven[table] += count
        if not self.run.allow_mass_delete:
            refuse_mass_delete(self._unproven[table], loaded, table, self.run.max_delete_share)


def _resolve(name: str, defined: list[dict[str, Any]]) -> CustomField:
    """The custom field called `name` (case aside, if no exact match)."""
    exact = [item for item in defined if item.get("name") == name]
    matches = exact or [
        item for item in defined if str(item.get("name", "")).casefold() == name.casefold()
    ]
    if len(matches) != 1:
        known = ", ".join(sorted(str(item.get("name")) for item in defined)) or "none"
        problem = "is not one" if not matches else "names several"
        raise ConfigError(
            f"lead_custom_fields: {name!r} {problem} of Close's lead custom fields ({known}) "
            f"({where_to_set('lead_custom_fields')})"
        )
    item = matches[0]
    return CustomField(
        name=name,
        id=str(item["id"]),
        type=str(item.get("type") or "text"),
        multiple=bool(item.get("accepts_multiple_values")),
        column=schema.custom_field_column(name),
    )
