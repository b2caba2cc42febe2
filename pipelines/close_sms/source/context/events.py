"""The lead and contact events a run reads once: which leads and contacts were created,
changed, deleted or merged since the last check."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import settings
from ..api.client import CloseClient
from ..sms.feed import read_events


@dataclass
class ContextEvents:
    """What the lead and contact events since the last check say; `full` when they cannot
    cover the gap, so the tables read everything they hold and the SMS name."""

    full: bool
    # Close's clock when the read began: the next check starts from it.
    started: datetime
    count: int = 0
    # Objects created or changed, by object type: a `created` event Close folded later changes
    # into carries the object as it is now, so it counts as a change.
    changed: dict[str, set[str]] = field(default_factory=dict)
    deleted: dict[str, set[str]] = field(default_factory=dict)
    # Merged lead -> the lead it was merged into (from the merged lead's `deleted` event).
    merges: dict[str, str] = field(default_factory=dict)

    def touches(self, kind: str) -> bool:
        """Whether these events may change what the warehouse holds of `kind` (`lead`,
        `contact`): `full`, or an event about one, or a merge of leads."""
        merged = kind == "lead" and bool(self.merges)
        return self.full or kind in self.changed or kind in self.deleted or merged

    def note(self, event: dict[str, Any]) -> None:
        """Take in one event."""
        kind, object_id = event["object_type"], event.get("object_id")
        if not object_id:
            return
        if event["action"] == "deleted":
            self.deleted.setdefault(kind, set()).add(object_id)
            destination = (event.get("meta") or {}).get("merge_destination_lead_id")
            if kind == "lead" and destination:
                self.merges[object_id] = destination
        else:
            self.changed.setdefault(kind, set()).add(object_id)


def read_context_events(
    client: CloseClient, since: datetime | None, full: bool, started: datetime
) -> ContextEvents:
    """The lead and contact events updated since `since` (None: none are read)."""
    found = ContextEvents(full=full, started=started)
    if since is None:
        return found
    for object_type, actions in settings.CONTEXT_EVENT_ACTIONS.items():
        for page in read_events(client, since, actions, object_type):
            found.count += len(page)
            for event in page:
                found.note(event)
    return found
