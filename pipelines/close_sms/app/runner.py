"""One `close-sms sync`: the source run in chunks until it has read the change feed, then views.

The source decides what each run does; this module only loops, reports and words failures.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
)
from dlt.common.exceptions import SignalReceivedException
from dlt.pipeline.exceptions import PipelineStepFailed

from ..errors import ConfigError, SyncError, exception_chain, interruption
from ..source import MISSING_KEY, RunMode, SyncProgress, close_sms_source
from ..warehouse.compact import compact_database
from ..warehouse.destination import Warehouse, database_error, storage_error
from ..warehouse.load_files import remove_loaded_packages
from ..warehouse.lock import writer_lock
from ..warehouse.reader_copy import CopyPacer, publish_reader_copy
from ..warehouse.restage import drop_normalized_extracts, restage_partly_loaded_packages
from ..warehouse.views import drop_views, missing_views, refresh_views
from .alerts import Alerts
from .config import BACKFILL_CHUNK_SIZE, not_coercible
from .health import RecordRun, record_each_run, recorded_run
from .outcome import SyncReport
from .stopping import settled

Say = Callable[[str], None]


def stderr_printer(quiet: bool) -> Say:
    """Progress goes to stderr, so stdout stays clean; `quiet` silences it for cron mail."""

    def say(message: str) -> None:
        if not quiet:
            stderr_line(message)

    return say


def stderr_line(text: str) -> None:
    """`text` and its newline in one write: a SIGTERM raised between print's two writes left a
    line without its end, and the run's last line ("interrupted by SIGTERM") glued to it."""
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


@dataclass
class SyncOptions:
    """One run's choices; `source_args` go to `close_sms_source`, which reads the rest from config.

    `source_args` may hold the API key, so the repr leaves them out. `on_page` hears after every
    backfill page (see `app.progress`). `record` keeps the run's ledger row. `copy_pacer` spaces
    the reader copies of a process that runs often.
    """

    warehouse: Warehouse
    full_refresh: bool = False
    reconcile: bool = False
    chunk_size: int = BACKFILL_CHUNK_SIZE
    source_args: dict[str, Any] = field(default_factory=dict, repr=False)
    alerts: Alerts | None = None
    on_page: Callable[[SyncProgress], None] | None = None
    record: RecordRun = record_each_run
    copy_pacer: CopyPacer | None = None


def run_sync(options: SyncOptions, say: Say) -> SyncReport:
    """Run one sync and record it in the ledger; raises `SyncError`s with one-line causes."""
    report = SyncReport()
    # Outside dlt_errors, so the ledger sees each failure as the CLI reports it; a stopped run
    # is recorded once the threads it leaves have ended, and holds the lock until then.
    with (
        recorded_run(options.warehouse, report, options.alerts, options.record),
        dlt_errors(options.warehouse),
        writer_lock(options.warehouse),
        settled(options.warehouse),
    ):
        _run_locked(options, say, report)
    return report


def _run_locked(options: SyncOptions, say: Say, report: SyncReport) -> SyncReport:
    began = time.monotonic()
    warehouse = options.warehouse
    warn = _warning_printer()
    # Made before the warehouse is touched, so a bad setting changes nothing.
    first = _next_source(options, say, report, warn)
    with warehouse.file_held():
        _load_and_apply_views(options, say, report, warn, first)
    if report.mode is RunMode.RECONCILE and warehouse.database is not None:
        # The reconcile rewrote every SMS: the file's free blocks hold their old versions and
        # every SMS deleted since the last reconcile, which a rewrite of the file leaves behind.
        size = compact_database(warehouse)
        say(f"Compacted {warehouse.database}: {size.before:,} -> {size.after:,} bytes")
    changed = report.wrote or bool(report.views)
    if publish_reader_copy(warehouse, changed, options.copy_pacer):
        say(f"Reader copy published: {warehouse.reader_copy}")
    report.seconds = time.monotonic() - began
    return report


def _next_source(
    options: SyncOptions, say: Say, report: SyncReport, warn: Callable[[str], None]
) -> tuple[Any, SyncProgress]:
    """The source for the run's next chunk, and the progress it reports into."""
    first = not report.chunks
    progress = SyncProgress(
        # Later chunks continue what the first one announced.
        on_start=_start_printer(say) if first else None,
        on_page=options.on_page,
        on_wait=_wait_printer(say),
        on_warning=warn,
    )
    source = close_sms_source(
        **options.source_args,
        reconcile=options.reconcile and first,
        max_sms=options.chunk_size,
        progress=progress,
    )
    report.chunks.append(progress)
    return source, progress


def _load_and_apply_views(
    options: SyncOptions,
    say: Say,
    report: SyncReport,
    warn: Callable[[str], None],
    first: tuple[Any, SyncProgress],
) -> None:
    """The source's chunks extracted, normalized and loaded until the change feed is read; then
    the views, where they need it."""
    warehouse = options.warehouse
    source, progress = first
    pipeline = warehouse.pipeline()
    refresh = None
    if options.full_refresh:
        # Pending local packages go too; the schema comes back from the destination, so that
        # dlt's refresh knows which tables to drop.
        pipeline.drop()
        pipeline = warehouse.pipeline()
        refresh = "drop_sources"
    pipeline.sync_destination()
    if pipeline.has_pending_data:
        # dlt's run() would load these and return without extracting anything new, which
        # would silently skip this run's backfill or change feed: finish them first.
        say("Finishing the load that an interrupted run left pending")
        drop_normalized_extracts(pipeline)
        pipeline.normalize()
        restage_partly_loaded_packages(pipeline)
        _load(pipeline)
        report.wrote = True

    while True:
        pipeline.extract(source, refresh=refresh, loader_file_format=warehouse.loader_file_format)
        if refresh:
            # The refresh drops the tables when the package loads; the views that read them go
            # first. Only now: an extract that failed (a bad setting, Close down) changed nothing.
            with pipeline.sql_client() as sql:
                if sql.has_dataset():
                    drop_views(sql)
        refresh = None
        if _keep_extracted_packages(pipeline):
            pipeline.normalize()
            _load(pipeline)
            report.wrote = True
        if progress.mode is RunMode.INCREMENTAL:
            break
        say(
            f"  chunk {report.backfill_chunks} loaded: {progress.backfill_loaded:,} SMS so far, "
            f"{progress.windows_left} windows left, {report.requests:,} requests, "
            f"{report.rate_limit_waits} rate-limit waits"
        )
        if progress.removed:
            say(f"Reconcile removed {progress.removed:,} SMS that Close no longer returns")
        source, progress = _next_source(options, say, report, warn)

    say(f"Change feed: read events updated since {progress.feed_since.isoformat()}")
    with warehouse.sql_client() as sql:
        if report.wrote or missing_views(sql):
            report.views = refresh_views(sql, warehouse.views_stamp)


def _load(pipeline: dlt.Pipeline) -> None:
    """Load the pending packages, then remove their files (see `warehouse.load_files`)."""
    pipeline.load()
    remove_loaded_packages(pipeline)


def _keep_extracted_packages(pipeline: dlt.Pipeline) -> bool:
    """Drop the extracted packages if they hold no rows and no state; True if they are kept.

    A quiet run extracts such a package; loading it would only write dlt's bookkeeping, so the
    run would take the destination's write lock from readers for nothing.
    """
    packages = pipeline.list_extracted_load_packages()
    if any(any(pipeline.get_load_package_info(p).jobs.values()) for p in packages):
        return True
    pipeline.abort_packages()
    return False


def _start_printer(say: Say) -> Callable[[SyncProgress], None]:
    def on_start(progress: SyncProgress) -> None:
        if progress.mode is RunMode.RESUMED:
            say(f"Resuming backfill: {progress.windows_left} windows left")
        elif progress.mode is not RunMode.INCREMENTAL and progress.backfill_range:
            start, made_at = progress.backfill_range
            say(
                f"{progress.mode.capitalize()} ({progress.reason}): SMS created from "
                f"{start:%Y-%m-%d} on, as of {made_at.isoformat()}"
            )

    return on_start


def _wait_printer(say: Say) -> Callable[[str, float], None]:
    def on_wait(reason: str, seconds: float) -> None:
        if seconds >= 5:
            say(f"  waiting {seconds:.1f} s ({reason})")

    return on_wait


def _warning_printer() -> Callable[[str], None]:
    """Warnings go to stderr even with --quiet (cron mail should carry them), once a run:
    every chunk's source says them again."""
    said: set[str] = set()

    def on_warning(message: str) -> None:
        if message not in said:
            said.add(message)
            stderr_line(f"close-sms: warning: {message}")

    return on_warning


@contextmanager
def dlt_errors(warehouse: Warehouse | None = None) -> Iterator[None]:
    """Turn dlt's wrapped failures into the Close, config, database or local file error, or the
    interrupt, that caused them; a file error without a file name names `warehouse`'s folder."""
    try:
        yield
    except SyncError:
        raise
    except SignalReceivedException as exc:
        raise interruption(exc.signal_code) from None
    except Exception as exc:
        step = f"during {exc.step}" if isinstance(exc, PipelineStepFailed) else "to open"
        cause = _cause(exc, step, warehouse.working_dir if warehouse else None)
        if cause is exc:
            raise
        raise cause from None


def _cause(exc: BaseException, step: str, folder: Path | None) -> BaseException:
    """The first failure in `exc`'s chain that has a one-line cause, else `exc` itself."""
    for cause in exception_chain(exc):
        if isinstance(cause, SyncError):
            return cause
        if isinstance(cause, SignalReceivedException):
            return interruption(cause.signal_code)
        if isinstance(cause, KeyboardInterrupt):
            # dlt's steps wrap an interrupt like any failure: the run was stopped, not broken.
            return cause
        if isinstance(cause, (ConfigFieldMissingException, ConfigValueCannotBeCoercedException)):
            return _config_error(cause)
        found = database_error(cause, f"the destination failed {step}") or storage_error(
            cause, folder
        )
        if found is not None:
            return found
    return exc


def _config_error(exc: Exception) -> ConfigError:
    if isinstance(exc, ConfigValueCannotBeCoercedException):
        return not_coercible(exc)
    fields = getattr(exc, "fields", [])
    if "api_key" in fields:
        return ConfigError(MISSING_KEY)
    return ConfigError(f"missing setting{'s' if len(fields) > 1 else ''}: {', '.join(fields)}")
