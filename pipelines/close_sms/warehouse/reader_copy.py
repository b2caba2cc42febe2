"""A copy of the DuckDB file for readers, published by the sync after it wrote.

DuckDB lets one process write a file, or any number read it, never both at once: notebooks
keep this copy open as long as they like while the sync writes the file itself. The copy has
its database's mode and group, so it is as private, or as shared, as the database.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

from ..errors import DatabaseError, sleep_heeding_signals
from .destination import Warehouse

# The most of one core a process that publishes often (a follower) spends copying: a copy of a
# large file costs a fraction of a second, and a change a second would otherwise copy it each
# second.
COPY_CPU_SHARE = 0.25


class CopyPacer:
    """Spaces one process's copies so that they take at most `share` of one core: a copy that
    cost T seconds of CPU (its threads' included) is followed by the next no sooner than
    T / share after it began. The changes of the cycles in between go out with the next copy."""

    def __init__(self, share: float = COPY_CPU_SHARE) -> None:
        self.share = share
        self.not_before = 0.0
        self.cpu_seconds = 0.0
        self.copies = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for the next copy's turn, then time the copy made in the block."""
        sleep_heeding_signals(self.not_before - time.monotonic())
        began, cpu = time.monotonic(), time.process_time()
        yield
        spent = time.process_time() - cpu
        self.cpu_seconds += spent
        self.copies += 1
        self.not_before = began + spent / self.share


def publish_reader_copy(
    warehouse: Warehouse, changed: bool, pacer: CopyPacer | None = None
) -> bool:
    """Replace `warehouse.reader_copy` with a consistent copy of the DuckDB file; True if done.

    Call it while holding the writer lock. A run that `changed` nothing republishes only a
    missing copy. The copy is written beside its final name and renamed over it, so a reader
    opening it sees the old file or the new one, and one holding the old file keeps it.
    With a `pacer`, the copy waits for its turn first.
    """
    copy = warehouse.reader_copy
    if warehouse.database is None or copy is None:
        return False
    partial = copy.with_name(f".{copy.name}.partial")
    try:
        if copy.exists() and not changed:
            # The database's mode may have changed since the copy was published.
            match_access(warehouse.database, copy)
            return False
        with pacer.turn() if pacer is not None else nullcontext():
            with warehouse.sql_client() as sql:
                # Everything into the file itself, so the file alone is the database; a byte
                # copy is 50 times faster than COPY FROM DATABASE and equal to what the sync
                # wrote. The open connection keeps any other writer out while the file is read.
                sql.execute_sql("CHECKPOINT")
                shutil.copyfile(warehouse.database, partial)
            match_access(warehouse.database, partial)
            durable_replace(partial, copy)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DatabaseError(f"reader_copy {copy}: {exc.strerror or exc}") from None
    return True


def match_access(model: Path, path: Path) -> None:
    """Give `path` the permission bits and group of `model`: whoever may read one may read both."""
    info = model.stat()
    # Before the mode, since a change of group clears the set-group-ID bit. Refused when not a
    # member of that group; the mode still keeps others out.
    with suppress(PermissionError):
        os.chown(path, -1, info.st_gid)
    os.chmod(path, stat.S_IMODE(info.st_mode))


def durable_replace(partial: Path, path: Path) -> None:
    """Rename the written `partial` over `path` once its bytes are on disk."""
    with open(partial, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(partial, path)
