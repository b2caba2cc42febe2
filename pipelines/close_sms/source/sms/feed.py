"""The change feed: SMS events from Close's event log, and the SMS they name, fetched again."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ...errors import ApiContractError
from .. import settings
from ..api.client import CloseClient, DeletedMidQuery, OverrideRefused
from ..api.objects import fetch_each, list_by_ids
from ..timestamps import parse_timestamp


def read_events(
    client: CloseClient,
    since: datetime,
    actions: Iterable[str] = settings.EVENT_ACTIONS,
    object_type: str = settings.EVENT_OBJECT_TYPE,
) -> Iterator[list[dict[str, Any]]]:
    """Yield pages of `object_type` events with `date_updated >= since`, one query per action.

    Pages are followed while `cursor_next` is set, empty ones included: Close's own scripts
    page on the cursor alone, and a filtered scan may return an empty page before more events.
    """
    since_text = since.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    for action in actions:
        params: dict[str, Any] = {
            "object_type": object_type,
            "action": action,
            "date_updated__gte": since_text,
            "_limit": settings.EVENT_PAGE_SIZE,
        }
        cursors: set[str] = set()
        while True:
            body = client.get(settings.EVENT_ENDPOINT, params)
            page = list(body.get("data") or [])
            _check_events(page, params)
            if page:
                yield page
            cursor = body.get("cursor_next")
            if not cursor:
                break
            if cursor in cursors:
                raise ApiContractError(
                    f"the event log's cursor_next repeated itself for action {action!r}: "
                    "paging on would never end"
                )
            cursors.add(cursor)
            params = {**params, "_cursor": cursor}


def any_event_since(client: CloseClient, since: datetime) -> bool:
    """Whether the event log may hold an event of any object updated at `since` or later: one
    request for the newest. An empty page that points to more, or an older event (a filter Close
    did not apply), counts as one: only a plain empty answer says nothing happened."""
    params = {
        "date_updated__gte": since.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
        "_limit": 1,
    }
    body = client.get(settings.EVENT_ENDPOINT, params)
    return bool(body.get("data") or body.get("cursor_next"))


def _check_events(page: list[dict[str, Any]], params: dict[str, Any]) -> None:
    """Every event must match the query: an ignored filter would bring in other objects' ids,
    each then probed and counted as a removal without proof."""
    # To the second: a server that drops the filter's fraction is no broken filter.
    since = parse_timestamp(params["date_updated__gte"]).replace(microsecond=0)
    for event in page:
        kind = (event.get("object_type"), event.get("action"))
        try:
            updated = parse_timestamp(event.get("date_updated"))
        except (TypeError, ValueError):
            updated = None
        if kind != (params["object_type"], params["action"]) or updated is None or updated < since:
            raise ApiContractError(
                f"Close answered {settings.EVENT_ENDPOINT} for {params['object_type']} "
                f"{params['action']} events updated since {params['date_updated__gte']} with "
                f"another event ({event.get('id')}: {kind[0]} {kind[1]}, date_updated "
                f"{event.get('date_updated')}): a filter was not applied"
            )


@dataclass
class FetchedBatch:
    """SMS fetched again by id: those Close returned, and those proven gone, with the proof."""

    found: list[dict[str, Any]] = field(default_factory=list)
    # Ids named by a `deleted` event of this run.
    deleted_by_event: list[str] = field(default_factory=list)
    # Ids Close answered 404 for, one by one, without a `deleted` event behind them.
    gone: list[str] = field(default_factory=list)
    # Ids Close answered 403 for: this key may not read them, so they stay as they are.
    unreadable: list[str] = field(default_factory=list)


def fetch_by_ids(
    client: CloseClient,
    ids: list[str],
    deleted_events: set[str],
    batch_size: int = settings.ID_BATCH_SIZE,
) -> Iterator[FetchedBatch]:
    """Fetch SMS by id in batches; an id missing from an answer is removed only with proof.

    The proof is a `deleted` event naming it, or a 404 for the id itself; a 403 for it leaves
    it as it is. An answer holding SMS that were not asked for means Close ignored the
    `id__in` filter: the run stops.
    """
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        result = FetchedBatch(found=_list_sms_by_ids(client, batch))
        returned = {item["id"] for item in result.found}
        missing = [sms_id for sms_id in batch if sms_id not in returned]
        result.deleted_by_event = [sms_id for sms_id in missing if sms_id in deleted_events]
        alone = fetch_each(
            client, settings.SMS_ENDPOINT, [i for i in missing if i not in deleted_events]
        )
        result.found += alone.found
        result.gone, result.unreadable = alone.gone, alone.unreadable
        yield result


def _list_sms_by_ids(client: CloseClient, ids: list[str]) -> list[dict[str, Any]]:
    """The SMS of `ids` an `id__in` query returns.

    Close answers 404 "Empty query" for a query naming an SMS it deleted but still indexes:
    the ids are halved until that one is alone, and it is left for its own request. When Close
    refuses the POST override that a query too long for a URL needs, the ids are halved until
    their query fits in a URL.
    """
    try:
        return list_by_ids(client, settings.SMS_ENDPOINT, ids, "SMS")
    except (DeletedMidQuery, OverrideRefused):
        if len(ids) == 1:
            return []
        half = len(ids) // 2
        return _list_sms_by_ids(client, ids[:half]) + _list_sms_by_ids(client, ids[half:])
