"""Every failure close-sms reports, each with its one-line cause and its exit status.

This is the one table of exit statuses: the CLI exits with `exit_code` of what was raised.
Messages never hold a secret.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_OK = 0
# `close-sms status --max-lag`: the change feed was read too long ago, or the last run failed.
EXIT_STALE = 8
# `close-sms sync`: the SMS are loaded, but a context table failed (it keeps its last rows, and
# the next run reads it again).
EXIT_CONTEXT_FAILED = 9
# 128 + the signal's number, as shells report a job a signal stopped: SIGINT (Ctrl-C), and
# SIGTERM, which cron's `timeout`, systemd, `docker stop` and Kubernetes send.
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def where_to_set(name: str, secret: bool = False) -> str:
    """Where a user sets the setting `name`: the one wording of every message's hint.

    dlt's ways only: the source runs without the command too. The command's messages add its
    own way (a flag) where it has one.
    """
    file = "secrets.toml" if secret else "config.toml"
    return f"SOURCES__CLOSE_SMS__{name.upper()} or {name} under [sources.close_sms] in .dlt/{file}"


# How a message words loading everything again: dlt's refresh, which `--full-refresh` applies.
FULL_RELOAD = 'pipeline.run(..., refresh="drop_sources")'


# What `pip install 'close-sms[cli]'` adds to the bare package: the emulator's server, the
# report's charts and the progress bar.
CLI_EXTRA_MODULES = frozenset({"close_api_emulator", "waitress", "werkzeug", "plotly", "rich"})
# The modules each optional extra installs; `[mcp]` brings the MCP SDK of `close-sms mcp`.
EXTRA_MODULES = {"cli": CLI_EXTRA_MODULES, "mcp": frozenset({"mcp", "mcp_types"})}


class SyncError(Exception):
    """A failure with a one-line cause; exit 1 unless a subclass says otherwise."""

    exit_code = 1
    hint = ""


class ConfigError(SyncError):
    """A bad option or setting; the message names it."""

    exit_code = 2


class CloseApiError(SyncError):
    """Talking to Close failed; the message never holds the API key."""

    exit_code = 4


class AuthError(CloseApiError):
    """Close rejected the key (401/403); `status` is which."""

    exit_code = 3
    hint = f" (check the key: {where_to_set('api_key', secret=True)})"

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class UnreachableError(CloseApiError):
    """Close's host could not be reached, or kept failing after every retry."""

    hint = f" (check the network, and base_url: {where_to_set('base_url')})"


class ApiContractError(CloseApiError):
    """Close broke an assumption the sync relies on (an ignored filter, an unordered page).

    Reading on could lose SMS silently, so the run stops and commits nothing.
    """

    hint = " (nothing from this step was committed; see the README's reliability section)"


class FilterIgnored(ApiContractError):
    """Close answered a query by `id__in` with objects that were not asked for."""


class LockHeld(SyncError):
    """Another sync is writing the same destination and dataset."""

    exit_code = 5


class LockLost(SyncError):
    """The writer lock a process held ended without it (PostgreSQL: its session did): another
    sync may be writing now, so this one stops rather than write beside it."""

    exit_code = 6


class MassDeleteRefused(SyncError):
    """A run would remove a large share of the table without `deleted` events behind it."""

    exit_code = 7
    hint = (
        f" (if Close really lost them, allow it for one run: {where_to_set('allow_mass_delete')})"
    )


class DatabaseError(SyncError):
    """The destination cannot be opened, read or written."""

    exit_code = 6


class Terminated(KeyboardInterrupt):
    """SIGTERM: the run stops as on Ctrl-C, so whatever cleans up after a KeyboardInterrupt
    (dlt's steps, the lock, the ledger) does so here too."""

    # Set by the code that reports the run once it has caught one. Python drops an exception
    # that a signal raises inside a finalizer (`__del__`): until then the CLI raises it again.
    caught = threading.Event()

    def __init__(self) -> None:
        super().__init__("interrupted by SIGTERM")


# Python handles signals in the main thread, but the kernel may deliver one to any thread; a
# main thread then blocked in a long sleep or wait hears it only once that ends. Long waits are
# cut into slices this long, so that a stop is heard within one.
SIGNAL_SLICE_SECONDS = 0.2


def sleep_heeding_signals(seconds: float) -> None:
    """`time.sleep(seconds)`, in slices (see `SIGNAL_SLICE_SECONDS`)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, SIGNAL_SLICE_SECONDS))


def wait_heeding_signals(event: threading.Event, seconds: float) -> bool:
    """`event.wait(seconds)`, in slices (see `SIGNAL_SLICE_SECONDS`); whether it was set."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if event.wait(min(left, SIGNAL_SLICE_SECONDS)):
            return True
    return event.is_set()


def interruption(signal_number: int) -> KeyboardInterrupt:
    """The interrupt of a run stopped by `signal_number` (dlt's steps report it as a number)."""
    return Terminated() if signal_number == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def needs_cli_extra(feature: str, extra: str = "cli") -> Iterator[None]:
    """Imports in the block that miss a module of `extra` (`[cli]`) raise one `ConfigError`."""
    try:
        yield
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        if package not in EXTRA_MODULES[extra]:
            raise
        raise ConfigError(
            f"{feature} needs {package}, which is not installed: pip install 'close-sms[{extra}]'"
        ) from None


def exit_status(exc: BaseException | None) -> int:
    """The exit status of a command that raised `exc` (None: it succeeded)."""
    if exc is None:
        return EXIT_OK
    if isinstance(exc, SyncError):
        return exc.exit_code
    if isinstance(exc, Exception):
        return SyncError.exit_code
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it (`__cause__`, else `__context__`), each once: a chain may loop
    back on itself, as when a handler raises the exception it caught again."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def one_line(exc: BaseException) -> str:
    """The first line of `exc`'s message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
