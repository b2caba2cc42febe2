"""What a run of `close-sms sync` leaves for monitors: its ledger row and, when due, an alert.

`recorded_run` wraps a whole run, outside the runner's translation of dlt's failures and inside
the CLI's mapping of failures to exit statuses, so it sees every outcome with its exit status.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..errors import LockHeld, SyncError, exit_status, one_line
from ..warehouse import ledger
from ..warehouse.destination import Warehouse
from ..warehouse.ledger import SyncRun
from .alerts import Alerts, after_run

if TYPE_CHECKING:
    from .runner import SyncReport


def warn(message: str) -> None:
    """One line on stderr, even with --quiet: it is about the run's monitoring, not its output."""
    print(f"close-sms: warning: {message}", file=sys.stderr, flush=True)


@contextmanager
def recorded_run(warehouse: Warehouse, report: SyncReport, alerts: Alerts | None) -> Iterator[None]:
    """Record the run in the ledger (or its journal) and alert if due, whatever its outcome.

    Nothing here changes the run's outcome: a ledger or alert failure is one warning line.
    """
    started = datetime.now(timezone.utc)
    try:
        yield
    except BaseException as exc:
        _finish(warehouse, report, alerts, started, exc)
        raise
    _finish(warehouse, report, alerts, started, None)


def _finish(
    warehouse: Warehouse,
    report: SyncReport,
    alerts: Alerts | None,
    started: datetime,
    exc: BaseException | None,
) -> None:
    run = sync_run(warehouse, report, started, exc)
    try:
        ledger.record_run(warehouse, run, write=run.outcome == ledger.SUCCESS or report.wrote)
    except Exception as failure:
        warn(f"this run is not in the ledger: {one_line(failure)}")
    if alerts is not None:
        try:
            after_run(alerts, warehouse, run, warn)
        except Exception as failure:
            warn(f"alerting failed: {one_line(failure)}")


def sync_run(
    warehouse: Warehouse, report: SyncReport, started: datetime, exc: BaseException | None
) -> SyncRun:
    """The ledger row of a run that ended with `exc` (None: success), from what it reported."""
    ended = datetime.now(timezone.utc)
    chunks = report.chunks
    if exc is None:
        outcome = ledger.SUCCESS
        feed_read = next((c.feed_read_at for c in reversed(chunks) if c.feed_read_at), None)
    else:
        if isinstance(exc, LockHeld):
            outcome = ledger.LOCKED
        elif isinstance(exc, Exception):
            outcome = ledger.FAILED
        else:
            outcome = ledger.INTERRUPTED
        # Only a successful run's read counts: the feed's rows may not have been loaded.
        last = ledger.last_success(warehouse)
        feed_read = last.feed_checked_at if last else None
    requests = [c.requests for c in chunks]
    return SyncRun(
        run_id=uuid.uuid4().hex,
        started_at=started,
        ended_at=ended,
        mode=next((c.mode for c in chunks if c.mode), None),
        outcome=outcome,
        exit_status=exit_status(exc),
        error=_error(exc),
        sms_upserted=sum(c.backfill_sms + c.upserted for c in chunks),
        sms_deleted=sum(c.deleted + c.removed for c in chunks),
        events_read=sum(c.events for c in chunks),
        requests=sum(r.requests for r in requests),
        responses_429=sum(r.responses_429 for r in requests),
        rate_limit_wait_seconds=round(sum(r.rate_limit_wait_seconds for r in requests), 3),
        feed_checked_at=feed_read,
        lag_seconds=max(0.0, (ended - feed_read).total_seconds()) if feed_read else None,
        backfill_windows_left=chunks[-1].windows_left if chunks and chunks[-1].mode else None,
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
