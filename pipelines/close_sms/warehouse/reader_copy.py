"""A copy of the DuckDB file for readers, published by the sync after it wrote.

DuckDB lets one process write a file, or any number read it, never both at once: notebooks
keep this copy open as long as they like while the sync writes the file itself.
"""

from __future__ import annotations

import os
import shutil

from ..errors import DatabaseError
from .destination import Warehouse


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
