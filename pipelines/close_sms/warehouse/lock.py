"""One writer per destination and dataset: a second sync stops at once with `LockHeld`.

DuckDB: a lock file beside the database. PostgreSQL: a session advisory lock, which holds
across machines and ends with the connection, so a killed sync never leaves it behind. Other
destinations: a lock file in the local working folder, which guards this machine only.

The lock is held per thread: a block inside another that holds it (each cycle of `close-sms
follow`, the ledger write after a run) goes on without taking it again, once it has checked
that the lock is still there: PostgreSQL ends an advisory lock with its session, silently, when
the connection is lost or the server restarts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import filelock

from ..errors import DatabaseError, LockHeld, LockLost, one_line
from ..source import settings
from .destination import Warehouse

# The locks this thread holds, by what they lock: other threads of the process contend as
# other processes do.
_held = threading.local()


@contextmanager
def writer_lock(warehouse: Warehouse) -> Iterator[None]:
    """Hold the warehouse's writer lock for the block, or raise `LockHeld` if another has it.

    Inside a block that holds it already, raises `LockLost` if the lock ended meanwhile.
    """
    held: dict[str, Callable[[], None]] = _held.__dict__.setdefault("checks", {})
    key = _lock_key(warehouse)
    if key in held:
        held[key]()
        yield
        return
    with _taken(warehouse, key) as still_held:
        held[key] = still_held
        try:
            yield
        finally:
            held.pop(key, None)


def _lock_key(warehouse: Warehouse) -> str:
    if warehouse.is_postgres:
        return f"postgres:{warehouse.describe()}:{settings.DATASET_NAME}"
    if warehouse.database is not None:
        return f"{warehouse.database}.lock"
    return str(warehouse.working_dir / "sync.lock")


@contextmanager
def _taken(warehouse: Warehouse, key: str) -> Iterator[Callable[[], None]]:
    """The lock itself, taken for the block, which gets a check that it still holds."""
    if warehouse.is_postgres:
        with _advisory_lock(warehouse) as still_held:
            yield still_held
        return
    path = key
    if warehouse.database is None:
        warehouse.working_dir.mkdir(parents=True, exist_ok=True)
    _check_creatable(path)
    lock = filelock.FileLock(path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise LockHeld(
            f"another close-sms sync is running on {warehouse.describe()} (lock {path})"
        ) from None
    try:
        # A lock file is this process's until it releases it.
        yield lambda: None
    finally:
        lock.release()


def _check_creatable(path: str) -> None:
    """Raise `DatabaseError` if the lock file cannot be opened or created: filelock reports that
    as a lock another process holds, which would send a broken setup down the overlap path."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the lock file {path}: {exc.strerror or exc}; the sync needs a "
            "folder it can write beside the database"
        ) from None


@contextmanager
def _advisory_lock(warehouse: Warehouse) -> Iterator[Callable[[], None]]:
    with warehouse.sql_client() as sql:
        # The key names the dataset, so syncs of other datasets on the same server run freely.
        key = f"close-sms:{settings.DATASET_NAME}"
        ((taken,),) = sql.execute_sql("SELECT pg_try_advisory_lock(hashtext(%s))", key)
        if not taken:
            raise LockHeld(
                f"another close-sms sync is running on {warehouse.describe()} "
                "(it holds PostgreSQL's advisory lock on the dataset)"
            )
        lost: list[str] = []

        def still_held() -> None:
            # The lock lives as long as its session: a session that still answers holds it.
            try:
                sql.execute_sql("SELECT 1")
            except Exception as exc:
                lost.append(one_line(exc))
                raise LockLost(
                    f"the writer lock on {warehouse.describe()} was lost with the PostgreSQL "
                    f"session that held it ({lost[0]}); stopping, since another sync may be "
                    "writing now (a restart takes the lock again)"
                ) from None

        try:
            yield still_held
        finally:
            if not lost:
                sql.execute_sql("SELECT pg_advisory_unlock(hashtext(%s))", key)
