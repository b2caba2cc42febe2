"""Analytics views: applies the `.sql` files of the `sql/` folder through a dlt sql client.

Each file holds one `CREATE OR REPLACE VIEW close_sms.<name>` statement in DuckDB's dialect
and is applied in file-name order, so a numeric prefix orders views that build on other views.
On other destinations each file is translated first (`dialect.translate`).

The views read dlt's tables `sms`, `sms__attachments` and `sms_events`, the context tables
(`users`, `lead_statuses`, `sms_templates`, `phone_numbers`, `leads`, `contacts`) and the run
ledger `sync_runs`. A dataset that has not loaded them yet (a fresh one, a sync that never saw an
attachment or an event, or one with the context turned off) gets them created empty first, with the column names, types and order
dlt itself creates (the ledger's own for `sync_runs`), so every view binds (the context's columns null),
and a later dlt load adopts the tables as they are. Likewise a table loaded before a field was
declared (an old dataset without `sequence_id` or the agent fields) gets the column appended,
null, as dlt's next load would append it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

from dlt.common.schema.typing import TColumnSchema
from dlt.destinations.exceptions import DatabaseException
from dlt.destinations.sql_client import SqlClientBase
from sqlglot.errors import SqlglotError

from ..errors import DatabaseError
from ..source.context.schema import CONTEXT_TABLES, table_hints
from ..source.settings import DATASET_NAME
from ..source.sms.schema import attachment_columns, event_columns, sms_columns
from .dialect import SOURCE_DIALECT, Schema, translate
from .dictionary import DICTIONARY_FILE, apply_comments, load_dictionary
from .ledger import LEDGER_TABLE, ledger_columns
from .tables import add_columns, create_table

_VIEW_NAME = re.compile(
    r"CREATE\s+OR\s+REPLACE\s+VIEW\s+(?:\"?(\w+)\"?\.)?\"?(\w+)\"?", re.IGNORECASE
)

_DLT_TEXT: dict[str, Any] = {"data_type": "text", "nullable": False}
# dlt's bookkeeping columns, in the order dlt appends them after the data columns.
_ROOT_DLT_COLUMNS = {"_dlt_load_id": _DLT_TEXT, "_dlt_id": _DLT_TEXT}
_NESTED_DLT_COLUMNS = {
    "_dlt_root_id": _DLT_TEXT,
    "_dlt_parent_id": _DLT_TEXT,
    "_dlt_list_idx": {"data_type": "bigint", "nullable": False},
    "_dlt_id": _DLT_TEXT,
}


def sql_dir(package_dir: Path | None = None) -> Path:
    """The folder of view files: packaged in a wheel, else the repository's `sql/`.

    A wheel force-includes `sql/` as `pipelines/close_sms/sql`; an editable install runs
    from the repository, where it is `<repo>/sql`.
    """
    package_dir = package_dir or Path(__file__).resolve().parents[1]
    packaged = package_dir / "sql"
    if packaged.is_dir():
        return packaged
    return package_dir.parents[1] / "sql"


def dictionary_path() -> Path:
    """The data dictionary beside the view files."""
    return sql_dir() / DICTIONARY_FILE


def view_files() -> list[Path]:
    """The view files, in the order they are applied."""
    files = sorted(sql_dir().glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no view files (*.sql) in {sql_dir()}")
    return files


def view_name(sql: str) -> str:
    """The view a file creates, from its `CREATE OR REPLACE VIEW` statement."""
    match = _VIEW_NAME.search(_strip_comments(sql))
    if match is None:
        raise ValueError("no CREATE OR REPLACE VIEW statement found")
    return match.group(2)


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _base_tables() -> dict[str, list[TColumnSchema]]:
    """The columns (dlt hints, in dlt's order) of each base table the views read."""
    tables = {
        "sms": sms_columns() | _ROOT_DLT_COLUMNS,
        "sms__attachments": attachment_columns() | _NESTED_DLT_COLUMNS,
        "sms_events": event_columns() | _ROOT_DLT_COLUMNS,
        **{table: table_hints(table)["columns"] | _ROOT_DLT_COLUMNS for table in CONTEXT_TABLES},
        LEDGER_TABLE: ledger_columns(),
    }
    return {
        table: [cast(TColumnSchema, {"name": name, **hint}) for name, hint in columns.items()]
        for table, columns in tables.items()
    }


def _prepare_base_tables(sql: SqlClientBase[Any]) -> None:
    """Create the missing base tables, and append the declared columns a table lacks."""
    existing = _dataset_columns(sql)[DATASET_NAME]
    for name, columns in _base_tables().items():
        if name not in existing:
            create_table(sql, name, columns)
            continue
        missing = [column for column in columns if column["name"] not in existing[name]]
        if missing:
            add_columns(sql, name, missing)


def _schema_name(sql: SqlClientBase[Any]) -> str:
    # The dataset as the destination stores it (casefolded), for information_schema.
    return sql.make_qualified_table_name_path(None, quote=False)[-1]


def _dataset_columns(sql: SqlClientBase[Any]) -> Schema:
    """Every table and view of the dataset with its columns in order, for `translate`."""
    rows = sql.execute_sql(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = %s ORDER BY table_name, ordinal_position",
        _schema_name(sql),
    )
    tables: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows or ():
        tables.setdefault(table, {})[column] = data_type
    return {DATASET_NAME: tables}


def apply_views(sql: SqlClientBase[Any]) -> list[str]:
    """Create or replace every view through an open sql client; returns the view names.

    The dataset and missing base tables are created first, and the data dictionary's
    descriptions are written as comments last. All of it runs in one transaction, so a failing
    view file leaves the previous views in place.
    """
    dialect = sql.capabilities.sqlglot_dialect
    dictionary = load_dictionary(dictionary_path())
    files = [(path.name, path.read_text(encoding="utf-8")) for path in view_files()]
    names = [view_name(text) for _, text in files]
    with sql.begin_transaction():
        if not sql.has_dataset():
            sql.create_dataset()
        _prepare_base_tables(sql)
        # PostgreSQL binds a view's columns when it is created and refuses a replacement whose
        # columns differ (sms_messages gains a column with every new field).
        _drop(sql, names)
        for file_name, text in files:
            with _failure_of(f"applying {file_name}"):
                # Read per file: a view reads the tables and the views created before it.
                schema = None if dialect == SOURCE_DIALECT else _dataset_columns(sql)
                sql.execute_sql(translate(text, dialect, schema))
        with _failure_of(f"writing the comments of {DICTIONARY_FILE}"):
            apply_comments(sql, dictionary)
    return names


def refresh_views(sql: SqlClientBase[Any], stamp: Path) -> list[str]:
    """Apply the views unless nothing they depend on changed since the apply that `stamp`
    records; returns the view names applied (none when they were current).

    An apply rewrites every view and comment (a quarter of a small run's CPU), though most loads
    change only rows. The stamp holds `views_fingerprint` as it was after the last apply, so any
    change to the view files, the dictionary, a table's columns (a load that added one) or the
    views' (one dropped, or replaced by another version's) applies them again; a view replaced
    by hand with the same columns is not seen (`close-sms views` applies them all).
    """
    if _read_stamp(stamp) == views_fingerprint(sql):
        return []
    # Gone before the views change: a stamp left from an older apply must never match them.
    with suppress(OSError):
        stamp.unlink(missing_ok=True)
    names = apply_views(sql)
    _write_stamp(stamp, views_fingerprint(sql))
    return names


def views_fingerprint(sql: SqlClientBase[Any]) -> str:
    """A digest of what the views are made from: the view files, the data dictionary, and the
    columns of the dataset's tables and views as the database holds them.

    The views' columns stand for the views themselves: DuckDB renders a view's definition
    differently once the file is reopened, so the text cannot be compared.
    """
    digest = hashlib.sha256()
    for path in [*view_files(), dictionary_path()]:
        digest.update(f"{path.name}\0".encode())
        digest.update(path.read_bytes())
    digest.update(repr(sorted(_dataset_columns(sql)[DATASET_NAME].items())).encode())
    return digest.hexdigest()


def _read_stamp(stamp: Path) -> str | None:
    try:
        return stamp.read_text(encoding="utf-8")
    except OSError:
        return None


def _write_stamp(stamp: Path, fingerprint: str) -> None:
    # Only an optimisation: without a stamp, the next run that writes applies the views again.
    partial = stamp.with_name(f"{stamp.name}.partial")
    try:
        partial.write_text(fingerprint, encoding="utf-8")
        os.replace(partial, stamp)
    except OSError:
        with suppress(OSError):
            partial.unlink(missing_ok=True)


def drop_views(sql: SqlClientBase[Any]) -> None:
    """Drop the views of `sql/`, so that the tables under them can be dropped (a full refresh)."""
    with sql.begin_transaction():
        _drop(sql, [view_name(path.read_text(encoding="utf-8")) for path in view_files()])


def _drop(sql: SqlClientBase[Any], names: list[str]) -> None:
    # Dependents first: a view may read the views before it.
    for name in reversed(names):
        with _failure_of(f"dropping view {name}"):
            sql.execute_sql(f"DROP VIEW IF EXISTS {sql.make_qualified_table_name(name)}")


@contextmanager
def _failure_of(action: str) -> Iterator[None]:
    """Turn a database (or translation) failure into one line that names `action`."""
    try:
        yield
    except (DatabaseException, SqlglotError) as exc:
        text = str(exc).strip()
        raise DatabaseError(
            f"{action} failed: {text.splitlines()[0] if text else type(exc).__name__}"
        ) from exc


def missing_views(sql: SqlClientBase[Any]) -> list[str]:
    """The views of `sql/` that the dataset lacks (a run that loads nothing applies only these)."""
    present = {
        name
        for (name,) in sql.execute_sql(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_type = 'VIEW'",
            _schema_name(sql),
        )
        or ()
    }
    names = [view_name(path.read_text(encoding="utf-8")) for path in view_files()]
    return [name for name in names if name not in present]
