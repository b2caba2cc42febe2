"""The `close-sms` command: it loops, reports and maps errors to exit statuses."""

from __future__ import annotations

import os

# dlt starts its telemetry as it is first imported, before any setting made through it could
# stop that: the command turns it off ahead of every import of dlt. An explicit
# RUNTIME__DLTHUB_TELEMETRY still wins.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
