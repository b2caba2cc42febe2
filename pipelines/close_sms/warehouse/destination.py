"""Where the data goes: a dlt destination and dataset, and the local folder dlt works in.

DuckDB is the default, as a file given by `--database`. Any other dlt destination is named and
configured the dlt way (`DESTINATION__POSTGRES__CREDENTIALS`, `.dlt/secrets.toml`). Callers get a
dlt pipeline and sql client from here and never ask which destination is behind them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.destinations.exceptions import DatabaseException, DestinationConnectionError
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.destinations.sql_client import SqlClientBase

from .. import settings
from ..errors import ConfigError, DatabaseError

DUCKDB = "duckdb"

# dlt settings that matter for speed, applied unless .dlt/config.toml or the environment sets
# them, so a cron job started outside the project behaves the same.
DLT_DEFAULTS = {
    # Extract's intermediate jsonl files are read once and deleted; gzip only costs CPU
    # (100k-SMS backfill 35.7 s -> 31.3 s; parquet files are not affected).
    "data_writer.disable_compression": "true",
}

# The loader file format per destination: parquet loads DuckDB in a third of insert_values' time
# and a quarter of its memory; PostgreSQL takes no parquet, and COPY from csv is its fast path.
LOADER_FILE_FORMATS = {DUCKDB: "parquet", "postgres": "csv"}


@dataclass(frozen=True)
class Warehouse:
    """A destination and dataset to load into, and the local working folder of its pipeline."""

    destination: str
    database: Path | None
    working_dir: Path

    @classmethod
    def configure(cls, destination: str = DUCKDB, database: str | Path | None = None) -> Warehouse:
        """Check the destination's settings and place its working folder; nothing is written."""
        if destination == DUCKDB:
            path = check_database_path(Path(database or settings.DEFAULT_DATABASE))
            # Beside the database, so two databases never share state.
            return cls(DUCKDB, path, path.parent / f".{path.name}.dlt")
        if database is not None:
            raise ConfigError(
                f"--database is for the duckdb destination only; configure {destination} the "
                f"dlt way (DESTINATION__{destination.upper()}__CREDENTIALS or .dlt/secrets.toml)"
            )
        location = _data_location(destination)
        # The folder is only a cache (dlt restores state from the destination), but it must be
        # one per location: a state cached for another database would skip this one's backfill.
        key = hashlib.sha256(f"{destination}|{location}|{settings.DATASET_NAME}".encode())
        return cls(destination, None, _state_home() / f"{destination}-{key.hexdigest()[:12]}")

    @property
    def is_duckdb(self) -> bool:
        return self.destination == DUCKDB

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
                os.environ.setdefault(key.upper().replace(".", "__"), value)
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

    def _destination(self, read_only: bool) -> Any:
        if self.database is None:
            return self.destination
        return dlt.destinations.duckdb(
            DuckDbCredentials(
                str(self.database),
                read_only=read_only,
                global_config={"memory_limit": settings.DUCKDB_MEMORY_LIMIT},
            )
        )


def check_database_path(database: Path) -> Path:
    """Refuse DuckDB paths that cannot work, before anything is written."""
    database = database.expanduser().resolve()
    if database.stem == settings.DATASET_NAME:
        raise ConfigError(
            f"--database {database.name}: a file named like the dataset '{settings.DATASET_NAME}' "
            "makes DuckDB's table names ambiguous; choose another name, e.g. warehouse.duckdb"
        )
    if not database.parent.is_dir():
        raise ConfigError(f"--database: folder {database.parent} does not exist")
    if not os.access(database.parent, os.W_OK) or (
        database.exists() and not os.access(database, os.W_OK)
    ):
        raise ConfigError(f"--database: {database} is not writable")
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
    if "could not set lock" in text.lower() or "conflicting lock" in text.lower():
        return DatabaseError(
            f"{subject}: the database is open in another process (DuckDB allows one writer); "
            "close that connection or read from a copy, then rerun: the sync resumes where it "
            "stopped"
        )
    return DatabaseError(f"{subject}: {text.splitlines()[0] if text else type(exc).__name__}")


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
