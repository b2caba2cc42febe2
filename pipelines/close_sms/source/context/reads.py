"""Reads of the context from Close, each checked as the SMS reads are: an answer that ignores a
filter, or holds what was not asked for, stops the run (ApiContractError)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...errors import ApiContractError
from .. import settings
from ..api.client import CloseClient
from ..api.objects import Fetched, fetch_each, list_by_ids


def read_list(
    client: CloseClient, endpoint: str, params: dict[str, Any] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Every page of an offset-paged list, each object once; each must match `params`.

    `params` name filters whose value each object must carry (e.g. {"lead_id": ...}). An object
    that comes again (a new one shifted the offsets) is dropped.
    """
    filters = dict(params or {})
    seen: set[str] = set()
    offset = 0
    while True:
        body = client.get(endpoint, {**filters, "_skip": offset, "_limit": settings.PAGE_SIZE})
        page = list(body.get("data") or [])
        offset += len(page)
        fresh = []
        for item in page:
            object_id = item.get("id") if isinstance(item, dict) else None
            if not object_id:
                raise ApiContractError(f"Close answered {endpoint} with an object without an id")
            for name, wanted in filters.items():
                if item.get(name) != wanted:
                    raise ApiContractError(
                        f"Close answered {endpoint} for {name}={wanted} with another object "
                        f"({object_id}: {name}={item.get(name)!r}): the filter was not applied"
                    )
            if object_id not in seen:
                seen.add(object_id)
                fresh.append(item)
        if fresh:
            yield fresh
        if not body.get("has_more") or not page:
            return


def fetch_by_ids(
    client: CloseClient, endpoint: str, ids: list[str], noun: str
) -> Iterator[Fetched]:
    """Objects by `id__in`, 100 a request; an id missing from an answer is fetched alone (see
    `fetch_each`)."""
    for start in range(0, len(ids), settings.ID_BATCH_SIZE):
        batch = ids[start : start + settings.ID_BATCH_SIZE]
        data = list_by_ids(client, endpoint, batch, noun)
        returned = {item["id"] for item in data}
        result = fetch_each(client, endpoint, [i for i in batch if i not in returned])
        result.found[:0] = data
        yield result
