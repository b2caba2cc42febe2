"""`close-sms follow`: the sync of `close-sms sync` in a loop, in one warm process.

The follower holds the writer lock from start to stop, so a cron `sync` beside it exits 5 as an
overlap. Each cycle is one `run_sync`, with its reads, checks, guards, state and ledger row; a
cycle starts every `follow_interval` seconds, or at once when the doorbell rings (a verified
Close webhook delivery), and never sooner than a second after the one before, so a burst of
deliveries starts one cycle. A stop (SIGTERM, Ctrl-C) ends the cycle in progress as it ends a
sync, which the next start resumes.

A cycle that cannot reach Close or its destination is tried again after a back-off, as cron
would try again; any other failure (a bad key or setting, a broken contract, the mass-delete
guard) ends the follower with that cycle's exit status, as a loud stop.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

from ..errors import CloseApiError, DatabaseError, Terminated, UnreachableError, one_line
from ..warehouse import ledger
from ..warehouse.destination import Warehouse
from ..warehouse.ledger import Outcome, SyncRun
from ..warehouse.lock import writer_lock
from .doorbell import Doorbell
from .health import record_each_run
from .runner import Say, SyncOptions, run_sync
from .stopping import sigterm_held, sigterm_received
from .subscription_watch import SubscriptionWatch

# Cycles start at most this often, however often the doorbell rings.
MIN_CYCLE_GAP_SECONDS = 1.0
# The longest wait after failed cycles (the wait doubles from the interval up to this).
MAX_BACKOFF_SECONDS = 300.0
# Quiet cycles are summed into one ledger row per this span.
QUIET_ROW_SPAN = timedelta(hours=1)


def retried(exc: Exception) -> bool:
    """Whether a cycle that failed with `exc` is tried again: Close or the destination away."""
    if isinstance(exc, CloseApiError):
        return isinstance(exc, UnreachableError)
    return isinstance(exc, DatabaseError)


def follow(
    options: SyncOptions,
    say: Say,
    interval: float,
    doorbell: Doorbell | None,
    watch: SubscriptionWatch | None = None,
) -> None:
    """Run cycles until stopped; raises the failure that ended them."""
    quiet = QuietCycles()
    cycle_options = dataclasses.replace(options, record=quiet.record)
    failures = 0
    # The first cycle says what a sync says (a backfill's progress); later ones only what they
    # changed, below, and warnings, which go to stderr anyway.
    cycle_say = say
    with writer_lock(options.warehouse):
        try:
            while True:
                began = time.monotonic()
                try:
                    report = run_sync(cycle_options, cycle_say)
                except Exception as exc:
                    if not retried(exc):
                        raise
                    # The failed cycle stopped listening for SIGTERM as a failed sync does (it
                    # ends next); the follower goes on, so it listens again, or stops now for
                    # one that came meanwhile.
                    if sigterm_received():
                        raise Terminated() from None
                    Terminated.caught.clear()
                    failures += 1
                    wait = min(MAX_BACKOFF_SECONDS, interval * 2**failures)
                    say(f"Cycle failed: {one_line(exc)}; next in {wait:.0f} s")
                else:
                    failures = 0
                    wait = interval
                    if report.wrote:
                        say(
                            f"Cycle ({report.mode}, {report.seconds:.1f} s): "
                            f"{report.backfill_sms + report.upserted:,} SMS upserted, "
                            f"{report.deleted + report.removed:,} deleted, "
                            f"{report.events:,} events"
                        )
                cycle_say = _silent
                if watch is not None:
                    watch.check_when_due()
                _wait(doorbell, began, wait)
        finally:
            with sigterm_held():
                quiet.flush(options.warehouse)


def _silent(message: str) -> None:
    return


def _wait(doorbell: Doorbell | None, began: float, wait: float) -> None:
    """Until `wait` seconds after `began`, or a ring, but not before the minimum gap."""
    deadline = began + wait
    if doorbell is not None and doorbell.wait(deadline - time.monotonic()):
        time.sleep(max(0.0, began + MIN_CYCLE_GAP_SECONDS - time.monotonic()))
        return
    time.sleep(max(0.0, deadline - time.monotonic()))


class QuietCycles:
    """The follower's ledger: a quiet cycle (one that succeeded and wrote nothing) is summed into
    one row an hour; any other run is recorded as a sync's run is, after the quiet ones."""

    def __init__(self) -> None:
        self.summary: SyncRun | None = None

    def record(self, warehouse: Warehouse, run: SyncRun, wrote: bool) -> None:
        if run.outcome is not Outcome.SUCCESS or run.exit_status or wrote:
            self.flush(warehouse)
            record_each_run(warehouse, run, wrote)
            return
        # `status` reads the working folder's last success: its lag stays a cycle's.
        ledger.note_success(warehouse, run)
        self.summary = run if self.summary is None else _summed(self.summary, run)
        if self.summary.ended_at - self.summary.started_at >= QUIET_ROW_SPAN:
            self.flush(warehouse)

    def flush(self, warehouse: Warehouse) -> None:
        """Write the quiet cycles' row, if there is one."""
        if self.summary is not None:
            summary, self.summary = self.summary, None
            record_each_run(warehouse, summary, False)


def _summed(first: SyncRun, then: SyncRun) -> SyncRun:
    """Two quiet cycles as one row: the span of both, their counts added, the latest feed read."""
    return dataclasses.replace(
        then,
        run_id=first.run_id,
        started_at=first.started_at,
        events_read=first.events_read + then.events_read,
        requests=first.requests + then.requests,
        responses_429=first.responses_429 + then.responses_429,
        rate_limit_wait_seconds=round(
            first.rate_limit_wait_seconds + then.rate_limit_wait_seconds, 3
        ),
        skipped_positions=first.skipped_positions + then.skipped_positions,
        sms_unreadable=first.sms_unreadable + then.sms_unreadable,
    )
