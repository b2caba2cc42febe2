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

Between full cycles, a quiet probe (`QuietProbe`) asks the event log, in one request, whether
anything at all was logged since the last cycle's read; when nothing was, the cycle is skipped.
A full cycle still runs at least every `FULL_CYCLE_SECONDS`, with the feed's whole look-back
and the recent re-read, for what the event log shows late or never (delivery outcomes).
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta

from ..errors import (
    CloseApiError,
    DatabaseError,
    Terminated,
    UnreachableError,
    one_line,
    sleep_heeding_signals,
)
from ..source.api.client import CloseClient, RequestRejected
from ..source.sms.feed import any_event_since
from ..warehouse import ledger
from ..warehouse.destination import Warehouse
from ..warehouse.ledger import Outcome, SyncRun
from ..warehouse.lock import writer_lock
from ..warehouse.reader_copy import CopyPacer
from .doorbell import Doorbell
from .health import record_each_run
from .outcome import SyncReport
from .runner import Say, SyncOptions, run_sync
from .stopping import sigterm_held, sigterm_received
from .subscription_watch import SubscriptionWatch

# Cycles start at most this often, however often the doorbell rings.
MIN_CYCLE_GAP_SECONDS = 1.0
# The longest wait after failed cycles (the wait doubles from the interval up to this).
MAX_BACKOFF_SECONDS = 300.0
# Quiet cycles are summed into one ledger row per this span.
QUIET_ROW_SPAN = timedelta(hours=1)
# The longest time between two full cycles, however quiet the event log looks.
FULL_CYCLE_SECONDS = 60.0
# How far before the last cycle's feed read the probe looks: Close's clock is read from the
# Date header, to the second.
PROBE_MARGIN = timedelta(seconds=2)


class QuietProbe:
    """Whether a cycle can be skipped: one request to the event log, since the last full
    cycle's feed read, finds nothing, and a full cycle ran less than `full_every` ago.

    Any doubt runs the cycle: a probe that fails, or that Close refuses (then never again).
    """

    def __init__(
        self, client: CloseClient, say: Say, full_every: float = FULL_CYCLE_SECONDS
    ) -> None:
        self.client = client
        self.say = say
        self.full_every = full_every
        self.requests = 0
        self._since: datetime | None = None
        self._last_full = 0.0
        self._refused = False

    def cycle_failed(self) -> None:
        """Note a failed cycle: the next one is full (it may have left a load to finish)."""
        self._since = None

    def cycle_ran(self, report: SyncReport) -> None:
        """Note a full cycle that succeeded."""
        read = report.feed_read_at
        self._since = read - PROBE_MARGIN if read else None
        self._last_full = time.monotonic()

    def quiet(self) -> bool:
        """True when the next cycle may be skipped."""
        if self._refused or self._since is None:
            return False
        if time.monotonic() - self._last_full >= self.full_every:
            return False
        self.requests += 1
        try:
            return not any_event_since(self.client, self._since)
        except RequestRejected as exc:
            self._refused = True
            self.say(f"warning: quiet probe refused, every cycle is full: {one_line(exc)}")
        except CloseApiError:
            pass
        return False


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
    probe: QuietProbe | None = None,
) -> None:
    """Run cycles until stopped; raises the failure that ended them."""
    quiet = QuietCycles()
    cycle_options = dataclasses.replace(options, record=quiet.record, copy_pacer=CopyPacer())
    failures = 0
    # The first cycle says what a sync says (a backfill's progress); later ones only what they
    # changed, below, and warnings, which go to stderr anyway.
    cycle_say = say
    rang = False
    with writer_lock(options.warehouse):
        try:
            while True:
                began = time.monotonic()
                if probe is not None and not rang and probe.quiet():
                    rang = _wait(doorbell, began, interval)
                    continue
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
                    if probe is not None:
                        probe.cycle_failed()
                    failures += 1
                    wait = min(MAX_BACKOFF_SECONDS, interval * 2**failures)
                    say(f"Cycle failed: {one_line(exc)}; next in {wait:.0f} s")
                else:
                    failures = 0
                    wait = interval
                    if probe is not None:
                        probe.cycle_ran(report)
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
                rang = _wait(doorbell, began, wait)
        finally:
            with sigterm_held():
                quiet.flush(options.warehouse)


def _silent(message: str) -> None:
    return


def _wait(doorbell: Doorbell | None, began: float, wait: float) -> bool:
    """Until `wait` seconds after `began`, or a ring, but not before the minimum gap; whether
    the doorbell rang."""
    deadline = began + wait
    if doorbell is not None and doorbell.wait(deadline - time.monotonic()):
        sleep_heeding_signals(began + MIN_CYCLE_GAP_SECONDS - time.monotonic())
        return True
    sleep_heeding_signals(deadline - time.monotonic())
    return False


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
