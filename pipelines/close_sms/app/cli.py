"""The `close-sms` command: sync, status, demo, views, report and the local emulator."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from . import settings

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_CONFIG = 2
EXIT_AUTH = 3
EXIT_API = 4
EXIT_LOCKED = 5
EXIT_DATABASE = 6
EXIT_INTERRUPTED = 130


def _config_value(key: str, default: Any = None) -> Any:
    """A setting of `[sources.close_sms]`, resolved the dlt way (env vars, then .dlt/*.toml)."""
    import dlt

    value = dlt.config.get(f"sources.{settings.SOURCE_NAME}.{key}")
    return default if value is None else value


def _positive(key: str, default: float, kind: type[int] | type[float] = int) -> Any:
    """A positive number setting, refused with the setting's name when it is not one."""
    from .runner import ConfigError

    value = _config_value(key, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ConfigError(
            f"setting {key} = {value!r} is not a positive number "
            f"(SOURCES__CLOSE_SMS__{key.upper()} or [sources.close_sms] in .dlt/config.toml)"
        )
    return number


def _api_key() -> str | None:
    import dlt

    return (
        os.environ.get("SOURCES__CLOSE_SMS__API_KEY")
        or os.environ.get("CLOSE_API_KEY")
        or dlt.secrets.get(f"sources.{settings.SOURCE_NAME}.api_key")
    )


def _parse_start_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    from .runner import ConfigError
    from .strategies import parse_timestamp

    try:
        return parse_timestamp(value)
    except ValueError:
        raise ConfigError(f"--start-date {value!r} is not a date (use YYYY-MM-DD)") from None


def _checked_base_url(value: str) -> str:
    """The base URL, refused with a clear cause when it cannot be an HTTP(S) URL."""
    from urllib.parse import urlparse

    from .runner import ConfigError

    parsed = urlparse(value.strip())
    host = parsed.hostname or ""
    if (
        parsed.scheme not in ("http", "https")
        or not host
        or any(c.isspace() for c in value.strip())
    ):
        raise ConfigError(
            f"--base-url {value!r} is not an http(s) URL "
            "(set --base-url or SOURCES__CLOSE_SMS__BASE_URL, e.g. https://api.close.com/api/v1)"
        )
    return value.strip()


def cmd_sync(args: argparse.Namespace) -> int:
    from .client import ClientConfig
    from .runner import ConfigError, SyncOptions, run_sync, stderr_printer

    api_key = _api_key()
    if not api_key:
        raise ConfigError(
            "no Close API key: set SOURCES__CLOSE_SMS__API_KEY or CLOSE_API_KEY, "
            "or api_key under [sources.close_sms] in .dlt/secrets.toml"
        )
    say = stderr_printer(args.quiet)
    options = SyncOptions(
        database=Path(args.database),
        base_url=_checked_base_url(
            args.base_url or _config_value("base_url", settings.DEFAULT_BASE_URL)
        ),
        api_key=api_key,
        start_date=_parse_start_date(args.start_date or _config_value("start_date")),
        full_refresh=args.full_refresh,
        reconcile=args.reconcile,
        chunk_size=_positive("backfill_chunk_size", settings.BACKFILL_CHUNK_SIZE),
        workers=_positive("backfill_workers", settings.BACKFILL_WORKERS),
        max_skip=_positive("max_skip", settings.DEFAULT_MAX_SKIP),
        client=ClientConfig(
            read_timeout=_positive("read_timeout", settings.READ_TIMEOUT, float),
            max_retries=_positive("max_retries", settings.MAX_RETRIES),
            backoff_max=_positive("backoff_max", settings.BACKOFF_MAX_SECONDS, float),
            on_wait=lambda reason, seconds: (
                say(f"  waiting {seconds:.1f} s ({reason})") if seconds >= 5 else None
            ),
        ),
    )
    report = run_sync(options, say)
    say(
        f"Sync done ({report.mode}) in {report.seconds:.1f} s: {report.backfill_sms:,} SMS backfilled, "
        f"{report.events:,} events, {report.removed:,} removed by reconcile, "
        f"{report.requests:,} requests, {report.rate_limit_waits} rate-limit waits; "
        + (f"{len(report.views)} views applied" if report.wrote else "nothing new to write")
    )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .runner import read_status

    status = read_status(Path(args.database))
    if args.json:
        print(json.dumps(status, default=str, indent=2))
        return EXIT_OK
    behind = status["behind_seconds"]
    print(f"database:             {status['database']}")
    print(f"last successful load: {status['last_successful_load'] or 'never'}")
    print(f"change feed read at:  {status['feed_checked_at'] or 'never'}")
    print(f"behind now by:        {_duration(behind) if behind is not None else 'unknown'}")
    print(f"next run reads from:  {status['events_read_from'] or 'the whole event log'}")
    if status["backfill_in_progress"]:
        print(
            f"backfill:             in progress, {status['backfill_windows_left']} windows left, "
            f"{status['backfill_sms_loaded'] or 0:,} SMS loaded"
        )
    else:
        print("backfill:             complete")
    for table, rows in status["tables"].items():
        print(f"rows in {table + ':':<14}{rows:>12,}")
    return EXIT_OK


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def cmd_views(args: argparse.Namespace) -> int:
    from .runner import check_database_path, open_database
    from .views import apply_views_on

    connection = open_database(check_database_path(Path(args.database)))
    try:
        names = apply_views_on(connection)
    finally:
        connection.close()
    print(f"Applied {len(names)} views: {', '.join(names)}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    out = write_report(Path(args.database), Path(args.out))
    print(f"Report written to {out}")
    return EXIT_OK


def cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import serve

    serve(port=args.port, sms=args.sms, seed=args.seed, rps=args.rps, latency_ms=args.latency_ms)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.database), sms=args.sms, seed=args.seed, quiet=args.quiet)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="close-sms", description="Sync Close CRM SMS activities into DuckDB."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and dlt's logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> Any:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        command.set_defaults(handler=handler)
        return command

    sync = add("sync", cmd_sync, "Run one incremental sync into the DuckDB file.")
    sync.add_argument(
        "--base-url", help=f"Close API base URL (default {settings.DEFAULT_BASE_URL})"
    )
    sync.add_argument("--database", default=settings.DEFAULT_DATABASE, help="DuckDB file")
    sync.add_argument("--start-date", help="lower bound (YYYY-MM-DD) of the first backfill")
    sync.add_argument("--full-refresh", action="store_true", help="drop everything and backfill")
    sync.add_argument(
        "--reconcile", action="store_true", help="backfill again and delete what Close lost"
    )
    sync.add_argument("--quiet", action="store_true", help="print nothing on success")

    status = add(
        "status", cmd_status, "Show the change feed's last check, backfill progress and row counts."
    )
    status.add_argument("--database", default=settings.DEFAULT_DATABASE)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    demo = add("demo", cmd_demo, "Sync a seeded local emulator account, change it, sync again.")
    demo.add_argument("--database", default=settings.DEMO_DATABASE)
    demo.add_argument("--sms", type=int, default=10_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--quiet", action="store_true")

    views = add("views", cmd_views, "Create or replace the SQL views in sql/.")
    views.add_argument("--database", default=settings.DEFAULT_DATABASE)

    report = add("report", cmd_report, "Write a self-contained HTML report.")
    report.add_argument("--database", default=settings.DEFAULT_DATABASE)
    report.add_argument("--out", default="report.html")

    emulator = add("emulator", cmd_emulator, "Serve a local Close API emulator on 127.0.0.1.")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.add_argument("--sms", type=int, default=10_000)
    emulator.add_argument("--seed", type=int, default=7)
    emulator.add_argument("--rps", type=float, default=None, help="requests/s per key")
    emulator.add_argument("--latency-ms", type=int, default=0)
    return parser


def _exit_code(exc: BaseException) -> int:
    from .client import AuthError, CloseApiError
    from .runner import SyncError

    if isinstance(exc, SyncError):
        return exc.exit_code
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, CloseApiError):
        return EXIT_API
    return EXIT_UNEXPECTED


def _hint(exc: BaseException) -> str:
    from .client import AuthError, UnreachableError

    if isinstance(exc, AuthError):
        return " (check SOURCES__CLOSE_SMS__API_KEY / CLOSE_API_KEY)"
    if isinstance(exc, UnreachableError):
        return " (check --base-url / SOURCES__CLOSE_SMS__BASE_URL and the network)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `close-sms` console script."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "INFO" if args.debug else "ERROR")
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("close-sms: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        code = _exit_code(exc)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if code == EXIT_UNEXPECTED:
            message = f"unexpected {type(exc).__name__}: {message} (rerun with --debug for details)"
        print(f"close-sms: error: {message}{_hint(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
