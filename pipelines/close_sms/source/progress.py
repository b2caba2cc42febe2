"""What one run of the source does and did: its mode and its counts, for callers that report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .api.client import RequestStats
from .settings import TextEnum
from .sms.backfill import Window
from .timestamps import to_ms


class RunMode(TextEnum):
    """What a run of the source does; the values are the words the CLI and the ledger show."""

    BACKFILL = "backfill"
    RECONCILE = "reconcile"
    RESUMED = "backfill (resumed)"
    INCREMENTAL = "incremental"


@dataclass
class SyncProgress:
    """What one run of the source did, filled in as it runs: pass one in to watch a run."""

    mode: RunMode | None = None
    reason: str = ""
    backfill_range: tuple[datetime, datetime] | None = None
    backfill_sms: int = 0
    backfill_loaded: int = 0
    windows_left: int = 0
    windows_done: int = 0
    # The milliseconds of `date_created` the backfill has left to read, for estimates of the rest.
    backfill_pending_ms: int = 0
    removed: int = 0
    feed_since: datetime | None = None
    # When this run read the change feed to its end (Close's clock), recorded in state or not.
    feed_read_at: datetime | None = None
    events: int = 0
    upserted: int = 0
    deleted: int = 0
    # SMS of the recent re-read that differed from the warehouse (changes without an event).
    recent_changed: int = 0
    # Listing positions stepped past: Close answered 404 "Empty query" for each alone.
    skipped_positions: int = 0
    # SMS Close answered 403 for: kept as they were, neither updated nor removed.
    unreadable: int = 0
    # Context objects (leads, contacts, ...) Close answered 403 for: kept as they were.
    context_unreadable: int = 0
    # Each context table this run read, or tried to: None when it read it whole, else why it
    # could not (the table kept its rows, and the next run reads it again).
    context_reads: dict[str, str | None] = field(default_factory=dict)
    requests: RequestStats = field(default_factory=RequestStats)
    # Called once the run knows what it does, after every backfill page, and with
    # (reason, seconds) before long waits.
    on_start: Callable[[SyncProgress], None] | None = field(default=None, repr=False)
    on_page: Callable[[SyncProgress], None] | None = field(default=None, repr=False)
    on_wait: Callable[[str, float], None] | None = field(default=None, repr=False)
    # Called with each warning of the run (one line), e.g. Close sends no rate-limit header.
    on_warning: Callable[[str], None] | None = field(default=None, repr=False)


def measure_pending(progress: SyncProgress, windows: Sequence[Window], until: datetime) -> None:
    """Record the `date_created` range `windows` leave to read, for estimates of what is left.

    Only the range before `until` (when the plan was made) counts: the open-ended pass after it
    holds the few future-dated SMS, and its span up to year 9999 would swamp any estimate.
    """
    end = to_ms(until)
    progress.backfill_pending_ms = sum(
        max(0, min(window.upper, end) - window.lower) for window in windows
    )
