"""Helpers shared by the emulator tests: read a whole listing or event query over HTTP."""

from __future__ import annotations

from typing import Any


def all_sms(run: Any, path: str = "/activity/sms/", **params: Any) -> list[dict[str, Any]]:
    """Every SMS of a listing, offset-paged 100 at a time."""
    items: list[dict[str, Any]] = []
    skip = 0
    while True:
        body = run.get(path, params={**params, "_skip": skip, "_limit": 100}).json()
        items += body["data"]
        skip += len(body["data"])
        if not body["has_more"]:
            return items


def all_events(run: Any, api_key: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every event of a query, following cursor_next until it is null (empty pages included)."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = dict(params, **({"_cursor": cursor} if cursor else {}))
        resp = run.get("/event/", params=query, api_key=api_key)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        out += body["data"]
        cursor = body["cursor_next"]
        if not cursor:
            return out
