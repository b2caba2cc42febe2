"""Reads of the context from Close, each checked as the SMS reads are: an answer that ignores a
filter, or holds what was not asked for, raises `ApiContractError`, which fails that table's
read (see `sync.ContextRun`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ...errors import ApiContractError, FilterIgnored
from .. import settings
from ..api.client import CloseClient
from ..api.objects import Fetched, fetch_each, list_by_ids


def read_list(
    client: CloseClient, endpoint: str, params: dict[str, Any] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Every page of an offset-paged list, each object once; each must match `params`.

    `params` name filters whose value each object must carry (e.g. {"lead_id": ...}). An object
    that comes again (a new one shifted the offsets) is dropped. The pages end with the one
    Close answers `has_more: false` for, so a list read to its end holds every object.
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


@dataclass
class IdReader:
    """Objects of one list endpoint by id: 100 a request by `id__in`, which Close's spec does not
    list for leads and contacts, else one by one by the item GET it documents.

    Once an answer shows the filter ignored, the rest of the run asks for each object alone;
    `item_requests` counts those requests.
    """

    client: CloseClient
    endpoint: str
    noun: str
    filter_ignored: bool = False
    item_requests: int = 0

    def fetch(self, ids: list[str]) -> Iterator[Fetched]:
        """The objects of `ids`, a batch at a time; an id missing from an `id__in` answer is
        fetched alone (see `fetch_each`)."""
        for start in range(0, len(ids), settings.ID_BATCH_SIZE):
            batch = ids[start : start + settings.ID_BATCH_SIZE]
            found = [] if self.filter_ignored else self._listed(batch)
            returned = {item["id"] for item in found}
            alone = [i for i in batch if i not in returned]
            if self.filter_ignored:
                self.item_requests += len(alone)
            result = fetch_each(self.client, self.endpoint, alone)
            result.found[:0] = found
            yield result

    def _listed(self, batch: list[str]) -> list[dict[str, Any]]:
        try:
            return list_by_ids(self.client, self.endpoint, batch, self.noun)
        except FilterIgnored:
            self.filter_ignored = True
            return []

    def fallback_warning(self) -> str | None:
        """The one line that says the filter was ignored and what it cost, if it was."""
        if not self.filter_ignored:
            return None
        batches = -(-self.item_requests // settings.ID_BATCH_SIZE)
        return (
            f"Close ignored the id__in filter of {self.endpoint}: {self.noun} read one by one "
            f"({self.item_requests:,} requests where id__in takes {batches:,})"
        )
