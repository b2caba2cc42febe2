"""One writer per destination and dataset: a second sync stops at once with `LockHeld`.

DuckDB: a lock file beside the database. PostgreSQL: a session advisory lock, which holds
across machines and ends with the connection, so a killed sync never leaves it behind. Other
destinations: a lock file in the local working folder, which guards this machine only.

The lock is held per thread: a block inside another that holds it (each cycle of `close-sms
follow`, the ledger write after a run) goes on without taking it again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import filelock

from ..errors import DatabaseError, LockHeld
from ..source import settings
from .destination import Warehouse

# The locks this thread holds, by what they lock: other threads of the process contend as
# other processes do.
_held = threading.local()


@contextmanager
def writer_lock(warehouse: Warehouse) -> Iterator[None]:
    """Hold the warehouse's writer lock for the block, or raise `LockHeld` if another has it."""
    held: set[str] = _held.__dict__.setdefault("keys", set())
    key = _lock_key(warehouse)
    if key in held:
        yield
        return
    with _taken(warehouse, key):
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)


def _lock_key(warehouse: Warehouse) -> str:
    if warehouse.is_postgres:
        return f"postgres:{warehouse.describe()}:{settings.DATASET_NAME}"
    if warehouse.database is not None:
        return f"{warehouse.database}.lock"
    return str(warehouse.working_dir / "sync.lock")


@contextmanager
def _taken(warehouse: Warehouse, key: str) -> Iterator[None]:
    """The lock itself, taken for the block."""
    if warehouse.is_postgres:
        with _advisory_lock(warehouse):
            yield
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
        yield
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
def _advisory_lock(warehouse: Warehouse) -> Iterator[None]:
    with warehouse.sql_client() as sql:
        # The key names the dataset, so syncs of other datasets on the same server run freely.
        key = f"close-sms:{settings.DATASET_NAME}"
        ((taken,),) = sql.execute_sql("SELECT pg_try_advisory_lock(hashtext(%s))", key)
        if not taken:
            raise LockHeld(
                f"another close-sms sync is running on {warehouse.describe()} "
                "(it holds PostgreSQL's advisory lock on the dataset)"
            )
        try:
            yield
        finally:
            sql.execute_sql("SELECT pg_advisory_unlock(hashtext(%s))", key)
