"""Readers beside the sync on one DuckDB file.

DuckDB lets one process write a file, or any number read it, never both at once. The sync
therefore waits for a reader that holds the file (up to `lock_wait`) rather than failing at
once, and it can publish a copy of the file that notebooks keep open as long as they like.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.specs.base_configuration import NotResolved
from dlt.common.destination.reference import DestinationReference
from dlt.common.typing import Annotated
from dlt.destinations.impl.duckdb.configuration import (
    DuckDbClientConfiguration,
    DuckDbConnectionPool,
    DuckDbCredentials,
)

from .. import settings
from ..errors import DatabaseError

if TYPE_CHECKING:
    from .destination import Warehouse

Say = Callable[[str], None]


def is_lock_conflict(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB refusing a file that another process holds."""
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


class _LockWaitingPool(DuckDbConnectionPool):
    """dlt's pool of DuckDB connections; an open that meets another process's lock is retried.

    Every connection dlt opens on the file comes from here (restoring state, load, sql clients,
    views), so a reader delays each of them alike, whichever step happens to need the file.
    """

    credentials: _LockWaitingCredentials

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
                time.sleep(min(settings.LOCK_RETRY_SECONDS, left))


@configspec(init=False)
class _LockWaitingCredentials(DuckDbCredentials):
    # Copied from the instance given to the destination, never read from config.
    lock_wait: Annotated[float, NotResolved()] = settings.LOCK_WAIT_SECONDS
    on_lock_wait: Annotated[Say | None, NotResolved()] = None

    def on_resolved(self) -> None:
        super().on_resolved()
        self.conn_pool = _LockWaitingPool(self)


@configspec(init=False)
class _LockWaitingConfiguration(DuckDbClientConfiguration):
    credentials: _LockWaitingCredentials = None


class _LockWaitingDuckDb(dlt.destinations.duckdb):
    """dlt's duckdb destination whose connections wait for other processes' locks."""

    spec = _LockWaitingConfiguration

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
    return _LockWaitingDuckDb(credentials)


def publish_reader_copy(warehouse: Warehouse, changed: bool) -> bool:
    """Replace `warehouse.reader_copy` with a consistent copy of the DuckDB file; True if done.

    Call it while holding the writer lock. A run that `changed` nothing republishes only a
    missing copy. The copy is written beside its final name and renamed over it, so a reader
    opening it sees the old file or the new one, and one holding the old file keeps it.
    """
    copy = warehouse.reader_copy
    if warehouse.database is None or copy is None or (copy.exists() and not changed):
        return False
    partial = copy.with_name(f".{copy.name}.partial")
    try:
        with warehouse.sql_client() as sql:
            # Everything into the file itself, so the file alone is the database; a byte copy
            # is 50 times faster than COPY FROM DATABASE and equal to what the sync wrote. The
            # open connection keeps any other writer out while the file is read.
            sql.execute_sql("CHECKPOINT")
            shutil.copyfile(warehouse.database, partial)
        with open(partial, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(partial, copy)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DatabaseError(f"reader_copy {copy}: {exc.strerror or exc}") from None
    return True
