"""Reads of the context from Close, each checked as the SMS reads are: an answer that ignores a
filter, or holds what was not asked for, raises `ApiContractError`, which fails that table's
read (see `sync.ContextRun`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ...errors import ApiContractError, FilterIgnored
from .. import settings
from ..api.client import CloseClient, DeletedMidQuery
from ..api.objects import Fetched, fetch_each, list_by_ids


def read_list(
    client: CloseClient,
    endpoint: str,
    params: dict[str, Any] | None = None,
    on_deleted: Callable[[], None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Every page of an offset-paged list, each object once; each must match `params`.

    `params` name filters whose value each object must carry (e.g. {"lead_id": ...}). An object
    that comes again (a new one shifted the offsets) is dropped. The pages end with the one
    Close answers `has_more: false` for, so a list read to its end holds every object. With
    `on_deleted`, a position Close answers 404 "Empty query" for (see `_page`) is stepped past
    and reported to it; without, the read stops there, as it would prove nothing.
    """
    filters = dict(params or {})
    seen: set[str] = set()
    offset = 0
    while True:
        page, more = _page(client, endpoint, filters, offset, settings.PAGE_SIZE, on_deleted)
        offset += len(page)
        fresh = []
        for item in page:
            if item is None:
                continue
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
        if not more or not page:
            return


def _page(
    client: CloseClient,
    endpoint: str,
    filters: dict[str, Any],
    skip: int,
    limit: int,
    on_deleted: Callable[[], None] | None,
) -> tuple[list[dict[str, Any] | None], bool]:
    """The objects of the page of `limit` from `skip`, and whether more follow.

    Close answers every page holding a record it deleted but still indexes with 404 "Empty
    query": with `on_deleted`, the page is read in halves until that position is alone, and it
    stands in the page as None.
    """
    try:
        body = client.get(endpoint, {**filters, "_skip": skip, "_limit": limit})
    except DeletedMidQuery:
        if on_deleted is None:
            raise
        if limit == 1:
            on_deleted()
            # Whether more follow is learnt from the next position.
            return [None], True
        head, more = _page(client, endpoint, filters, skip, limit // 2, on_deleted)
        if not more or not head:
            return head, more
        # From where the head ended: Close may answer fewer than asked for.
        rest, more = _page(
            client, endpoint, filters, skip + len(head), limit - len(head), on_deleted
        )
        return head + rest, more
    return list(body.get("data") or []), bool(body.get("has_more"))


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
