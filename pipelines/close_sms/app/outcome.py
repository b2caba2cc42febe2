"""What a run of `close-sms sync` did: its report and its ledger row, both summed from its chunks.

A sync runs the source once per backfill chunk and once more for the change feed; every figure
of the run is a sum over those runs' `SyncProgress`, computed here only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..errors import EXIT_CONTEXT_FAILED, LockHeld, SyncError, exit_status, one_line
from ..source import SyncProgress
from ..source.progress import RunMode
from ..warehouse import ledger
from ..warehouse.destination import Warehouse
from ..warehouse.ledger import Outcome, SyncRun


@dataclass
class SyncReport:
    """What a run did, for the progress line, the ledger and tests.

    `chunks` holds every source run's progress, the last one unfinished if the sync failed.
    """

    chunks: list[SyncProgress] = field(default_factory=list)
    seconds: float = 0.0
    wrote: bool = False
    views: list[str] = field(default_factory=list)

    @property
    def mode(self) -> RunMode | None:
        """What the run did: the mode of its first source run that got that far."""
        return next((c.mode for c in self.chunks if c.mode), None)

    @property
    def backfill_chunks(self) -> int:
        """The backfill chunks this run loaded (or, when it failed, began)."""
        return sum(1 for c in self.chunks if c.mode and c.mode is not RunMode.INCREMENTAL)

    @property
    def backfill_sms(self) -> int:
        return sum(c.backfill_sms for c in self.chunks)

    @property
    def removed(self) -> int:
        """SMS a reconcile removed because Close no longer returns them."""
        return sum(c.removed for c in self.chunks)

    @property
    def events(self) -> int:
        return sum(c.events for c in self.chunks)

    @property
    def upserted(self) -> int:
        """SMS the change feed and the recent re-read loaded."""
        return sum(c.upserted for c in self.chunks)

    @property
    def recent_changed(self) -> int:
        """Of `upserted`: SMS the recent re-read found changed without an event."""
        return sum(c.recent_changed for c in self.chunks)

    @property
    def deleted(self) -> int:
        """SMS removed after a `deleted` event."""
        return sum(c.deleted for c in self.chunks)

    @property
    def skipped_positions(self) -> int:
        """Listing positions stepped past: Close answered 404 "Empty query" for each alone."""
        return sum(c.skipped_positions for c in self.chunks)

    @property
    def unreadable(self) -> int:
        """SMS Close answered 403 for, left as they were."""
        return sum(c.unreadable for c in self.chunks)

    @property
    def context_failures(self) -> dict[str, str]:
        """The context tables whose last read in this run failed, and why; they kept their rows."""
        last: dict[str, str | None] = {}
        for chunk in self.chunks:
            last.update(chunk.context_reads)
        return {table: why for table, why in last.items() if why is not None}

    @property
    def context_error(self) -> str | None:
        """The one line naming each context table that failed and why; None when none did."""
        failures = self.context_failures
        if not failures:
            return None
        named = "; ".join(f"{table}: {why}" for table, why in sorted(failures.items()))
        return f"the SMS are loaded, but context tables failed and kept their rows: {named}"

    @property
    def requests(self) -> int:
        return sum(c.requests.requests for c in self.chunks)

    @property
    def feed_read_at(self) -> datetime | None:
        """When the run's last read of the change feed began (Close's clock), if it read one."""
        return next((c.feed_read_at for c in reversed(self.chunks) if c.feed_read_at), None)

    @property
    def rate_limit_waits(self) -> int:
        return sum(c.requests.rate_limit_waits for c in self.chunks)

    def ledger_row(
        self, warehouse: Warehouse, started: datetime, exc: BaseException | None
    ) -> SyncRun:
        """The ledger row of this run, ended with `exc` (None: success)."""
        ended = datetime.now(timezone.utc)
        chunks = self.chunks
        status, error = exit_status(exc), _error(exc)
        if exc is None:
            # The SMS are loaded and the feed read counts, even when a context table failed.
            outcome = Outcome.SUCCESS
            feed_read = self.feed_read_at
            if self.context_failures:
                status, error = EXIT_CONTEXT_FAILED, self.context_error
        else:
            if isinstance(exc, LockHeld):
                outcome = Outcome.LOCKED
            elif isinstance(exc, Exception):
                outcome = Outcome.FAILED
            else:
                outcome = Outcome.INTERRUPTED
            # Only a successful run's read counts: the feed's rows may not have been loaded.
            last = ledger.last_success(warehouse)
            feed_read = last.feed_checked_at if last else None
        return SyncRun(
            run_id=uuid.uuid4().hex,
            started_at=started,
            ended_at=ended,
            mode=self.mode,
            outcome=outcome,
            exit_status=status,
            error=error,
            sms_upserted=self.backfill_sms + self.upserted,
            sms_deleted=self.deleted + self.removed,
            events_read=self.events,
            requests=self.requests,
            responses_429=sum(c.requests.responses_429 for c in chunks),
            rate_limit_wait_seconds=round(
                sum(c.requests.rate_limit_wait_seconds for c in chunks), 3
            ),
            feed_checked_at=feed_read,
            lag_seconds=max(0.0, (ended - feed_read).total_seconds()) if feed_read else None,
            backfill_windows_left=chunks[-1].windows_left if chunks and chunks[-1].mode else None,
            skipped_positions=self.skipped_positions,
            sms_unreadable=self.unreadable,
            version=ledger.product_version(),
        )


def _error(exc: BaseException | None) -> str | None:
    # A SyncError's message never holds a secret; anything else is named by its type only.
    if exc is None:
        return None
    if isinstance(exc, SyncError):
        return one_line(exc)
    if isinstance(exc, Exception):
        return f"unexpected {type(exc).__name__}"
    return "interrupted"
