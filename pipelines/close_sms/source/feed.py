"""The change feed: SMS events from Close's event log, and the SMS they name, fetched again."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from .. import settings
from .client import CloseClient


def read_events(
    client: CloseClient, since: datetime, actions: Iterable[str] = settings.EVENT_ACTIONS
) -> Iterator[list[dict[str, Any]]]:
    """Yield pages of SMS events with `date_updated >= since`, one query per action."""
    for action in actions:
        params: dict[str, Any] = {
            "object_type": settings.EVENT_OBJECT_TYPE,
            "action": action,
            "date_updated__gte": since.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
            "_limit": settings.EVENT_PAGE_SIZE,
        }
        while True:
            body = client.get(settings.EVENT_ENDPOINT, params)
            page = list(body.get("data") or [])
            if page:
                yield page
            cursor = body.get("cursor_next")
            if not cursor or not page:
                break
            params = {**params, "_cursor": cursor}


def fetch_by_ids(
    client: CloseClient, ids: list[str], batch_size: int = settings.ID_BATCH_SIZE
) -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
    """Fetch SMS by id in batches; yields (found SMS, ids Close no longer returns)."""
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        body = client.get(settings.SMS_ENDPOINT, {"id__in": ",".join(batch), "_limit": len(batch)})
        found = [item for item in body.get("data") or [] if item.get("id") in set(batch)]
        returned = {item["id"] for item in found}
        yield found, [sms_id for sms_id in batch if sms_id not in returned]
