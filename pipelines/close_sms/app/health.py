"""What a run of `close-sms sync` leaves for monitors: its ledger row and, when due, an alert.

`recorded_run` wraps a whole run, outside the runner's translation of dlt's failures and inside
the CLI's mapping of failures to exit statuses, so it sees every outcome with its exit status.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from ..errors import Terminated, one_line
from ..warehouse import ledger
from ..warehouse.destination import Warehouse
from ..warehouse.ledger import Outcome, SyncRun
from .alerts import Alerts, after_run
from .outcome import SyncReport
from .stopping import sigterm_held

# Keeps a run that ended: given the run's row and whether the run wrote to the warehouse.
RecordRun = Callable[[Warehouse, SyncRun, bool], object]


def record_each_run(warehouse: Warehouse, run: SyncRun, wrote: bool) -> None:
    """A row for every run: in the ledger if it succeeded or wrote, else in the journal."""
    ledger.record_run(warehouse, run, write=run.outcome is Outcome.SUCCESS or wrote)


def warn(message: str) -> None:
    """One line on stderr, even with --quiet: it is about the run's monitoring, not its output."""
    print(f"close-sms: warning: {message}", file=sys.stderr, flush=True)


@contextmanager
def recorded_run(
    warehouse: Warehouse,
    report: SyncReport,
    alerts: Alerts | None,
    record: RecordRun = record_each_run,
) -> Iterator[None]:
    """Record the run in the ledger (or its journal) and alert if due, whatever its outcome.

    Nothing here changes the run's outcome: a ledger or alert failure is one warning line. A
    SIGTERM while a run that ended records itself would only cut its row short: a failed run
    ignores it, a successful one is stopped once its row is written.
    """
    started = datetime.now(timezone.utc)
    try:
        yield
    except BaseException as exc:
        Terminated.caught.set()
        _finish(warehouse, report, alerts, started, exc, record)
        raise
    _finish(warehouse, report, alerts, started, None, record)


def _finish(
    warehouse: Warehouse,
    report: SyncReport,
    alerts: Alerts | None,
    started: datetime,
    exc: BaseException | None,
    record: RecordRun,
) -> None:
    run = report.ledger_row(warehouse, started, exc)
    try:
        # Not the alert: a receiver that is slow to answer would hold a stop up.
        with sigterm_held():
            record(warehouse, run, report.wrote)
    except Exception as failure:
        warn(f"this run is not in the ledger: {one_line(failure)}")
    if alerts is not None:
        try:
            after_run(alerts, warehouse, run, warn)
        except Exception as failure:
            warn(f"alerting failed: {one_line(failure)}")
