"""Close's webhook subscriptions (`/webhook/`): the events the sync reads, and their CRUD.

A subscription only rings a doorbell: the sync never loads a delivery, it reads the event log.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import ApiContractError
from .. import settings
from .client import CloseClient

WEBHOOK_ENDPOINT = "/webhook/"
# Close's ids are a prefix and base62; anything else is refused before it reaches a URL path.
SUBSCRIPTION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ACTIVE = "active"
PAUSED = "paused"
# Close's page size maximum; an organization has at most 40 subscriptions.
MAX_LISTED = 100


def sync_events(context: bool = True) -> list[dict[str, str]]:
    """The event types the sync reads from the event log: a delivery of any of them is a change
    the next cycle would read, so these are what a subscription asks for."""
    kinds = [(settings.EVENT_OBJECT_TYPE, action) for action in settings.EVENT_ACTIONS]
    if context:
        kinds += [
            (object_type, action)
            for object_type, actions in settings.CONTEXT_EVENT_ACTIONS.items()
            for action in actions
        ]
    return [{"object_type": object_type, "action": action} for object_type, action in kinds]


def list_subscriptions(client: CloseClient) -> list[dict[str, Any]]:
    """Every subscription of the organization: Close allows at most 40, so one page of
    `MAX_LISTED` holds them all; one that says there are more is refused, not paged on (a
    `_skip` Close ignored would page forever)."""
    page = client.get(WEBHOOK_ENDPOINT, {"_limit": MAX_LISTED})
    data = page.get("data")
    if not isinstance(data, list) or not all(_is_subscription(s) for s in data):
        raise ApiContractError(f"Close answered GET {WEBHOOK_ENDPOINT} without subscriptions")
    if page.get("has_more") or len(data) > MAX_LISTED:
        raise ApiContractError(
            f"Close answered GET {WEBHOOK_ENDPOINT} with more than {MAX_LISTED} subscriptions, "
            "though it allows 40"
        )
    return data


def create_subscription(
    client: CloseClient, url: str, events: list[dict[str, str]]
) -> dict[str, Any]:
    """POST a subscription; Close's answer, which holds its `signature_key` this once.

    Raises `UncertainWrite` when the POST may have reached Close without an answer.
    """
    answer = client.write("POST", WEBHOOK_ENDPOINT, body={"url": url, "events": events})
    if not _is_subscription(answer):
        raise ApiContractError(f"Close answered POST {WEBHOOK_ENDPOINT} without a subscription id")
    return answer


def get_subscription(client: CloseClient, subscription_id: str) -> dict[str, Any]:
    """One subscription, by an id checked against `SUBSCRIPTION_ID` by the caller."""
    return client.get_item(WEBHOOK_ENDPOINT, subscription_id)


def delete_subscription(client: CloseClient, subscription_id: str) -> None:
    """DELETE one subscription, by an id checked against `SUBSCRIPTION_ID` by the caller."""
    client.write("DELETE", WEBHOOK_ENDPOINT, subscription_id)


def _is_subscription(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and SUBSCRIPTION_ID.fullmatch(value["id"]) is not None
    )
