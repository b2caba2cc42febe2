"""How a `close-sms` run stops on SIGTERM: raised where that is safe, with nothing left running.

SIGTERM (cron's `timeout`, systemd, `docker stop`, Kubernetes) raises `Terminated` in the main
thread as Ctrl-C raises KeyboardInterrupt, so whatever cleans up after one does so here too;
except where an exception would break what comes after, and there the signal waits until the
thread has left that code (`uninterruptible`):

* DuckDB's client. DuckDB's Python client runs signal handlers while it waits for a statement,
  and when one raises it aborts the statement with a RuntimeError of its own ("Query
  interrupted"): the Terminated is lost (the run fails with exit 6), and a statement so aborted
  on a connection just opened leaves DuckDB's database instance half closed, so that the
  process's next open of the file spins forever inside DuckDB
  (`DBInstanceCache::GetInstanceInternal`, DuckDB 1.5). Between its DuckDB calls, dlt's
  connection pool keeps counts that an exception would leave half updated.
* dlt's container, whose context locks (shared with dlt's load workers) an exception between
  their acquire and the `try` that releases them would leave held.
* dlt's package storage, and our removal of loaded packages: files that move or go together.
  Normalize renames the package it made into place and then deletes the extracted one; stopped
  in between, the leftover is normalized again by every later run, which then fails (exit 6,
  "Directory not empty"; `warehouse.restage.drop_normalized_extracts` now repairs it).
* imports: C code an import runs (numpy's, pandas') may swallow the exception, and the run went
  on for seconds before the signal was raised again.

dlt would defer signals itself during normalize and load (`runtime.intercept_signals`), but
forgets one if the step ends with nothing left to do; the command turns that off.

A SIGTERM also waits while a run writes its ledger row (`sigterm_held`), which it would cut
short. A run stopped (or failed) waits for dlt's load workers, which finish the jobs they
started, and closes what they leave open (`settled`), before that row is written and it exits.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any, NoReturn

from dlt.common.configuration.container import Container

from ..errors import Terminated, exception_chain
from ..source.sms.prefetch import close_parked
from ..warehouse.destination import Warehouse
from ..warehouse.duckdb_wait import close_open_pools

# A signal waits while the main thread's innermost frame is code of these modules (not while they
# call out: the lock wait of `warehouse.duckdb_wait` sleeps in code of its own): DuckDB's client
# and dlt's count of the connections it lent out, dlt's container's locks.
UNCUT_CALL_MODULES = (
    "duckdb",
    "dlt.destinations.impl.duckdb",
    "dlt.destinations.sql_client",
    "dlt.destinations.job_client_impl",
    "dlt.common.configuration.container",
)
# A signal waits while any frame of the main thread is code of these modules: files that move or
# go together, imports.
UNCUT_STEP_MODULES = (
    "dlt.common.storages",
    "close_sms.warehouse.load_files",
    "importlib._bootstrap",
    "importlib._bootstrap_external",
)
# How often a SIGTERM that waits for the main thread to leave such code is tried again.
RETRY_SECONDS = 0.05
# A raised Terminated not caught by then was lost: raised again. Longer than dlt's load waits for
# its workers (2 s), so that a raise again never cuts that wait short. One that Python dropped
# (raised in a finalizer or a weakref callback) is raised again at once.
TERMINATE_AGAIN_SECONDS = 3.0
# How long a stopped run waits for dlt's load workers to finish the jobs they started.
SETTLE_SECONDS = 5.0

_received = threading.Event()
# How many `sigterm_held` blocks the main thread is in.
_held = [0]


def sigterm_received() -> bool:
    """Whether a SIGTERM arrived in a `sigterm_interrupts` block of this process."""
    return _received.is_set()


def leave(status: int) -> NoReturn:
    """End the process at once with `status`, its output flushed: for a stopped run, whose row
    is written and whose warehouse is closed. The interpreter's shutdown would wait for the
    backfill reader's requests in flight (a rate-limit wait, a request's timeout), and tear
    modules down under daemon threads still running."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def uninterruptible(frame: FrameType) -> bool:
    """Whether an exception raised at `frame`, the main thread's innermost one when a signal is
    handled, would cut short what must not be: a DuckDB call or the bookkeeping around it, a
    lock's, files that move together, an import (see the module's docstring)."""
    if _of(frame, UNCUT_CALL_MODULES):
        return True
    caller: FrameType | None = frame
    while caller is not None:
        if _of(caller, UNCUT_STEP_MODULES):
            return True
        caller = caller.f_back
    return False


def _of(frame: FrameType, modules: tuple[str, ...]) -> bool:
    module = str(frame.f_globals.get("__name__", ""))
    return any(module == name or module.startswith(f"{name}.") for name in modules)


class _Stop:
    """The SIGTERM handler of one `sigterm_interrupts` block, and its thread raising again."""

    def __init__(self, unraisable: Callable[[Any], object]) -> None:
        self.previous_unraisable = unraisable
        self.wake = threading.Event()
        self.ended = threading.Event()
        # Received and not raised yet (the main thread was where it must not be, or held it),
        # or raised and dropped.
        self.waiting = False
        self.raised_at: float | None = None
        # Started here, not in the handler: a handler runs between any two bytecodes of the main
        # thread, maybe while it holds the lock that starting a thread takes.
        self.thread = threading.Thread(target=self._again, name="close-sms-sigterm", daemon=True)
        self.thread.start()

    def handle(self, signal_number: int, frame: FrameType | None) -> None:
        # Noted even when ignored: a follower that goes on after a failed cycle stops on it.
        _received.set()
        if Terminated.caught.is_set():
            return
        self.wake.set()
        if _held[0] or (frame is not None and uninterruptible(frame)):
            self.waiting = True
            return
        self.waiting = False
        self.raised_at = time.monotonic()
        raise Terminated

    def unraisable(self, unraisable: Any) -> None:
        """`sys.unraisablehook`: a dropped Terminated is raised again at once, not printed."""
        if isinstance(unraisable.exc_value, Terminated):
            self.waiting = True
        else:
            self.previous_unraisable(unraisable)

    def end(self) -> None:
        """Stop raising; once this returns, the thread raising again has ended."""
        Terminated.caught.set()
        self.ended.set()
        self.wake.set()
        self.thread.join()

    def _again(self) -> None:
        self.wake.wait()
        while not self.ended.wait(RETRY_SECONDS):
            raised = self.raised_at
            due = self.waiting or (
                raised is not None and time.monotonic() - raised >= TERMINATE_AGAIN_SECONDS
            )
            if due and not Terminated.caught.is_set():
                _thread.interrupt_main(signal.SIGTERM)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """In the block, SIGTERM raises `Terminated` as Ctrl-C raises KeyboardInterrupt, where that
    is safe (see the module's docstring).

    Raised again if not caught (see `Terminated.caught`) within `TERMINATE_AGAIN_SECONDS`, and
    ignored once caught: the run is stopping, and SIGKILL still ends it at once. One that had to
    wait and is not raised yet when the block ends is raised then. Signals reach the main thread
    only, so elsewhere this changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    Terminated.caught.clear()
    stop = _Stop(sys.unraisablehook)
    sys.unraisablehook = stop.unraisable
    previous = signal.signal(signal.SIGTERM, stop.handle)
    try:
        yield
        if stop.waiting and not Terminated.caught.is_set():
            # It came where it had to wait, and the block ended before it was raised.
            raise Terminated
    finally:
        stop.end()
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = stop.previous_unraisable


@contextmanager
def sigterm_held() -> Iterator[None]:
    """In the block, a SIGTERM waits; it is raised once the block has ended. Only the main
    thread handles signals, so elsewhere this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held[0] += 1
    try:
        yield
    finally:
        _held[0] -= 1


@contextmanager
def settled(warehouse: Warehouse, seconds: float = SETTLE_SECONDS) -> Iterator[None]:
    """A block that, left by an exception (a stop or a failure), first lets the threads that
    use `warehouse` end: the parked backfill reader is closed, dlt's load workers this thread
    started are given up to `seconds` to finish the jobs they started, and the connections to
    the DuckDB file they and the interrupted step left open are closed once none of them runs."""
    try:
        yield
    except BaseException as exc:
        if _terminated(exc):
            # Caught: raising it again would cut the wait for the workers short.
            Terminated.caught.set()
        close_parked()
        if _join_load_workers(time.monotonic() + seconds) and warehouse.database is not None:
            close_open_pools(warehouse.database)
        raise


def _terminated(exc: BaseException) -> bool:
    """Whether `exc` is a `Terminated`, or one of dlt's failures it caused."""
    return any(isinstance(cause, Terminated) for cause in exception_chain(exc))


def _join_load_workers(deadline: float) -> bool:
    """Wait until `deadline` for dlt's pool threads this thread started; True if none is left.

    dlt names them after the thread that made the pool. Only its worker pools' threads are
    joined: its extract's event loop thread is a daemon that lives as long as the process.
    """
    prefix = Container.thread_pool_prefix()
    workers = [
        thread
        for thread in threading.enumerate()
        if thread.name.startswith(prefix) and not thread.daemon
    ]
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    return not any(worker.is_alive() for worker in workers)
