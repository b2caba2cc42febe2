"""What a run of `close-sms sync` leaves for monitors: its ledger row and, when due, an alert.

`recorded_run` wraps a whole run, outside the runner's translation of dlt's failures and inside
the CLI's mapping of failures to exit statuses, so it sees every outcome with its exit status.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from ..errors import Terminated, one_line
from ..warehouse import ledger
from ..warehouse.destination import Warehouse
from ..warehouse.ledger import Outcome
from .alerts import Alerts, after_run
from .outcome import SyncReport
from .stopping import sigterm_held


def warn(message: str) -> None:
    """One line on stderr, even with --quiet: it is about the run's monitoring, not its output."""
    print(f"close-sms: warning: {message}", file=sys.stderr, flush=True)


@contextmanager
def recorded_run(warehouse: Warehouse, report: SyncReport, alerts: Alerts | None) -> Iterator[None]:
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
    run = report.ledger_row(warehouse, started, exc)
    try:
        # Not the alert: a receiver that is slow to answer would hold a stop up.
        with sigterm_held():
            ledger.record_run(warehouse, run, write=run.outcome is Outcome.SUCCESS or report.wrote)
    except Exception as failure:
        warn(f"this run is not in the ledger: {one_line(failure)}")
    if alerts is not None:
        try:
            after_run(alerts, warehouse, run, warn)
        except Exception as failure:
            warn(f"alerting failed: {one_line(failure)}")
