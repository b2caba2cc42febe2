"""Objects read by id, for every family: many at once by `id__in`, checked, and one by one:
found, proven gone (their own 404) or unreadable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import ApiContractError, FilterIgnored
from .client import CloseClient, RequestRejected


@dataclass
class Fetched:
    """Objects fetched by id: those Close returned, those proven gone by their own 404, and
    those it answered 403 for (this key may not read them: they stay as they are)."""

    found: list[dict[str, Any]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def list_by_ids(
    client: CloseClient, endpoint: str, ids: list[str], noun: str
) -> list[dict[str, Any]]:
    """The objects of `ids` that one `id__in` query of `endpoint` answers (`noun` names them).

    An answer holding objects that were not asked for means Close ignored the filter: reading on
    would take them for the ones asked for, so `FilterIgnored` is raised.
    """
    body = client.get(endpoint, {"id__in": ",".join(ids), "_limit": len(ids)})
    data = list(body.get("data") or [])
    asked = set(ids)
    strangers = [item.get("id") for item in data if item.get("id") not in asked]
    if strangers:
        raise FilterIgnored(
            f"Close ignored the id__in filter of {endpoint}: asked for {len(ids)} "
            f"{noun}, it answered with {len(strangers)} others (e.g. {strangers[0]})"
        )
    return data


def fetch_each(client: CloseClient, endpoint: str, ids: list[str]) -> Fetched:
    """Objects a list left out, each asked for alone: found, gone (404) or unreadable (403)."""
    result = Fetched()
    for object_id in ids:
        try:
            item = fetch_one(client, endpoint, object_id)
        except RequestRejected as exc:
            if exc.status != 403:
                raise
            result.unreadable.append(object_id)
            continue
        if item is None:
            result.gone.append(object_id)
        else:
            result.found.append(item)
    return result


def fetch_one(client: CloseClient, endpoint: str, object_id: str) -> dict[str, Any] | None:
    """One object by id, or None when Close answers 404 for it (the proof that it is gone); a
    403 is raised as `RequestRejected`."""
    try:
        item = client.get_item(endpoint, object_id)
    except RequestRejected as exc:
        if exc.status == 404:
            return None
        raise
    if item.get("id") != object_id:
        raise ApiContractError(
            f"{endpoint}{object_id}/ answered with another object ({item.get('id')!r})"
        )
    return item
