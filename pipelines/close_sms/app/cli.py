"""The `close-sms` command: sync, follow, webhook, status, compact, demo, views, report and the MCP server."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import (
    EXIT_CONTEXT_FAILED,
    EXIT_OK,
    EXIT_STALE,
    Terminated,
    exit_status,
    needs_cli_extra,
    one_line,
)
from ..source import settings
from ..warehouse import DEFAULT_DATABASE
from .invocation import in_command_words
from .stopping import leave, sigterm_interrupts, sigterm_received

if TYPE_CHECKING:
    from .config import CommandSettings

DEMO_DATABASE = "close_sms_demo.duckdb"
# The garbage collector's thresholds in `close-sms` processes (Python's default: 700, 10, 10):
# a young-generation pass every 50,000 allocations instead of 700, and the older generations a
# little less often, since a backfill's rows in flight survive pass after pass. 100k backfill
# 10.2 s -> 9.1 s (9.0 s with the collector off), peak RSS unchanged; 100,000 gave the same.
GC_THRESHOLDS = (50_000, 20, 20)
# Bits no file a `close-sms` command creates grants: the database, its reader copy, the lock and
# dlt's working files hold raw SMS, so they are their owner's alone unless shared on purpose
# (docs/operations.md). Files that exist keep their mode.
PRIVATE_UMASK = 0o077


def _warehouse(
    args: argparse.Namespace,
    command_settings: CommandSettings,
    say: Callable[[str], None] | None = None,
    with_reader_copy: bool = False,
) -> Any:
    from ..warehouse.destination import Warehouse
    from .runner import stderr_printer

    return Warehouse.configure(
        args.destination,
        args.database,
        lock_wait=command_settings.lock_wait,
        reader_copy=command_settings.reader_copy if with_reader_copy else None,
        on_lock_wait=say or stderr_printer(quiet=False),
    )


def _source_args(args: argparse.Namespace) -> dict[str, Any]:
    """What the command's flags and CLOSE_API_KEY give the source."""
    source_args: dict[str, Any] = {}
    if not os.environ.get("SOURCES__CLOSE_SMS__API_KEY") and os.environ.get("CLOSE_API_KEY"):
        source_args["api_key"] = os.environ["CLOSE_API_KEY"]
    if args.base_url:
        source_args["base_url"] = args.base_url
    if args.start_date:
        source_args["start_date"] = args.start_date
    if getattr(args, "allow_mass_delete", False):
        source_args["allow_mass_delete"] = True
    return source_args


def cmd_sync(args: argparse.Namespace) -> int:
    from .config import CommandSettings
    from .progress import backfill_progress
    from .runner import SyncOptions, run_sync, stderr_printer

    source_args = _source_args(args)
    command_settings = CommandSettings.read()
    say = stderr_printer(args.quiet)
    warehouse = _warehouse(args, command_settings, say, with_reader_copy=True)
    with backfill_progress(args.quiet, command_settings.progress_interval) as on_page:
        options = SyncOptions(
            warehouse=warehouse,
            full_refresh=args.full_refresh,
            reconcile=args.reconcile,
            chunk_size=command_settings.backfill_chunk_size,
            source_args=source_args,
            alerts=command_settings.alerts(),
            on_page=on_page,
        )
        report = run_sync(options, say)
    say(
        f"Sync done ({report.mode}) in {report.seconds:.1f} s: {report.backfill_sms:,} SMS backfilled, "
        f"{report.events:,} events, {report.removed:,} removed by reconcile, "
        f"{report.requests:,} requests, {report.rate_limit_waits} rate-limit waits, "
        f"{report.skipped_positions:,} unlistable positions stepped past, "
        f"{report.unreadable:,} SMS unreadable (HTTP 403); "
        + (
            (f"{len(report.views)} views applied" if report.views else "views current")
            if report.wrote
            else "nothing new to write"
        )
        + (f"; {report.context_error}" if report.context_error else "")
    )
    if report.context_error:
        # Said even with --quiet: cron mail should carry it.
        print(f"close-sms: error: {report.context_error}", file=sys.stderr, flush=True)
        return EXIT_CONTEXT_FAILED
    return EXIT_OK


def cmd_follow(args: argparse.Namespace) -> int:
    from .config import CommandSettings, close_client
    from .follow import QuietProbe, follow
    from .progress import backfill_progress
    from .runner import SyncOptions, stderr_printer

    source_args = _source_args(args)
    command_settings = CommandSettings.read()
    say = stderr_printer(args.quiet)
    warehouse = _warehouse(args, command_settings, say, with_reader_copy=True)
    doorbell = command_settings.doorbell()
    watch = None
    if doorbell is not None:
        from .webhooks import subscription_watch

        watch = subscription_watch(args.base_url, command_settings, warehouse, say)
    try:
        if doorbell is not None:
            doorbell.start()
        say(
            f"Following {warehouse.describe()}: a cycle every {command_settings.follow_interval:g} s"
            + (f", and at once on Close's webhooks at {doorbell.url}" if doorbell else "")
        )
        with backfill_progress(args.quiet, command_settings.progress_interval) as on_page:
            options = SyncOptions(
                warehouse=warehouse,
                chunk_size=command_settings.backfill_chunk_size,
                source_args=source_args,
                alerts=command_settings.alerts(),
                on_page=on_page,
            )
            # No retry: a probe that fails runs the cycle, which has its own.
            probe = QuietProbe(close_client(args.base_url, retries=0), say)
            follow(options, say, command_settings.follow_interval, doorbell, watch, probe)
    finally:
        if doorbell is not None:
            doorbell.stop()
    return EXIT_OK


def cmd_webhook(args: argparse.Namespace) -> int:
    from .webhooks import cmd_webhook as run

    return run(args)


def _add_webhook_command(command: Any) -> None:
    from .webhooks import add_webhook_command

    add_webhook_command(command)


def cmd_status(args: argparse.Namespace) -> int:
    from ..warehouse.status import read_status
    from .config import CommandSettings
    from .runner import dlt_errors
    from .subscription_watch import read_subscription

    max_lag = _max_lag(args.max_lag)
    with dlt_errors():
        warehouse = _warehouse(args, CommandSettings.read())
        status = read_status(warehouse)
    status["webhook_subscription"] = read_subscription(warehouse.working_dir)
    if max_lag is not None:
        status["check"] = _freshness(status, max_lag)
    if args.json:
        print(json.dumps(status, default=str, indent=2))
    else:
        _print_status(status)
    if max_lag is None:
        return EXIT_OK
    if not args.json:
        print(status["check"]["reason"])
    return EXIT_OK if status["check"]["ok"] else EXIT_STALE


def _max_lag(value: str | None) -> float | None:
    from ..errors import ConfigError
    from .alerts import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"--max-lag: {exc}") from None


def _freshness(status: dict[str, Any], max_lag: float) -> dict[str, Any]:
    """`status --max-lag`'s verdict: ok, and one line saying why."""
    from ..warehouse.ledger import SyncRun
    from .alerts import find_problem, format_duration, stale_context

    last = status["last_run"] and SyncRun.from_row(status["last_run"])
    behind = status["behind_seconds"]
    limit = format_duration(max_lag)
    problem = find_problem(last, behind, max_lag) or stale_context(
        status["context_tables"], max_lag
    )
    if problem is None and behind is None:
        problem = "the change feed was never read"
    if problem is not None:
        return {"ok": False, "reason": f"STALE: {problem} (max lag {limit})"}
    return {
        "ok": True,
        "reason": f"OK: the change feed was read {format_duration(behind)} ago (max lag {limit}); "
        + (f"the last sync ended {last.outcome}" if last else "no sync in the ledger yet"),
    }


def _print_status(status: dict[str, Any]) -> None:
    from .alerts import format_duration

    behind = status["behind_seconds"]
    print(f"warehouse:            {status['warehouse']}")
    print(f"last successful load: {status['last_successful_load'] or 'never'}")
    print(f"change feed read at:  {status['feed_read_at'] or 'never'}")
    print(f"behind now by:        {format_duration(behind) if behind is not None else 'unknown'}")
    print(f"next run reads from:  {status['events_read_from'] or 'the whole event log'}")
    if status["backfill_in_progress"]:
        print(
            f"backfill:             in progress, {status['backfill_windows_left']} windows left, "
            f"{status['backfill_sms_loaded'] or 0:,} SMS loaded"
        )
    elif status["backfill_start"] is None:
        print("backfill:             not started")
    else:
        print("backfill:             complete")
    for label, key in (("last run:", "last_run"), ("last success:", "last_successful_run")):
        print(f"{label:<22}{_run_line(status[key])}")
    subscription = status["webhook_subscription"]
    if subscription is not None:
        print(
            f"webhook subscription: {subscription['id']} {subscription['status']} "
            f"(checked {subscription['checked_at']})"
        )
    for table, age in status["context_tables"].items():
        print(f"{table + ' read:':<22}{format_duration(age['age_seconds'])} ago ({age['read_at']})")
    for table, rows in status["tables"].items():
        print(f"rows in {table + ':':<14}{rows:>12,}")


def _run_line(run: dict[str, Any] | None) -> str:
    if run is None:
        return "none in the ledger"
    line = f"{run['ended_at']} {run['outcome']} (exit {run['exit_status']}, {run['mode'] or 'no mode'})"
    return line + (f": {run['error']}" if run["error"] else "")


def cmd_compact(args: argparse.Namespace) -> int:
    from ..warehouse.compact import compact_database
    from ..warehouse.lock import writer_lock
    from ..warehouse.reader_copy import publish_reader_copy
    from .config import CommandSettings
    from .runner import dlt_errors

    warehouse = _warehouse(args, CommandSettings.read(), with_reader_copy=True)
    with dlt_errors(warehouse), writer_lock(warehouse):
        size = compact_database(warehouse)
        published = publish_reader_copy(warehouse, changed=True)
    print(
        f"Compacted {warehouse.database}: {size.before:,} -> {size.after:,} bytes"
        + (f"; reader copy published: {warehouse.reader_copy}" if published else "")
    )
    return EXIT_OK


def cmd_views(args: argparse.Namespace) -> int:
    from ..warehouse.views import apply_views
    from .config import CommandSettings
    from .runner import dlt_errors

    with dlt_errors(), _warehouse(args, CommandSettings.read()).sql_client() as sql:
        names = apply_views(sql)
    print(f"Applied {len(names)} views: {', '.join(names)}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from ..warehouse.status import require_warehouse
    from .config import CommandSettings
    from .report import write_report
    from .runner import dlt_errors

    warehouse = _warehouse(args, CommandSettings.read())
    require_warehouse(warehouse)
    with dlt_errors(), warehouse.sql_client(read_only=True) as sql:
        out = write_report(sql, Path(args.out))
    print(f"Report written to {out}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    with needs_cli_extra("close-sms demo"):
        from .demo import run_demo

    run_demo(Path(args.database), sms=args.sms, seed=args.seed, quiet=args.quiet)
    return EXIT_OK


def cmd_mcp(args: argparse.Namespace) -> int:
    from .mcp.server import serve
    from .mcp.worker import Limits

    limits = Limits(
        memory_limit_mb=args.memory_limit,
        threads=args.threads,
        max_rows=args.max_rows,
        max_bytes=args.max_bytes,
        max_cell_chars=args.max_cell_chars,
    )
    serve(Path(args.database), limits, timeout=args.timeout)
    return EXIT_OK


def _versions() -> str:
    """close-sms's version and the dlt and DuckDB it runs with, as installed."""
    found = []
    for name in ("close-sms", "dlt", "duckdb"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _add_warehouse(command: Any) -> None:
    command.add_argument(
        "--destination",
        default="duckdb",
        help="dlt destination name (default duckdb); others are configured the dlt way, "
        "e.g. DESTINATION__POSTGRES__CREDENTIALS",
    )
    command.add_argument(
        "--database", help=f"DuckDB file, duckdb only (default {DEFAULT_DATABASE})"
    )


def _add_syncing(command: Any) -> None:
    command.add_argument(
        "--base-url", help=f"Close API base URL (default {settings.DEFAULT_BASE_URL})"
    )
    _add_warehouse(command)
    command.add_argument("--start-date", help="lower bound (YYYY-MM-DD) of the first backfill")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="close-sms",
        description="Sync Close CRM SMS activities into DuckDB or any dlt destination.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and dlt's logs")
    parser.add_argument("--version", action="version", version=_versions())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help_text: str,
        configures_dlt: bool = True,
    ) -> Any:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        command.set_defaults(handler=handler, configures_dlt=configures_dlt)
        return command

    sync = add("sync", cmd_sync, "Run one incremental sync into the warehouse.")
    _add_syncing(sync)
    sync.add_argument("--full-refresh", action="store_true", help="drop everything and backfill")
    sync.add_argument(
        "--reconcile", action="store_true", help="backfill again and delete what Close lost"
    )
    sync.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="let this run remove more than max_delete_share of the SMS without deleted events",
    )
    sync.add_argument("--quiet", action="store_true", help="print nothing on success")

    follow = add(
        "follow",
        cmd_follow,
        "Sync every follow_interval seconds (and on Close's webhooks) until stopped.",
    )
    _add_syncing(follow)
    follow.add_argument("--quiet", action="store_true", help="print only warnings and errors")

    webhook = add(
        "webhook", cmd_webhook, "Create, list or delete the Close webhook subscription of follow."
    )
    _add_webhook_command(webhook)

    status = add(
        "status", cmd_status, "Show the change feed's last check, backfill progress and row counts."
    )
    _add_warehouse(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--max-lag",
        metavar="DURATION",
        help=f"exit {EXIT_STALE} if the change feed was read longer ago than this (90s, 30m, "
        "2h, 1d, PT30M) or the last sync failed; print one line saying why",
    )

    compact = add(
        "compact",
        cmd_compact,
        "Rewrite the DuckDB file and its reader copy without the bytes of deleted rows.",
    )
    compact.add_argument("--database", help=f"the DuckDB file (default {DEFAULT_DATABASE})")
    compact.set_defaults(destination="duckdb")

    demo = add("demo", cmd_demo, "Sync a seeded local emulator account, change it, sync again.")
    demo.add_argument("--database", default=DEMO_DATABASE)
    demo.add_argument("--sms", type=_positive_int, default=10_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--quiet", action="store_true")

    views = add("views", cmd_views, "Create or replace the SQL views in sql/.")
    _add_warehouse(views)

    report = add("report", cmd_report, "Write a self-contained HTML report.")
    _add_warehouse(report)
    report.add_argument("--out", default="report.html")

    # The MCP server reads no dlt setting or secret: a stranger's query must reach none.
    mcp = add(
        "mcp",
        cmd_mcp,
        "Answer MCP clients over stdio from a DuckDB file, read-only.",
        configures_dlt=False,
    )
    _add_mcp_arguments(mcp)
    return parser


def _add_mcp_arguments(mcp: argparse.ArgumentParser) -> None:
    """`close-sms mcp`'s bounds: every answer and call is limited."""
    mcp.add_argument(
        "--database", required=True, help="the DuckDB file to read, best the reader copy"
    )
    mcp.add_argument("--max-rows", type=_positive_int, default=1000, help="rows per answer")
    mcp.add_argument(
        "--max-bytes", type=_positive_int, default=1_000_000, help="bytes of rows per answer"
    )
    mcp.add_argument(
        "--max-cell-chars", type=_positive_int, default=2000, help="characters per cell"
    )
    mcp.add_argument("--timeout", type=_positive_int, default=30, help="seconds per call")
    mcp.add_argument(
        "--memory-limit", type=_positive_int, default=256, help="DuckDB's memory per call, in MB"
    )
    mcp.add_argument("--threads", type=_positive_int, default=1, help="DuckDB's threads per call")


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `close-sms` console script."""
    args = build_parser().parse_args(argv)
    try:
        with sigterm_interrupts(), private_files():
            if args.configures_dlt:
                _configure_dlt(args.debug)
                _warn_of_unknown_settings()
            return args.handler(args)
    except KeyboardInterrupt as exc:
        print(
            f"close-sms: {exc if isinstance(exc, Terminated) else 'interrupted'}", file=sys.stderr
        )
        return exit_status(exc)
    except Exception as raised:
        if args.debug:
            traceback.print_exc()
        from ..errors import SyncError
        from .config import unreadable_config_file

        exc = unreadable_config_file(raised) or raised

        if not isinstance(exc, SyncError):
            print(
                f"close-sms: error: unexpected {type(exc).__name__}: {one_line(exc)}"
                + ("" if args.debug else " (rerun with --debug for details)"),
                file=sys.stderr,
            )
        else:
            message = in_command_words(one_line(exc) + exc.hint, args)
            print(f"close-sms: error: {message}", file=sys.stderr)
        return exit_status(exc)


@contextmanager
def private_files() -> Iterator[None]:
    """In the block, new files and folders are their owner's alone (`PRIVATE_UMASK`), or
    stricter if the process's umask already was."""
    previous = os.umask(PRIVATE_UMASK)
    os.umask(previous | PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def _configure_dlt(debug: bool) -> None:
    """dlt's runtime settings of the command: its logs only with --debug (not even its errors,
    whose tracebacks repeat what the command says in one line), and signals raised at once
    (telemetry is off before dlt is imported: app/__init__.py).

    Set in dlt's in-memory config, which .dlt/config.toml fills: the environment variable
    RUNTIME__LOG_LEVEL still overrides it.
    """
    import dlt

    dlt.config["runtime.log_level"] = "INFO" if debug else "CRITICAL"
    # dlt set its logger up when imported; this applies the settings above to it.
    dlt.current.run_context().initialize_runtime()
    # dlt defers SIGINT and SIGTERM during normalize and load, and forgets them if the step
    # ends with nothing left to do; raised at once, they stop the run (its steps resume).
    dlt.config["runtime.intercept_signals"] = False


def _warn_of_unknown_settings() -> None:
    from .config import known_settings, unknown_settings

    for warning in unknown_settings(known_settings()):
        print(f"close-sms: warning: {warning}", file=sys.stderr)


def entry() -> NoReturn:
    """The console script: `main` in a process whose garbage collector is tuned for the sync.

    A backfill keeps tens of thousands of rows in flight, which Python's default (a collection
    every 700 allocations) scans over and over (see GC_THRESHOLDS). At exit,
    the interpreter's last collection walks every object dlt's imports made (0.16 s of a 0.98 s
    cron run that found nothing new), which the operating system frees anyway; objects in
    reference cycles then go without their finalizers, and `main` has closed every connection
    by then. Not in `main`, which may run in a process that goes on.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    status = main()
    if sigterm_received():
        # Stopped: recorded and closed, it leaves without the interpreter's shutdown (`leave`).
        leave(status)
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    entry()
