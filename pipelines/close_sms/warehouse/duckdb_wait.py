"""dlt's duckdb destination that waits for another process to close the file.

DuckDB lets one process write a file, or any number read it, never both at once, and refuses a
held file at once. The sync therefore waits for a reader that holds the file (up to
`lock_wait`) rather than failing at once.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import dlt
from dlt.common.configuration import NotResolved, configspec
from dlt.common.destination import DestinationCapabilitiesContext, DestinationReference
from dlt.common.normalizers.naming import NamingConvention
from dlt.destinations.impl.duckdb.configuration import (
    DuckDbClientConfiguration,
    DuckDbConnectionPool,
    DuckDbCredentials,
)

Say = Callable[[str], None]

# How long a sync waits for another process (a notebook) to close the DuckDB file before it
# gives up with exit 6; a cron run every 5 minutes still finishes before the next one starts.
LOCK_WAIT_SECONDS = 120.0
# How often a waiting sync tries the file again.
LOCK_RETRY_SECONDS = 0.25


def is_lock_conflict(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB refusing a file that another process holds."""
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


class _LockWaitingPool(DuckDbConnectionPool):
    """dlt's pool of DuckDB connections; an open that meets another process's lock is retried.

    Every connection dlt opens on the file comes from here (restoring state, load, sql clients,
    views), so a reader delays each of them alike, whichever step happens to need the file.
    """

    def __del__(self) -> None:
        # A SIGTERM raised inside `__init__` leaves a pool without `_conn`: nothing to close, and
        # dlt's `__del__` would print an ignored AttributeError after the run's last line.
        if "_conn" in self.__dict__:
            super().__del__()

    credentials: _LockWaitingCredentials

    def __init__(self, credentials: _LockWaitingCredentials) -> None:
        super().__init__(credentials)
        _pools.add(self)

    def close(self) -> bool:
        """Close the pool's connection, and with it every one it lent out; True if it was open.

        Only once no thread uses them: a statement running on one would lose its connection.
        A connection returned later is returned to a closed pool, which stays closed.
        """
        with self._conn_lock:
            if self._conn is None or not self._conn_owner:
                return False
            self._close_conn()
            return True

    def borrow_conn(
        self,
        global_config: dict[str, Any] | None = None,
        local_config: dict[str, Any] | None = None,
        pragmas: list[str] | None = None,
    ) -> Any:
        # DuckDB has no busy timeout of its own: it refuses a held file at once.
        wait = self.credentials.lock_wait
        deadline = time.monotonic() + wait
        announced = False
        while True:
            try:
                return super().borrow_conn(global_config, local_config, pragmas)
            except Exception as exc:
                left = deadline - time.monotonic()
                if not is_lock_conflict(exc) or left <= 0:
                    raise
                if not announced and self.credentials.on_lock_wait is not None:
                    self.credentials.on_lock_wait(
                        f"Waiting up to {wait:g} s for another process to close "
                        f"{self.credentials.database} (DuckDB allows one writer, or readers)"
                    )
                announced = True
                time.sleep(min(LOCK_RETRY_SECONDS, left))


# Every pool made here, so that a stopped run can close the connections a step cut short left
# open, rather than leave them to the interpreter's shutdown.
_pools: weakref.WeakSet[_LockWaitingPool] = weakref.WeakSet()


def close_open_pools(database: Path) -> int:
    """Close the connections still open on `database` from the pools made here (see
    `_LockWaitingPool.close`); how many pools had one open."""
    return sum(pool.close() for pool in list(_pools) if Path(pool.credentials.database) == database)


@configspec(init=False)
class _LockWaitingCredentials(DuckDbCredentials):
    # Copied from the instance given to the destination, never read from config.
    lock_wait: Annotated[float, NotResolved()] = LOCK_WAIT_SECONDS
    on_lock_wait: Annotated[Say | None, NotResolved()] = None
    # The pool every copy dlt resolves from that instance shares (one per destination).
    shared_pool: Annotated[dict[str, _LockWaitingPool] | None, NotResolved()] = None

    def on_resolved(self) -> None:
        super().on_resolved()
        # dlt resolves new credentials, with a new pool, for each client it makes, and a pool
        # opens the file anew for its first borrower: ten times a run at 17 ms each. Shared,
        # a client opened while another holds the file borrows its connection instead.
        shared = self.shared_pool if self.shared_pool is not None else {}
        if "pool" not in shared:
            shared["pool"] = _LockWaitingPool(self)
        self.conn_pool = shared["pool"]


@configspec(init=False)
class _LockWaitingConfiguration(DuckDbClientConfiguration):
    credentials: _LockWaitingCredentials = None


class _LockWaitingDuckDb(dlt.destinations.duckdb):
    """dlt's duckdb destination whose connections wait for other processes' locks."""

    spec = _LockWaitingConfiguration

    def capabilities(
        self,
        config: DuckDbClientConfiguration | None = None,
        naming: NamingConvention | None = None,
    ) -> DestinationCapabilitiesContext:
        # Without a config dlt resolves a whole configuration for each call, and a pipeline
        # asks about 15 times a run (a quarter of a quiet run's CPU). The answer depends only on
        # this instance's settings and the naming's case sensitivity (dlt's
        # `adjust_capabilities`); each caller gets its own copy to adjust.
        if config is not None:
            return super().capabilities(config, naming)
        key = naming.name() if naming else None, bool(naming and naming.is_case_sensitive)
        cached = self._capabilities.get(key)
        if cached is None:
            cached = self._capabilities[key] = super().capabilities(None, naming)
        return cached.copy()

    @cached_property
    def _capabilities(self) -> dict[Any, DestinationCapabilitiesContext]:
        return {}

    @property
    def destination_type(self) -> str:
        # dlt records the type in the pipeline's state: this stays a plain duckdb destination.
        return DestinationReference.normalize_type("duckdb")


def lock_waiting_duckdb(
    database: Path,
    read_only: bool,
    lock_wait: float,
    on_lock_wait: Say | None,
    global_config: dict[str, Any],
) -> dlt.destinations.duckdb:
    """dlt's duckdb destination on `database`; opening it waits up to `lock_wait` seconds for a lock."""
    credentials = _LockWaitingCredentials(read_only=read_only, global_config=global_config)
    # Set, not passed in: dlt parses a passed path as a connection string, which imports
    # SQLAlchemy where it is installed (0.13 s of every run).
    credentials.database = str(database)
    credentials.lock_wait = lock_wait
    credentials.on_lock_wait = on_lock_wait
    credentials.shared_pool = {}
    return _LockWaitingDuckDb(credentials)
