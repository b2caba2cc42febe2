"""One sync run: lock, dlt pipeline beside the database, backfill chunks, change feed, views."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dlt
import duckdb
import filelock
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.pipeline.exceptions import PipelineStepFailed

from . import settings
from .client import ClientConfig, CloseApiError, CloseClient, RequestRejected
from .source import FeedStats, close_sms
from .strategies import BackfillProgress, Window, from_ms, parse_timestamp, to_ms
from .views import apply_views_on, missing_views

Say = Callable[[str], None]


def stderr_printer(quiet: bool) -> Say:
    """Progress goes to stderr, so stdout stays clean; `quiet` silences it for cron mail."""

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    return say


class SyncError(Exception):
    """A failure with a one-line cause and the exit status the CLI reports."""

    exit_code = 1


class ConfigError(SyncError):
    """Bad options or settings."""

    exit_code = 2


class LockHeld(SyncError):
    """Another sync is writing this database."""

    exit_code = 5


class DatabaseError(SyncError):
    """The DuckDB file cannot be opened or written."""

    exit_code = 6


@dataclass
class SyncOptions:
    """Everything one run needs; the CLI fills it from flags, env and `.dlt/` config."""

    database: Path
    base_url: str
    api_key: str
    start_date: datetime | None = None
    full_refresh: bool = False
    reconcile: bool = False
    chunk_size: int = settings.BACKFILL_CHUNK_SIZE
    workers: int = settings.BACKFILL_WORKERS
    max_skip: int = settings.DEFAULT_MAX_SKIP
    client: ClientConfig = field(default_factory=ClientConfig)


@dataclass
class SyncReport:
    """What a run did, for the progress line and for tests."""

    mode: str = "incremental"
    backfill_sms: int = 0
    backfill_chunks: int = 0
    events: int = 0
    upserted: int = 0
    deleted: int = 0
    removed: int = 0
    requests: int = 0
    rate_limit_waits: int = 0
    seconds: float = 0.0
    wrote: bool = False
    views: list[str] = field(default_factory=list)


def check_database_path(database: Path) -> Path:
    """Refuse paths that cannot work, before anything is written."""
    database = database.expanduser().resolve()
    if database.stem == settings.DATASET_NAME:
        raise ConfigError(
            f"--database {database.name}: a file named like the dataset '{settings.DATASET_NAME}' "
            "makes DuckDB's table names ambiguous; choose another name, e.g. warehouse.duckdb"
        )
    if not database.parent.is_dir():
        raise ConfigError(f"--database: folder {database.parent} does not exist")
    if not os.access(database.parent, os.W_OK) or (
        database.exists() and not os.access(database, os.W_OK)
    ):
        raise ConfigError(f"--database: {database} is not writable")
    return database


def state_dir_for(database: Path) -> Path:
    """dlt's working folder for this database: beside it, so two databases never share state."""
    return database.parent / f".{database.name}.dlt"


# dlt settings that matter for speed, applied unless .dlt/config.toml or the environment sets
# them, so a cron job started outside the project behaves the same.
DLT_DEFAULTS = {
    # Extract's intermediate jsonl files are read once and deleted; gzip only costs CPU
    # (100k-SMS backfill 35.7 s -> 31.3 s; parquet files are not affected).
    "data_writer.disable_compression": "true",
}


def _apply_dlt_defaults() -> None:
    for key, value in DLT_DEFAULTS.items():
        if dlt.config.get(key) is None:
            os.environ.setdefault(key.upper().replace(".", "__"), value)


def make_pipeline(database: Path) -> dlt.Pipeline:
    """The dlt pipeline bound to `database`."""
    _apply_dlt_defaults()
    return dlt.pipeline(
        pipeline_name=settings.PIPELINE_NAME,
        pipelines_dir=str(state_dir_for(database)),
        destination=dlt.destinations.duckdb(
            DuckDbCredentials(
                str(database),
                global_config={"memory_limit": settings.DUCKDB_MEMORY_LIMIT},
            )
        ),
        dataset_name=settings.DATASET_NAME,
    )


def open_database(database: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, turning DuckDB's errors into one-line causes."""
    try:
        return duckdb.connect(str(database), read_only=read_only)
    except duckdb.Error as exc:
        raise database_error(exc, f"{database} cannot be opened") from None


def database_error(exc: duckdb.Error, subject: str) -> DatabaseError:
    """The one-line cause of a DuckDB failure on `subject` (the file, or a dlt step)."""
    if "lock" in str(exc).lower():
        return DatabaseError(
            f"{subject}: the database is open in another process (DuckDB allows one writer); "
            "close that connection or read from a copy, then rerun: the sync resumes where it "
            "stopped"
        )
    return DatabaseError(f"{subject}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def source_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """The source's persisted state (backfill plan, last change-feed check)."""
    return pipeline.state.get("sources", {}).get(settings.SOURCE_NAME, {})


def feed_start(state: dict[str, Any], now: datetime) -> datetime:
    """Where the change feed starts: the last check (else the backfill's end) minus the lookback.

    Not the newest event seen, as `dlt.sources.incremental` would keep: the actions are read
    one after another, so a later action's newer events say nothing of the changes an earlier
    action's query ran too soon to see.
    """
    plan = state.get("backfill") or {}
    marks = [parse_timestamp(plan["end"]) if plan.get("end") else now]
    if state.get("feed_checked_at"):
        marks.append(parse_timestamp(state["feed_checked_at"]))
    return max(marks) - timedelta(seconds=settings.EVENT_LOOKBACK_SECONDS)


def _horizon(now: datetime) -> datetime:
    return now - timedelta(days=settings.EVENT_RETENTION_DAYS - settings.HORIZON_SAFETY_DAYS)


def _new_plan(start: datetime, end: datetime, reconcile: bool) -> dict[str, Any]:
    end = end.replace(microsecond=0)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reconcile": reconcile,
        "created": time.time(),
        "windows": [Window(to_ms(start), to_ms(end)).to_state()] if start < end else [],
        "loaded": 0,
        "complete": False,
    }


def plan_backfill(
    state: dict[str, Any], now: datetime, options: SyncOptions, say: Say
) -> dict[str, Any] | None:
    """Decide whether this run starts a new backfill; returns its plan, or None."""
    plan = state.get("backfill")
    start = options.start_date or (
        parse_timestamp(plan["start"]) if plan else parse_timestamp(settings.DEFAULT_START_DATE)
    )
    if options.full_refresh or plan is None:
        return _new_plan(start, now, reconcile=False)
    if options.reconcile:
        return _new_plan(start, now, reconcile=True)
    if not plan["complete"]:
        if parse_timestamp(plan["end"]) < _horizon(now):
            say("The unfinished backfill is older than the event log's history; starting over.")
            return _new_plan(start, now, reconcile=True)
        return None
    checked = state.get("feed_checked_at") or plan["end"]
    if parse_timestamp(checked) < _horizon(now):
        say(
            f"Last change-feed read {checked} is beyond the event log's "
            f"{settings.EVENT_RETENTION_DAYS} days; reconciling with a full backfill."
        )
        return _new_plan(start, now, reconcile=True)
    return None


def _removed_ids(pipeline: dlt.Pipeline, plan: dict[str, Any]) -> list[str]:
    # Every SMS the reconcile read was rewritten by a load newer than the plan; older rows in
    # its date range are ones Close no longer returns.
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return []
        rows = client.execute_sql(
            f"SELECT id FROM {client.make_qualified_table_name('sms')} "
            "WHERE CAST(_dlt_load_id AS DOUBLE) < ? AND date_created >= ? AND date_created < ?",
            plan["created"],
            parse_timestamp(plan["start"]),
            parse_timestamp(plan["end"]),
        )
    return [row[0] for row in rows or []]


def run_sync(options: SyncOptions, say: Say) -> SyncReport:
    """Run one sync; raises `SyncError` or `CloseApiError` subclasses with one-line causes."""
    database = check_database_path(options.database)
    lock = filelock.FileLock(str(database) + ".lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise LockHeld(
            f"another close-sms sync is running on {database} (lock {lock.lock_file})"
        ) from None
    try:
        open_database(database).close()
        return _run_locked(database, options, say)
    finally:
        lock.release()


def _run_locked(database: Path, options: SyncOptions, say: Say) -> SyncReport:
    began = time.monotonic()
    report = SyncReport()
    client = CloseClient(options.base_url, options.api_key, options.client)
    try:
        client.me()
    except RequestRejected as exc:
        if exc.status != 404:
            raise
        # The key check is the first request: a 404 there means the URL, not the data.
        raise ConfigError(
            f"--base-url {options.base_url}: {settings.ME_ENDPOINT} is not found there "
            f"(Close's API is at {settings.DEFAULT_BASE_URL})"
        ) from None
    now = client.now()
    if options.start_date and options.start_date > now:
        raise ConfigError(
            f"--start-date {options.start_date.date()} is in the future (Close's clock: {now:%Y-%m-%d})"
        )

    pipeline = make_pipeline(database)
    if options.full_refresh:
        pipeline.drop()
        pipeline = make_pipeline(database)
    else:
        _step(pipeline.sync_destination)
    if pipeline.has_pending_data:
        # dlt's run() would load these and return without extracting anything new, which
        # would silently skip this run's backfill or change feed: finish them first.
        say("Finishing the load that an interrupted run left pending")
        _step(pipeline.normalize)
        _step(pipeline.load)
        report.wrote = True
    state = source_state(pipeline)
    new_plan = plan_backfill(state, now, options, say)
    if new_plan is not None:
        report.mode = "reconcile" if new_plan["reconcile"] else "backfill"
        say(
            f"{report.mode.capitalize()}: SMS created {new_plan['start'][:10]} .. {new_plan['end']}"
        )

    def on_page(progress: BackfillProgress, loaded: int) -> None:
        if progress.pages % 50 == 0:
            _say_backfill(say, progress, loaded, client)

    def source(**kwargs: Any) -> Any:
        return close_sms(
            client,
            chunk_size=options.chunk_size,
            workers=options.workers,
            max_skip=options.max_skip,
            on_backfill_page=on_page,
            **kwargs,
        )

    plan = new_plan or state.get("backfill")
    refresh = "drop_sources" if options.full_refresh else None
    while plan and plan["windows"]:
        if report.mode == "incremental":
            report.mode = "backfill (resumed)"
            say(f"Resuming backfill: {len(plan['windows'])} windows left")
        _step(
            pipeline.run,
            source(new_backfill=new_plan).with_resources("sms_backfill"),
            loader_file_format="parquet",
            refresh=refresh,
        )
        new_plan, refresh = None, None
        report.wrote = True
        plan = source_state(pipeline)["backfill"]
        report.backfill_chunks += 1
        report.backfill_sms = plan["loaded"]
        say(
            f"  chunk {report.backfill_chunks} loaded: {plan['loaded']:,} SMS so far, "
            f"{len(plan['windows'])} windows left, {client.stats.requests:,} requests, "
            f"{client.stats.rate_limit_waits} rate-limit waits"
        )

    if plan and plan["reconcile"] and not plan["complete"]:
        removed = _removed_ids(pipeline, plan)
        _step(
            pipeline.run,
            source(removed_ids=removed).with_resources("sms_removals"),
            loader_file_format="parquet",
        )
        report.removed = len(removed)
        report.wrote = True
        say(f"Reconcile removed {len(removed):,} SMS that Close no longer returns")

    since = feed_start(source_state(pipeline), now)
    say(f"Change feed: reading events updated since {since.isoformat()}")
    feed = FeedStats()
    _step(
        pipeline.extract,
        source(changes_since=since, feed_stats=feed).with_resources("sms_events", "sms_changes"),
        loader_file_format="parquet",
    )
    if _discard_empty_packages(pipeline):
        _step(pipeline.normalize)
        _step(pipeline.load)
        report.wrote = True
    report.events, report.upserted, report.deleted = feed.events, feed.upserted, feed.deleted

    with pipeline.sql_client() as sql:
        try:
            if report.wrote or missing_views(sql.native_connection):
                report.views = apply_views_on(sql.native_connection)
        except duckdb.Error as exc:
            raise DatabaseError(
                f"the data is loaded, but applying the views failed: {_first_line(exc)}"
            ) from None
    report.requests = client.stats.requests
    report.rate_limit_waits = client.stats.rate_limit_waits
    report.seconds = time.monotonic() - began
    return report


def _discard_empty_packages(pipeline: dlt.Pipeline) -> bool:
    """Drop the extracted packages if they hold no rows and no state; True if they are kept.

    A quiet run extracts such a package; loading it would only write dlt's bookkeeping, so the
    run would take DuckDB's write lock from notebooks for nothing.
    """
    packages = pipeline.list_extracted_load_packages()
    if any(any(pipeline.get_load_package_info(p).jobs.values()) for p in packages):
        return True
    pipeline.abort_packages()
    return False


def _say_backfill(say: Say, progress: BackfillProgress, loaded: int, client: CloseClient) -> None:
    say(
        f"  backfill: {progress.windows_done} windows done, {progress.windows_pending} pending, "
        f"{loaded:,} SMS read, {client.stats.rate_limit_waits} rate-limit waits "
        f"({client.stats.rate_limit_wait_seconds:.1f} s)"
    )


def _step(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a dlt step, surfacing the Close or database error that made it fail."""
    try:
        return function(*args, **kwargs)
    except PipelineStepFailed as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, (CloseApiError, SyncError)):
                raise cause from None
            if isinstance(cause, duckdb.Error):
                raise database_error(cause, f"DuckDB failed during {exc.step}") from None
            cause = cause.__cause__ or cause.__context__
        raise


def read_status(database: Path) -> dict[str, Any]:
    """What `close-sms status` shows: last run, feed check and lag, backfill progress, row counts."""
    database = database.expanduser().resolve()
    if not database.exists():
        raise ConfigError(f"--database: {database} does not exist; run `close-sms sync` first")
    pipeline = make_pipeline(database)
    if not pipeline.state.get("sources"):
        _step(pipeline.sync_destination)
    state = source_state(pipeline)
    plan = state.get("backfill") or {}
    schema = settings.DATASET_NAME
    connection = open_database(database, read_only=True)
    try:
        names = [
            name
            for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY table_name",
                [schema],
            ).fetchall()
        ]
        tables = {
            name: connection.execute(f'SELECT count(*) FROM {schema}."{name}"').fetchone()[0]
            for name in names
            if not name.startswith("_dlt")
        }
        last_load = None
        if "_dlt_loads" in names:
            last_load = connection.execute(
                f"SELECT max(inserted_at) FROM {schema}._dlt_loads WHERE status = 0"
            ).fetchone()[0]
    finally:
        connection.close()
    checked = state.get("feed_checked_at")
    now = datetime.now(timezone.utc)
    reference = parse_timestamp(checked) if checked else None
    since = feed_start(state, now) if plan else None
    return {
        "database": str(database),
        "last_successful_load": last_load,
        "events_read_from": since.isoformat() if since else None,
        "feed_checked_at": checked,
        "behind_seconds": (now - reference).total_seconds() if reference else None,
        "backfill_in_progress": bool(plan) and not plan.get("complete", False),
        "backfill_windows_left": len(plan.get("windows", [])),
        "backfill_range": [plan.get("start"), plan.get("end")] if plan else None,
        "backfill_sms_loaded": plan.get("loaded"),
        "tables": tables,
        "oldest_pending_window": from_ms(min(w[0] for w in plan["windows"])).isoformat()
        if plan.get("windows")
        else None,
    }
