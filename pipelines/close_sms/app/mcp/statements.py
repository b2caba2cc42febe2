"""The server's own SQL, sent to a worker by name: `{name: sql}`.

Values are written into the SQL as quoted literals rather than bound as parameters: DuckDB's
Python client imports pandas on the first bound parameter, 0.7 s of a worker's first answer.
"""

from __future__ import annotations

from dataclasses import fields

from dlt.common.schema.typing import (
    LOADS_TABLE_NAME,
    PIPELINE_STATE_TABLE_NAME,
    VERSION_TABLE_NAME,
)

from ...source import settings
from ...warehouse.ledger import LEDGER_TABLE, SUCCESS, SyncRun

RUN_COLUMNS = [field.name for field in fields(SyncRun)]


def literal(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


DATASET = literal(settings.DATASET_NAME)


def table(name: str) -> str:
    """The dataset's table `name` as a quoted SQL name."""
    return f'"{settings.DATASET_NAME}"."' + name.replace('"', '""') + '"'


def tables_statement() -> dict[str, str]:
    """The dataset's tables and views, each with its kind and comment."""
    return {
        "tables": f"""
            SELECT table_name, 'table', comment FROM duckdb_tables()
            WHERE schema_name = {DATASET} AND NOT internal
            UNION ALL
            SELECT view_name, 'view', comment FROM duckdb_views()
            WHERE schema_name = {DATASET} AND NOT internal
            ORDER BY 2, 1
        """
    }


def columns_statement(name: str) -> dict[str, str]:
    """The columns of the dataset's table or view `name`, in order."""
    return {
        "columns": "SELECT column_name, data_type, is_nullable, comment FROM duckdb_columns() "
        f"WHERE schema_name = {DATASET} AND table_name = {literal(name)} ORDER BY column_index"
    }


def status_statements() -> dict[str, str]:
    """What `sync_status` reads: the source's state, dlt's schemas and loads, the ledger."""
    state, loads, ledger = (
        table(PIPELINE_STATE_TABLE_NAME),
        table(LOADS_TABLE_NAME),
        table(LEDGER_TABLE),
    )
    runs = f"SELECT {', '.join(RUN_COLUMNS)} FROM {ledger}"
    return {
        # The state dlt would restore: that of the newest completed load.
        "state": f"SELECT s.state FROM {state} AS s JOIN {loads} AS l "
        f"ON l.load_id = s._dlt_load_id WHERE s.pipeline_name = {literal(settings.PIPELINE_NAME)} "
        "AND l.status = 0 ORDER BY l.load_id DESC LIMIT 1",
        "schemas": f"SELECT schema_name, schema FROM {table(VERSION_TABLE_NAME)} "
        "QUALIFY row_number() OVER (PARTITION BY schema_name ORDER BY inserted_at DESC) = 1",
        "last_load": f"SELECT max(inserted_at) FROM {loads} WHERE status = 0",
        # By end, not start: a cron run refused the lock (exit 5) ends before the run holding it.
        "last_run": f"{runs} ORDER BY ended_at DESC LIMIT 1",
        "last_success": f"{runs} WHERE outcome = {literal(str(SUCCESS))} "
        "ORDER BY ended_at DESC LIMIT 1",
        "tables": f"SELECT table_name FROM duckdb_tables() WHERE schema_name = {DATASET}",
    }


def count_statement(tables: list[str]) -> dict[str, str]:
    """One statement counting the rows of each of `tables`."""
    return {
        "counts": " UNION ALL ".join(
            f"SELECT {literal(name)}, count(*) FROM {table(name)}" for name in tables
        )
    }
