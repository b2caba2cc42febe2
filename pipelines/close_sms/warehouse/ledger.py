"""The run ledger: one row per `close-sms sync` in `close_sms.sync_runs`, failed runs included.

Rows are written with plain SQL through the destination's sql client, not as a dlt load: a
load costs about a second and writes dlt's state, and a quiet run must write neither.

A run that failed before it wrote anything leaves the warehouse as it was, and a run that
cannot reach it (the database held by another process, broken, or another sync holding the
lock) cannot write there: their rows wait in a journal, `sync_runs.jsonl`, in the warehouse's
local working folder, and the next run that writes its own row writes them with it. Beside
it, `sync_runs.last_success.json` keeps the last successful run, so a failed run knows how far
behind the warehouse is without reading it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, cast

import filelock
from dlt.common.destination import PreparedTableSchema
from dlt.common.schema.typing import TColumnSchema
from dlt.common.schema.utils import new_table
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.destinations.sql_client import SqlClientBase

from ..source.progress import RunMode
from ..source.settings import TextEnum
from .destination import Warehouse
from .lock import writer_lock
from .tables import create_table

LEDGER_TABLE = "sync_runs"
JOURNAL = f"{LEDGER_TABLE}.jsonl"
LAST_SUCCESS = f"{LEDGER_TABLE}.last_success.json"
# Runs append to the journal in milliseconds; one writing it out waits this long.
JOURNAL_LOCK_TIMEOUT_SECONDS = 30.0


class Outcome(TextEnum):
    """How a run ended; the values are the words of the ledger's `outcome` column."""

    SUCCESS = "success"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    # Another sync held the lock (exit 5): an overlap of cron runs, not a failure.
    LOCKED = "locked"


# The outcome SQL filters on, by the name examples/dbt and app/mcp import.
SUCCESS = Outcome.SUCCESS

_TIMESTAMPS = ("started_at", "ended_at", "feed_checked_at")


@dataclass
class SyncRun:
    """One run of `close-sms sync`: a row of the ledger, its fields in column order."""

    run_id: str
    started_at: datetime
    ended_at: datetime
    mode: RunMode | None
    outcome: Outcome
    exit_status: int
    error: str | None = None
    sms_upserted: int = 0
    sms_deleted: int = 0
    events_read: int = 0
    requests: int = 0
    responses_429: int = 0
    rate_limit_wait_seconds: float = 0.0
    # The last successful read of the change feed (Close's clock), this run's if it succeeded.
    feed_checked_at: datetime | None = None
    lag_seconds: float | None = None
    backfill_windows_left: int | None = None
    version: str = ""
    # Listing positions stepped past (Close answered 404 "Empty query" for each alone), and
    # SMS Close answered 403 for: neither read nor removed.
    skipped_positions: int = 0
    sms_unreadable: int = 0

    def __post_init__(self) -> None:
        # Rows read back from the journal or the database carry the words as text.
        self.mode = None if self.mode is None else RunMode(self.mode)
        self.outcome = Outcome(self.outcome)

    def values(self) -> dict[str, Any]:
        """The row's values by column, its words as plain text: what every store is given."""
        row = asdict(self)
        row["mode"] = None if self.mode is None else self.mode.value
        row["outcome"] = self.outcome.value
        return row

    def to_json(self) -> dict[str, Any]:
        """The row with ISO timestamps, for the journal and `status --json`."""
        row = self.values()
        for name in _TIMESTAMPS:
            if row[name] is not None:
                row[name] = row[name].isoformat()
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SyncRun:
        """A row read back from the journal (ISO text) or the database (datetimes)."""
        values = dict(row)
        for name in _TIMESTAMPS:
            value = values[name]
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            values[name] = value.astimezone(timezone.utc) if value is not None else None
        return cls(**values)


def ledger_columns() -> dict[str, TColumnSchema]:
    """The ledger's columns as dlt hints, in order; dlt's type mapper makes them SQL types."""
    types = {
        "run_id": "text",
        "started_at": "timestamp",
        "ended_at": "timestamp",
        "mode": "text",
        "outcome": "text",
        "exit_status": "bigint",
        "error": "text",
        "sms_upserted": "bigint",
        "sms_deleted": "bigint",
        "events_read": "bigint",
        "requests": "bigint",
        "responses_429": "bigint",
        "rate_limit_wait_seconds": "double",
        "feed_checked_at": "timestamp",
        "lag_seconds": "double",
        "backfill_windows_left": "bigint",
        "version": "text",
        "skipped_positions": "bigint",
        "sms_unreadable": "bigint",
    }
    required = ("run_id", "started_at", "ended_at", "outcome", "exit_status")
    return {
        name: cast(TColumnSchema, {"data_type": data_type, "nullable": name not in required})
        for name, data_type in types.items()
    }


def product_version() -> str:
    """The installed close-sms version, or "unknown" when run from an uninstalled checkout."""
    try:
        return version("close-sms")
    except PackageNotFoundError:
        return "unknown"


def record_run(warehouse: Warehouse, run: SyncRun, write: bool) -> bool:
    """Keep `run`: with `write`, in the ledger together with the journal's rows, else (or if
    the warehouse cannot be written now) in the journal. True if the ledger was written.

    Writes take the writer lock, so they never meet a running sync; raises only when even the
    local journal cannot be written.
    """
    if run.outcome is Outcome.SUCCESS:
        note_success(warehouse, run)
    else:
        warehouse.working_dir.mkdir(parents=True, exist_ok=True)
    with _journal(warehouse) as journal:
        if write:
            pending = _read_journal(journal)
            try:
                with writer_lock(warehouse), warehouse.sql_client() as sql:
                    write_runs(sql, [*pending, run])
            except Exception:
                # Held, locked or broken: the journal keeps the row for the next run.
                pass
            else:
                journal.unlink(missing_ok=True)
                return True
        with journal.open("a", encoding="utf-8") as lines:
            lines.write(json.dumps(run.to_json()) + "\n")
    return False


def note_success(warehouse: Warehouse, run: SyncRun) -> None:
    """Keep `run` as the last successful one in the working folder (not in the ledger)."""
    warehouse.working_dir.mkdir(parents=True, exist_ok=True)
    _replace_file(warehouse.working_dir / LAST_SUCCESS, json.dumps(run.to_json()))


def last_success(warehouse: Warehouse) -> SyncRun | None:
    """The last successful run this working folder recorded, without reading the warehouse."""
    try:
        return SyncRun.from_row(json.loads((warehouse.working_dir / LAST_SUCCESS).read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def latest_runs(warehouse: Warehouse, sql: SqlClientBase[Any]) -> tuple[SyncRun | None, ...]:
    """The last run to end and the last successful one, from the ledger and the local journal.

    By end, not start: a cron run refused the lock (exit 5) ends before the run holding it. The
    working folder's last success counts too: a follower sums its quiet cycles into one ledger
    row an hour, and notes each one there.
    """
    runs = _read_journal(warehouse.working_dir / JOURNAL)
    noted = last_success(warehouse)
    if noted is not None:
        runs.append(noted)
    table = sql.make_qualified_table_name(LEDGER_TABLE)
    names = ", ".join(sql.escape_column_name(name) for name in _names())
    for where in ("", f"WHERE outcome = '{Outcome.SUCCESS.value}'"):
        try:
            rows = sql.execute_sql(
                f"SELECT {names} FROM {table} {where} ORDER BY ended_at DESC LIMIT 1"
            )
        except DatabaseUndefinedRelation:
            break
        runs += [SyncRun.from_row(dict(zip(_names(), row, strict=True))) for row in rows or ()]
    last = max(runs, key=lambda r: r.ended_at, default=None)
    succeeded = [run for run in runs if run.outcome is Outcome.SUCCESS]
    return last, max(succeeded, key=lambda r: r.ended_at, default=None)


def _names() -> list[str]:
    return [f.name for f in fields(SyncRun)]


def write_runs(sql: SqlClientBase[Any], runs: list[SyncRun]) -> None:
    """Write `runs` to the ledger in one transaction, creating it if missing; reruns are harmless."""
    table = sql.make_qualified_table_name(LEDGER_TABLE)
    names = _names()
    columns = ", ".join(sql.escape_column_name(name) for name in names)
    placeholders = ", ".join(["%s"] * len(names))
    with sql.begin_transaction():
        if not sql.has_dataset():
            sql.create_dataset()
        declared = [{"name": n, **h} for n, h in ledger_columns().items()]
        create_table(sql, LEDGER_TABLE, declared)
        _add_missing_columns(sql, declared)
        for run in runs:
            # Delete, then insert: a journal written again after a crash adds no duplicate.
            sql.execute_sql(f"DELETE FROM {table} WHERE run_id = %s", run.run_id)
            row = run.values()
            sql.execute_sql(
                f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",
                *(row[name] for name in names),
            )


def _add_missing_columns(sql: SqlClientBase[Any], columns: list[TColumnSchema]) -> None:
    """Add the columns a newer version declares to a ledger an older version created."""
    *_, schema, table = sql.make_qualified_table_name_path(LEDGER_TABLE, quote=False)
    rows = sql.execute_sql(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s",
        schema,
        table,
    )
    present = {name for (name,) in rows or ()}
    mapper = sql.capabilities.get_type_mapper()
    prepared = cast(PreparedTableSchema, new_table(LEDGER_TABLE, columns=columns))
    for column in columns:
        if column["name"] not in present:
            sql.execute_sql(
                f"ALTER TABLE {sql.make_qualified_table_name(LEDGER_TABLE)} ADD COLUMN "
                f"{sql.escape_column_name(column['name'])} "
                f"{mapper.to_destination_type(column, prepared)}"
            )


@contextmanager
def _journal(warehouse: Warehouse) -> Iterator[Path]:
    """The journal's path, held against other runs appending or writing it out meanwhile."""
    path = warehouse.working_dir / JOURNAL
    with filelock.FileLock(f"{path}.lock", timeout=JOURNAL_LOCK_TIMEOUT_SECONDS):
        yield path


def _read_journal(path: Path) -> list[SyncRun]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    runs = []
    for line in text.splitlines():
        try:
            runs.append(SyncRun.from_row(json.loads(line)))
        except (ValueError, TypeError, KeyError):
            # A line cut short by a killed run: the rest of the journal still counts.
            continue
    return runs


def _replace_file(path: Path, text: str) -> None:
    # Written aside and renamed, so a killed run never leaves half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
