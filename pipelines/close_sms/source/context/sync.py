"""One run's context: the small tables read whole when due, the leads and contacts the SMS name
kept current from the lead and contact events, and the SMS a lead merge moved read again."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dlt
from dlt.sources import TDataItems

from ...errors import ConfigError, where_to_set
from .. import settings
from ..api.objects import Fetched, fetch_each
from ..loaded import LoadedTable, refuse_mass_delete
from ..progress import RunMode
from ..run import Run
from ..sms.feed import read_events
from ..sms.schema import normalize_sms
from ..state import ContextState, CustomField
from . import schema
from .reads import fetch_by_ids, read_list

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
class ContextEvents:
    """What the lead and contact events since the last check say; `full` when they cannot."""

    full: bool
    changed: dict[str, set[str]] = field(default_factory=dict)
    deleted: dict[str, set[str]] = field(default_factory=dict)
    # Merged lead -> the lead it was merged into (from the merged lead's `deleted` event).
    merges: dict[str, str] = field(default_factory=dict)


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
class ContextRun:
    """The context's share of one run of the source."""

    run: Run
    settings: ContextSettings
    references: References = field(default_factory=References)
    waits: Waits = field(default_factory=Waits)
    _events: ContextEvents | None = None
    _unproven: Counter[str] = field(default_factory=Counter)
    # Contacts embedded in the leads fetched in this run, by id.
    _embedded: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run.on_sms = self.references.add

    @property
    def client(self) -> Any:
        return self.run.client

    def _state(self) -> ContextState:
        return self.run.decide().context

    def _save(self) -> None:
        self.run.decide().write(dlt.current.source_state())

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
        """The whole list when due, or when the SMS name an id the warehouse does not hold.

        A listed object missing now is deleted only with proof, its own 404 (users never are:
        Close keeps former members).
        """
        yield from self.waits.until_done(SMS_RESOURCES)
        state = self._state()
        now = self.client.now()
        loaded = LoadedTable.of_current_resource()
        known = loaded.ids()
        unknown = referenced is not None and bool(getattr(self.references, referenced) - known)
        if not (unknown or state.refresh_due(table, now, self.settings.refresh)):
            return
        listed: set[str] = set()
        for page in read_list(self.client, endpoint):
            listed.update(item["id"] for item in page)
            yield [to_row(item, self.run.privacy) for item in page]
        if table != schema.USERS:
            missing = fetch_each(self.client, endpoint, sorted(known - listed))
            self._checked(table, missing, loaded)
            if missing.gone:
                yield [schema.tombstone(object_id) for object_id in missing.gone]
        state.refreshed[table] = now
        self._save()

    # ---- leads, contacts and merges -------------------------------------------------------

    def events(self) -> ContextEvents:
        """The lead and contact events since the last check, read once per run."""
        if self._events is not None:
            return self._events
        state = self._state()
        started = self.client.now()
        full = not state.follows_events(started) or self.run.progress.mode is RunMode.RECONCILE
        found = ContextEvents(full=full)
        count = 0
        if not full:
            since = state.events_since()
            for object_type, actions in settings.CONTEXT_EVENT_ACTIONS.items():
                for page in read_events(self.client, since, actions, object_type):
                    count += len(page)
                    for event in page:
                        self._note(found, event)
        self._events = found
        if full or count or state.check_due(started):
            state.checked_at = started
            self._save()
        return found

    @staticmethod
    def _note(found: ContextEvents, event: dict[str, Any]) -> None:
        kind, object_id = event["object_type"], event.get("object_id")
        if not object_id:
            return
        if event["action"] == "deleted":
            found.deleted.setdefault(kind, set()).add(object_id)
            destination = (event.get("meta") or {}).get("merge_destination_lead_id")
            if kind == "lead" and destination:
                found.merges[object_id] = destination
        else:
            found.changed.setdefault(kind, set()).add(object_id)

    def merged_sms(self) -> Iterator[TDataItems]:
        """The SMS now on a lead others were merged into: their lead_id changed.

        The merged lead's `deleted` event carries the merge in its meta whether or not Close
        logs events for the SMS that moved, so it is what triggers this read.
        """
        events = self.events()
        for destination in sorted(set(events.merges.values())):
            for page in read_list(self.client, settings.SMS_ENDPOINT, {"lead_id": destination}):
                self.references.add(page)
                self.run.progress.upserted += len(page)
                yield [normalize_sms(item, self.run.privacy) for item in page]

    def leads(self) -> Iterator[TDataItems]:
        """The leads the SMS name: new ones, changed ones, merged and deleted ones."""
        yield from self.waits.until_done(SMS_RESOURCES)
        events = self.events()
        loaded = LoadedTable.of_current_resource()
        known = loaded.ids()
        wanted = self._wanted("lead", "lead_id", known, self.references.lead_ids, events)
        wanted |= set(events.merges.values())
        deleted = events.deleted.get("lead", set())
        wanted -= deleted
        custom_fields = self._custom_fields() if wanted else []
        first = True
        for batch in fetch_by_ids(self.client, settings.LEAD_ENDPOINT, sorted(wanted), "leads"):
            self._checked(schema.LEADS, batch, loaded)
            for lead in batch.found:
                for contact in lead.get("contacts") or []:
                    if isinstance(contact, dict) and contact.get("id"):
                        self._embedded[contact["id"]] = contact
            rows = [schema.lead_row(item, self.run.privacy, custom_fields) for item in batch.found]
            rows += [schema.tombstone(lead_id) for lead_id in batch.gone]
            if first and custom_fields:
                # The custom fields' columns are known only now, from Close's definitions.
                columns = schema.table_hints(schema.LEADS, custom_fields)["columns"]
                yield dlt.mark.with_hints(rows, dlt.mark.make_hints(columns=columns))
            else:
                yield rows
            first = False
        removed = sorted(deleted & known)
        if removed:
            yield [schema.tombstone(lead_id) for lead_id in removed]

    def contacts(self) -> Iterator[TDataItems]:
        """The contacts the SMS name, taken from the leads fetched in this run where possible."""
        yield from self.waits.until_done((*SMS_RESOURCES, "leads"))
        events = self.events()
        loaded = LoadedTable.of_current_resource()
        known = loaded.ids()
        referenced = self.references.contact_ids
        wanted = self._wanted("contact", "contact_id", known, referenced, events)
        # The leads fetched in this run embed their contacts as they are now.
        wanted |= self._embedded.keys() & (known | referenced)
        deleted = events.deleted.get("contact", set())
        wanted -= deleted
        fresh = [self._embedded[i] for i in sorted(wanted) if i in self._embedded]
        if fresh:
            yield [schema.contact_row(item, self.run.privacy) for item in fresh]
        rest = sorted(wanted - self._embedded.keys())
        for batch in fetch_by_ids(self.client, settings.CONTACT_ENDPOINT, rest, "contacts"):
            self._checked(schema.CONTACTS, batch, loaded)
            rows = [schema.contact_row(item, self.run.privacy) for item in batch.found]
            yield rows + [schema.tombstone(i) for i in batch.gone]
        removed = sorted(deleted & known)
        if removed:
            yield [schema.tombstone(contact_id) for contact_id in removed]

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
        """Count `fetched`'s unreadable objects; put its removals under the SMS's mass-delete
        guard, per context table."""
        self.run.progress.context_unreadable += len(fetched.unreadable)
        if fetched.gone:
            self._unproven[table] += len(fetched.gone)
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
