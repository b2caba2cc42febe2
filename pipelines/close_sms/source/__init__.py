"""The dlt source: SMS activities, their attachments and their events, merged on `id`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import dlt
from dlt.common.typing import TDataItems
from dlt.extract.resource import DltResource

from . import settings
from .client import CloseClient
from .strategies import (
    BackfillProgress,
    BackfillReader,
    Window,
    fetch_by_ids,
    parse_timestamp,
    read_events,
)

ProgressCallback = Callable[[BackfillProgress, int], None]


@dataclass
class FeedStats:
    """What the change feed did in one run."""

    events: int = 0
    upserted: int = 0
    deleted: int = 0


def normalize_sms(item: dict[str, Any]) -> dict[str, Any]:
    """Type an SMS for loading; a value that does not parse is kept as it came.

    dlt then stores such a value in a variant column (for example `cost__v_text`), so nothing
    Close sends is dropped, and a type change shows up as a new column instead of a failure.
    """
    row = dict(item)
    for name in settings.SMS_TIMESTAMP_FIELDS:
        row[name] = _parsed(row.get(name), parse_timestamp)
    if row.get("cost") is not None:
        row["cost"] = _parsed(row["cost"], _decimal)
    return row


def normalize_event(item: dict[str, Any]) -> dict[str, Any]:
    """Type an event; `data`/`previous_data` are dropped (Close hides them after an hour)."""
    row = {k: v for k, v in item.items() if k not in ("data", "previous_data")}
    for name in settings.EVENT_TIMESTAMP_FIELDS:
        row[name] = _parsed(row.get(name), parse_timestamp)
    return row


def tombstone(sms_id: str) -> dict[str, Any]:
    """A row that makes dlt's merge delete the SMS and its attachments."""
    return {"id": sms_id, settings.DELETED_COLUMN: True}


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(value)
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(value)
    return number


def _parsed(value: Any, parse: Callable[[Any], Any]) -> Any:
    if value is None:
        return None
    try:
        return parse(value)
    except (ValueError, TypeError, InvalidOperation, OverflowError):
        return value


def _checkpoint_due(checked: str | None, now: datetime) -> bool:
    if not checked:
        return True
    age = now - parse_timestamp(checked)
    return age >= timedelta(seconds=settings.FEED_CHECKPOINT_SECONDS)


def _sms_hints() -> dict[str, Any]:
    return {
        "table_name": "sms",
        "write_disposition": {"disposition": "merge", "strategy": "delete-insert"},
        "primary_key": "id",
        "columns": settings.sms_columns(),
        "nested_hints": {
            "attachments": dlt.mark.make_nested_hints(columns=settings.attachment_columns())
        },
    }


@dlt.source(name=settings.SOURCE_NAME, section=settings.SOURCE_NAME, root_key=True)
def close_sms(
    client: CloseClient,
    new_backfill: dict[str, Any] | None = None,
    chunk_size: int = settings.BACKFILL_CHUNK_SIZE,
    workers: int = settings.BACKFILL_WORKERS,
    max_skip: int = settings.DEFAULT_MAX_SKIP,
    changes_since: datetime | None = None,
    removed_ids: Sequence[str] = (),
    on_backfill_page: ProgressCallback | None = None,
    feed_stats: FeedStats | None = None,
) -> Sequence[DltResource]:
    """Close SMS activities. The runner picks the resources a run needs.

    - `sms_backfill` reads `date_created` windows, saving the windows left after every page.
    - `sms_events` reads the event log from `changes_since`; `sms_changes` fetches the SMS
      those events name again, and turns the ones Close no longer returns into deletes.
    - `sms_removals` deletes the SMS a reconcile backfill did not see.
    """
    feed = feed_stats or FeedStats()

    @dlt.resource(name="sms_backfill", **_sms_hints())
    def sms_backfill() -> Iterator[TDataItems]:
        state = dlt.current.source_state()
        if new_backfill is not None:
            state["backfill"] = new_backfill
        plan = state.get("backfill")
        if not plan or not plan["windows"]:
            return
        reader = BackfillReader(
            client,
            [Window.from_state(w) for w in plan["windows"]],
            workers=workers,
            max_skip=max_skip,
        )
        for page in reader.pages(max_items=chunk_size):
            plan["windows"] = [w.to_state() for w in reader.pending]
            plan["loaded"] += len(page)
            if on_backfill_page:
                on_backfill_page(reader.progress, plan["loaded"])
            yield [normalize_sms(item) for item in page]
        plan["windows"] = [w.to_state() for w in reader.pending]
        if not plan["windows"] and not plan["reconcile"]:
            plan["complete"] = True

    @dlt.resource(
        name="sms_events",
        table_name="sms_events",
        write_disposition="merge",
        primary_key="id",
        columns=settings.event_columns(),
    )
    def sms_events() -> Iterator[TDataItems]:
        state = dlt.current.source_state()
        checked = state.get("feed_checked_at")
        started = client.now()
        events = [normalize_event(e) for page in read_events(client, changes_since) for e in page]
        feed.events += len(events)
        if events:
            yield events
        if events or _checkpoint_due(checked, started):
            state["feed_checked_at"] = started.isoformat()

    @dlt.transformer(data_from=sms_events, name="sms_changes", **_sms_hints())
    def sms_changes(events: list[dict[str, Any]]) -> Iterator[TDataItems]:
        ids = list(dict.fromkeys(e["object_id"] for e in events if e.get("object_id")))
        for found, missing in fetch_by_ids(client, ids):
            feed.upserted += len(found)
            feed.deleted += len(missing)
            yield [normalize_sms(item) for item in found] + [tombstone(i) for i in missing]

    @dlt.resource(name="sms_removals", **_sms_hints())
    def sms_removals() -> Iterator[TDataItems]:
        if removed_ids:
            yield [tombstone(sms_id) for sms_id in removed_ids]
        dlt.current.source_state()["backfill"]["complete"] = True

    return sms_backfill, sms_events, sms_changes, sms_removals
