"""One writer per destination and dataset: a second sync stops at once with `LockHeld`.

DuckDB: a lock file beside the database. PostgreSQL: a session advisory lock, which holds
across machines and ends with the connection, so a killed sync never leaves it behind. Other
destinations: a lock file in the local working folder, which guards this machine only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import filelock

from ..errors import DatabaseError, LockHeld
from ..source import settings
from .destination import Warehouse


@contextmanager
def writer_lock(warehouse: Warehouse) -> Iterator[None]:
    """Hold the warehouse's writer lock for the block, or raise `LockHeld` if another has it."""
    if warehouse.is_postgres:
        with _advisory_lock(warehouse):
            yield
        return
    if warehouse.database is not None:
        path = f"{warehouse.database}.lock"
    else:
        warehouse.working_dir.mkdir(parents=True, exist_ok=True)
        path = str(warehouse.working_dir / "sync.lock")
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
