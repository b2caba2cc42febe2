"""Analytics views: applies the `.sql` files of the `sql/` folder to a DuckDB database.

Each file holds one `CREATE OR REPLACE VIEW close_sms.<name>` statement and is applied in
file-name order, so a numeric prefix orders views that build on other views.

The views read dlt's tables `sms`, `sms__attachments` and `sms_events`. A database that has
not loaded them yet (a fresh file, or a sync that never saw an attachment or an event) gets
them created empty first, with the column names, types and order dlt itself creates, so
every view binds and returns no rows, and a later dlt load adopts the tables as they are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb

from ..settings import DATASET_NAME
from ..source.schema import attachment_columns, event_columns, sms_columns

_VIEW_NAME = re.compile(
    r"CREATE\s+OR\s+REPLACE\s+VIEW\s+(?:\"?(\w+)\"?\.)?\"?(\w+)\"?", re.IGNORECASE
)

# dlt's bookkeeping columns, in the order dlt appends them after the data columns.
_ROOT_DLT_COLUMNS = (("_dlt_load_id", "VARCHAR"), ("_dlt_id", "VARCHAR"))
_NESTED_DLT_COLUMNS = (
    ("_dlt_root_id", "VARCHAR"),
    ("_dlt_parent_id", "VARCHAR"),
    ("_dlt_list_idx", "BIGINT"),
    ("_dlt_id", "VARCHAR"),
)


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


def _duckdb_type(hint: dict[str, Any]) -> str:
    # The types dlt's DuckDB destination maps these hints to (checked by a test against a load).
    data_type = hint["data_type"]
    if data_type == "text":
        return "VARCHAR"
    if data_type == "timestamp":
        return "TIMESTAMP WITH TIME ZONE" if hint.get("timezone", True) else "TIMESTAMP"
    if data_type == "json":
        return "JSON"
    if data_type == "bool":
        return "BOOLEAN"
    if data_type == "bigint":
        return "BIGINT"
    if data_type == "double":
        return "DOUBLE"
    if data_type == "decimal":
        return f"DECIMAL({hint.get('precision', 38)},{hint.get('scale', 9)})"
    raise ValueError(f"no DuckDB type known for hint {hint!r}")


def _columns_ddl(hints: dict[str, dict[str, Any]], dlt_columns: tuple[tuple[str, str], ...]) -> str:
    parts = []
    for name, hint in hints.items():
        not_null = "" if hint.get("nullable", True) else " NOT NULL"
        parts.append(f'"{name}" {_duckdb_type(hint)}{not_null}')
    parts.extend(f'"{name}" {duckdb_type} NOT NULL' for name, duckdb_type in dlt_columns)
    return ", ".join(parts)


def base_tables_ddl() -> dict[str, str]:
    """`CREATE TABLE IF NOT EXISTS` for each base table the views read, keyed by table name."""
    tables = {
        "sms": _columns_ddl(sms_columns(), _ROOT_DLT_COLUMNS),
        "sms__attachments": _columns_ddl(attachment_columns(), _NESTED_DLT_COLUMNS),
        "sms_events": _columns_ddl(event_columns(), _ROOT_DLT_COLUMNS),
    }
    return {
        name: f"CREATE TABLE IF NOT EXISTS {DATASET_NAME}.{name} ({columns})"
        for name, columns in tables.items()
    }


def apply_views_on(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """Create or replace every view on an open read-write connection; returns the view names.

    Missing base tables are created empty first. All of it runs in one transaction, so a
    failing view file leaves the previous views in place.
    """
    (catalog,) = connection.execute("SELECT current_database()").fetchone()
    if catalog == DATASET_NAME:
        # `close_sms.sms` would then name the catalog, not the schema, and resolve wrongly.
        raise ValueError(
            f"the database file must not be named {DATASET_NAME}.duckdb "
            f"(its catalog name clashes with the schema {DATASET_NAME})"
        )
    files = view_files()
    names: list[str] = []
    connection.execute("BEGIN TRANSACTION")
    try:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {DATASET_NAME}")
        for ddl in base_tables_ddl().values():
            connection.execute(ddl)
        for path in files:
            sql = path.read_text(encoding="utf-8")
            name = view_name(sql)
            try:
                connection.execute(sql)
            except duckdb.Error as exc:
                raise RuntimeError(f"applying {path.name} failed: {exc}") from exc
            names.append(name)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return names


def missing_views(sql: Any) -> list[str]:
    connection = sql.native_connection
    """The views of `sql/` that the database lacks (a run that loads nothing applies only these)."""
    present = {
        name
        for (name,) in connection.execute(
            "SELECT view_name FROM duckdb_views() WHERE schema_name = ?", [DATASET_NAME]
        ).fetchall()
    }
    names = [view_name(path.read_text(encoding="utf-8")) for path in view_files()]
    return [name for name in names if name not in present]


def apply_views(sql: Any) -> list[str]:
    return apply_views_on(sql.native_connection)
