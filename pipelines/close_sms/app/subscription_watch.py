"""The follower's eye on its webhook subscription: Close pauses a failing one by itself, and a
paused doorbell must not go unnoticed (polling goes on, only slower to notice changes).

Every `WATCH_INTERVAL_SECONDS` the follower reads its subscription (`webhook_subscription_id`)
and keeps what it saw in the warehouse's working folder, where `status` reads it. A subscription
that is paused, or gone, is told once (a warning, and an alert when `notify_url` is set) until
it is active again.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import CloseApiError, one_line
from ..source.api.client import CloseClient, RequestRejected
from ..source.api.webhooks import ACTIVE, get_subscription
from ..warehouse.destination import Warehouse
from .alerts import Alerts, send_alert
from .runner import Say

SUBSCRIPTION_FILE = "webhook_subscription.json"
# One request each 5 minutes: well within any budget, and a pause is told within minutes.
WATCH_INTERVAL_SECONDS = 300.0
GONE = "deleted"


class SubscriptionWatch:
    """Reads the subscription when due; records it; tells once when it is not active."""

    def __init__(
        self,
        client: CloseClient,
        subscription_id: str,
        warehouse: Warehouse,
        alerts: Alerts | None,
        say: Say,
        interval: float = WATCH_INTERVAL_SECONDS,
    ) -> None:
        self.client = client
        self.subscription_id = subscription_id
        self.path = warehouse.working_dir / SUBSCRIPTION_FILE
        self.where = f"close-sms follow on {socket.gethostname()}, {warehouse.describe()}"
        self.alerts = alerts
        self.say = say
        self.interval = interval
        self._next = 0.0

    def check_when_due(self) -> None:
        """Read the subscription if `interval` has passed; never raises for Close's failures."""
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.interval
        try:
            status = str(get_subscription(self.client, self.subscription_id).get("status"))
        except RequestRejected as exc:
            if exc.status != 404:
                self.say(f"warning: webhook subscription not checked: {one_line(exc)}")
                return
            status = GONE
        except CloseApiError as exc:
            self.say(f"warning: webhook subscription not checked: {one_line(exc)}")
            return
        before = read_subscription(self.path.parent)
        told = bool(before and before.get("told") and before.get("status") == status)
        if status != ACTIVE and not told:
            told = self._tell(status)
        record = {
            "id": self.subscription_id,
            "status": status,
            "checked_at": datetime.now(timezone.utc).isoformat(),
            "told": told and status != ACTIVE,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(record), encoding="utf-8")
        except OSError as exc:
            # `status` then shows an older state; the follower goes on.
            self.say(f"warning: webhook subscription state not kept: {exc.strerror or exc}")

    def _tell(self, status: str) -> bool:
        problem = (
            f"webhook subscription {self.subscription_id} is {status}: Close sends no deliveries, "
            "so changes arrive by polling alone"
            + (" (re-activate it in Close)" if status != GONE else " (create one again)")
        )
        self.say(f"warning: {problem}")
        if self.alerts is None:
            return True
        return send_alert(self.alerts, f":warning: {self.where}: {problem}", self.say)


def read_subscription(working_dir: Path) -> dict[str, Any] | None:
    """What the follower last saw of its subscription, or None."""
    try:
        record = json.loads((working_dir / SUBSCRIPTION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "status" in record else None
