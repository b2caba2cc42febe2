"""Where the data goes: a dlt destination and dataset, and the local folder dlt works in.

DuckDB is the default, as a file given by `--database`. Any other dlt destination is named and
configured the dlt way (`DESTINATION__POSTGRES__CREDENTIALS`, `.dlt/secrets.toml`). Callers get a
dlt pipeline and sql client from here and never ask which destination is behind them.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.destinations.exceptions import DatabaseException, DestinationConnectionError
from dlt.destinations.sql_client import SqlClientBase

from ..errors import ConfigError, DatabaseError, one_line
from ..source import settings
from . import DEFAULT_DATABASE
from .duckdb_wait import LOCK_WAIT_SECONDS, is_lock_conflict, lock_waiting_duckdb

DUCKDB = "duckdb"
POSTGRES = "postgres"
# DuckDB keeps table blocks cached up to its memory limit (80% of RAM by default), so the
# sync's memory would grow with the table; merges spill to disk past this instead.
DUCKDB_MEMORY_LIMIT = "128MB"

# dlt settings that matter for speed, applied unless .dlt/config.toml or the environment sets
# them, so a cron job started outside the project behaves the same.
DLT_DEFAULTS = {
    # Extract's intermediate jsonl files are read once and deleted; gzip only costs CPU
    # (100k-SMS backfill 35.7 s -> 31.3 s; parquet files are not affected).
    "data_writer.disable_compression": True,
}

# dlt settings that keep loaded rows off the local disk (docs/privacy.md): a loaded package's job
# files go, and the staging dataset is emptied after each load. Set under the pipeline's own
# section, over any config.toml value and plain LOAD__ variable; only CLOSE_SMS__LOAD__...
# environment variables, which dlt reads first, could turn them off.
DLT_PRIVACY = {"load.delete_completed_jobs": True, "load.truncate_staging_dataset": True}

# The loader file format per destination: parquet loads DuckDB in a third of insert_values' time
# and a quarter of its memory. PostgreSQL keeps dlt's choice: COPY from csv for Arrow tables,
# insert statements for row dicts, whose csv could not tell an empty text from a null.
LOADER_FILE_FORMATS = {DUCKDB: "parquet"}


@dataclass(frozen=True)
class Warehouse:
    """A destination and dataset to load into, and the local working folder of its pipeline.

    DuckDB only: `lock_wait` is how long opening the file waits for another process to close
    it (`on_lock_wait` hears when a wait starts), and `reader_copy` where a sync publishes a
    copy of the file for readers.
    """

    destination: str
    database: Path | None
    working_dir: Path
    lock_wait: float = LOCK_WAIT_SECONDS
    reader_copy: Path | None = None
    on_lock_wait: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    # One destination per mode, for every pipeline and client of this warehouse: dlt resolves
    # its settings once, and the clients share one DuckDB connection pool.
    _destinations: dict[bool, Any] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def configure(
        cls,
        destination: str = DUCKDB,
        database: str | Path | None = None,
        *,
        lock_wait: float = LOCK_WAIT_SECONDS,
        reader_copy: str | Path | None = None,
        on_lock_wait: Callable[[str], None] | None = None,
    ) -> Warehouse:
        """Check the destination's settings and place its working folder; nothing is written."""
        if destination == DUCKDB:
            path = check_database_path(Path(database or DEFAULT_DATABASE))
            copy = None
            if reader_copy:
                copy = check_database_path(Path(reader_copy), "reader_copy")
                if copy == path:
                    raise ConfigError(f"reader_copy: {copy} is the database itself")
            # Beside the database, so two databases never share state.
            return cls(
                DUCKDB, path, path.parent / f".{path.name}.dlt", lock_wait, copy, on_lock_wait
            )
        if database is not None:
            raise ConfigError(
                f"--database is for the duckdb destination only; configure {destination} the "
                f"dlt way (DESTINATION__{destination.upper()}__CREDENTIALS or .dlt/secrets.toml)"
            )
        if reader_copy:
            raise ConfigError(
                f"reader_copy is for the duckdb destination only; readers of {destination} "
                "query it directly (remove SOURCES__CLOSE_SMS__READER_COPY / reader_copy)"
            )
        location = _data_location(destination)
        # The folder is only a cache (dlt restores state from the destination), but it must be
        # one per location: a state cached for another database would skip this one's backfill.
        key = hashlib.sha256(f"{destination}|{location}|{settings.DATASET_NAME}".encode())
        return cls(destination, None, _state_home() / f"{destination}-{key.hexdigest()[:12]}")

    @property
    def is_postgres(self) -> bool:
        """Whether the destination is PostgreSQL, whose advisory locks hold across machines."""
        return self.destination == POSTGRES

    @property
    def views_stamp(self) -> Path:
        """Where the fingerprint of the last views applied is kept (`views.refresh_views`)."""
        return self.working_dir / "views.sha256"

    @property
    def loader_file_format(self) -> str | None:
        return LOADER_FILE_FORMATS.get(self.destination)

    def describe(self) -> str:
        """The warehouse in words, for messages: the file, or the destination and dataset."""
        if self.database is not None:
            return str(self.database)
        return f"{self.destination} dataset {settings.DATASET_NAME}"

    def pipeline(self, read_only: bool = False) -> dlt.Pipeline:
        """The dlt pipeline of this warehouse; `read_only` opens a DuckDB file read-only."""
        for key, value in DLT_DEFAULTS.items():
            if dlt.config.get(key) is None:
                dlt.config[key] = value
        for key, value in DLT_PRIVACY.items():
            dlt.config[f"{settings.PIPELINE_NAME}.{key}"] = value
        return dlt.pipeline(
            pipeline_name=settings.PIPELINE_NAME,
            pipelines_dir=str(self.working_dir),
            destination=self._destination(read_only),
            dataset_name=settings.DATASET_NAME,
        )

    @contextmanager
    def sql_client(self, read_only: bool = False) -> Iterator[SqlClientBase[Any]]:
        """An open sql client on the dataset."""
        with self.pipeline(read_only=read_only).sql_client() as client:
            yield client

    @contextmanager
    def file_held(self) -> Iterator[None]:
        """DuckDB: the file open for the block, so that the clients made in it borrow that
        connection rather than open the file each (ten times a run, 17 ms each); other
        destinations: nothing."""
        if self.database is None:
            yield
            return
        with self.sql_client():
            yield

    def _destination(self, read_only: bool) -> Any:
        if self.database is None:
            return self.destination
        if read_only not in self._destinations:
            self._destinations[read_only] = lock_waiting_duckdb(
                self.database,
                read_only=read_only,
                lock_wait=self.lock_wait,
                on_lock_wait=self.on_lock_wait,
                global_config={"memory_limit": DUCKDB_MEMORY_LIMIT},
            )
        return self._destinations[read_only]


def check_database_path(database: Path, setting: str = "--database") -> Path:
    """Refuse DuckDB paths that cannot work, before anything is written; `setting` names it."""
    database = database.expanduser().resolve()
    if database.stem == settings.DATASET_NAME:
        raise ConfigError(
            f"{setting} {database.name}: a file named like the dataset '{settings.DATASET_NAME}' "
            "makes DuckDB's table names ambiguous; choose another name, e.g. warehouse.duckdb"
        )
    if not database.parent.is_dir():
        raise ConfigError(f"{setting}: folder {database.parent} does not exist")
    if not os.access(database.parent, os.W_OK) or (
        database.exists() and not os.access(database, os.W_OK)
    ):
        raise ConfigError(f"{setting}: {database} is not writable")
    return database


def database_error(exc: BaseException, subject: str) -> DatabaseError | None:
    """The one-line cause of a database failure on `subject`, or None if `exc` is not one."""
    driver = type(exc).__module__.split(".")[0]
    if not isinstance(exc, (DatabaseException, DestinationConnectionError)) and driver not in (
        "duckdb",
        "psycopg2",
    ):
        return None
    text = str(exc).strip()
    if is_lock_conflict(exc):
        return DatabaseError(
            f"{subject}: the database is open in another process (DuckDB allows one writer) "
            "for longer than lock_wait; close that connection or have readers use reader_copy, "
            "then rerun: the sync resumes where it stopped"
        )
    return DatabaseError(f"{subject}: {text.splitlines()[0] if text else type(exc).__name__}")


# Errors of a disk rather than of one file: the OS often names no file with them.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO})


def storage_error(exc: BaseException, folder: Path | None) -> DatabaseError | None:
    """The one-line cause of a local file failure (a full disk, a read-only folder), or None.

    `folder` is named when the OS names no file: dlt's working folder, where most writes go.
    """
    if not isinstance(exc, OSError) or isinstance(exc, (ConnectionError, TimeoutError)):
        return None
    # A rename's failure names its target second, and the target is what could not be written.
    path = exc.filename2 or exc.filename
    if path is None and (exc.errno not in STORAGE_ERRNOS or folder is None):
        return None
    cause = exc.strerror or one_line(exc)
    return DatabaseError(
        f"{path or folder}: {cause}; make room or fix that folder, then rerun: the sync resumes "
        "where it stopped"
    )


def _data_location(destination: str) -> str:
    try:
        reference = Destination.from_reference(destination)
        initial = reference.spec()
        initial.dataset_name = settings.DATASET_NAME
        return str(reference.configuration(initial).data_location())
    except UnknownDestinationModule:
        raise ConfigError(f"--destination {destination}: dlt knows no such destination") from None
    except ConfigurationException as exc:
        raise ConfigError(
            f"--destination {destination}: its settings are incomplete "
            f"(DESTINATION__{destination.upper()}__CREDENTIALS or [destination.{destination}] in "
            f".dlt/secrets.toml): {str(exc).strip().splitlines()[0]}"
        ) from None


def _state_home() -> Path:
    # XDG's place for state that is kept but may be lost; never the ~/.dlt that cron's $HOME
    # working directory would share with the global dlt folder.
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "close-sms"
