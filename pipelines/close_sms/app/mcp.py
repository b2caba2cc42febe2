"""`close-sms mcp`: a read-only Model Context Protocol server over stdio for the warehouse.

It answers from one DuckDB file (best the reader copy), opened read-only for each call and
closed before the answer goes out, so it never keeps a sync from writing. It reads only what
the warehouse holds, so hashed columns stay hashed, and never reads Close's settings, so no API
key ever reaches it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import duckdb
import sqlglot
from pydantic import Field
from sqlglot import exp
from sqlglot.errors import ParseError
from typing_extensions import TypedDict

from ..errors import ConfigError, SyncError, needs_cli_extra, one_line
from ..source import settings
from ..warehouse.duckdb_wait import is_lock_conflict

DEFAULT_MAX_ROWS = 1000
DEFAULT_TIMEOUT_SECONDS = 30
# Defence behind the SQL check: the connection can reach no file but its own database (no
# read_csv, ATTACH, COPY or extension installs), and a query cannot SET that back.
CONNECTION_CONFIG = {"enable_external_access": False, "lock_configuration": True}
# Statements that write, reach outside the database or change the session: never run.
REFUSED_STATEMENTS = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Copy,
    exp.Attach,
    exp.Detach,
    exp.Pragma,
    exp.Set,
    exp.Install,
    exp.Use,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Command,
)
# DuckDB's table functions that read files, URLs or other databases, or run a SQL string.
FILE_FUNCTIONS = re.compile(
    r"read_\w+|glob|query|query_table|sniff_csv|parquet_\w+|\w+_scan|iceberg_\w+|delta_\w+"
    r"|sqlite_\w+|postgres_\w+|mysql_\w+|ducklake_\w+"
)
# A table name with these reads a file through DuckDB's replacement scans ("data.csv").
FILE_NAME_CHARACTERS = re.compile(r"[./\\:*]")
# The server prints nothing on stdout, which carries the protocol; these would log to stderr.
QUIET_LOGGERS = ("sqlglot",)


class TableInfo(TypedDict):
    """A table or view of the dataset."""

    name: str
    kind: str
    description: str | None


class ColumnInfo(TypedDict):
    """A column of a table or view."""

    name: str
    type: str
    nullable: bool
    description: str | None


class TableDescription(TableInfo):
    """A table or view with its columns."""

    columns: list[ColumnInfo]


class QueryResult(TypedDict):
    """The rows of a query, up to the row cap."""

    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool


class Unanswerable(Exception):
    """A question the server refuses or cannot answer; the message says why in one line."""


def check_query(sql: str) -> None:
    """Raise `Unanswerable` unless `sql` is one read-only SELECT (DuckDB's dialect)."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except ParseError as exc:
        raise Unanswerable(f"not valid SQL: {one_line(exc)}") from None
    if len(statements) != 1:
        raise Unanswerable(f"send exactly one SELECT statement, not {len(statements)}")
    (statement,) = statements
    for node in statement.walk():
        if isinstance(node, REFUSED_STATEMENTS):
            raise Unanswerable(
                f"only SELECT is allowed, not {_keyword(node)}: the server is read-only"
            )
        if isinstance(node, exp.Func):
            name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            if FILE_FUNCTIONS.fullmatch(name.lower()):
                raise Unanswerable(
                    f"{name.lower()}() reads outside the warehouse: only its tables and views"
                )
        if isinstance(node, exp.Table) and FILE_NAME_CHARACTERS.search(node.name):
            raise Unanswerable(
                f"table {node.name!r} looks like a file: only the warehouse's tables and views"
            )
    if not isinstance(statement, (exp.Select, exp.SetOperation, exp.Subquery)):
        raise Unanswerable(f"only SELECT is allowed, not {_keyword(statement)}")


def _keyword(node: exp.Expression) -> str:
    """The statement's leading keyword as written, e.g. INSERT, ATTACH, PRAGMA."""
    words = node.sql(dialect="duckdb").split()
    return words[0].upper() if words else type(node).__name__.upper()


@dataclass(frozen=True)
class WarehouseReader:
    """Answers about one DuckDB file, opening it read-only for each answer."""

    database: Path
    max_rows: int = DEFAULT_MAX_ROWS
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def tables(self) -> list[TableInfo]:
        """The dataset's tables and views, with the database's own comments on them."""
        with self._connect() as connection:
            rows = connection.execute(
                """
                SELECT table_name, 'table', comment FROM duckdb_tables()
                WHERE schema_name = $schema AND NOT internal
                UNION ALL
                SELECT view_name, 'view', comment FROM duckdb_views()
                WHERE schema_name = $schema AND NOT internal
                ORDER BY 2, 1
                """,
                {"schema": settings.DATASET_NAME},
            ).fetchall()
        # dlt's bookkeeping tables answer no analyst's question; they stay queryable.
        return [
            TableInfo(name=name, kind=kind, description=comment or None)
            for name, kind, comment in rows
            if not name.startswith("_dlt_")
        ]

    def describe(self, name: str) -> TableDescription:
        """One table or view (`sms_daily` or `close_sms.sms_daily`) and its columns."""
        schema, _, table = name.rpartition(".")
        if schema not in ("", settings.DATASET_NAME):
            raise Unanswerable(f"{name}: only the dataset {settings.DATASET_NAME} is here")
        found = [t for t in self.tables() if t["name"] == table]
        if not found:
            raise Unanswerable(f"no table or view {name} (list_tables names them)")
        with self._connect() as connection:
            columns = connection.execute(
                "SELECT column_name, data_type, is_nullable, comment FROM duckdb_columns() "
                "WHERE schema_name = ? AND table_name = ? ORDER BY column_index",
                [settings.DATASET_NAME, table],
            ).fetchall()
        return TableDescription(
            **found[0],
            columns=[
                ColumnInfo(name=column, type=kind, nullable=nullable, description=comment or None)
                for column, kind, nullable, comment in columns
            ],
        )

    def query(self, sql: str) -> QueryResult:
        """The rows of one checked SELECT, up to `max_rows`, stopped after `timeout` seconds."""
        check_query(sql)
        with self._connect() as connection:
            # DuckDB has no statement timeout: interrupt() from another thread stops the query.
            timer = threading.Timer(self.timeout, connection.interrupt)
            timer.start()
            try:
                cursor = connection.execute(sql)
                columns = [column[0] for column in cursor.description or []]
                rows = cursor.fetchmany(self.max_rows + 1)
            except duckdb.InterruptException:
                raise Unanswerable(
                    f"the query ran longer than {self.timeout:g} s and was stopped (--timeout)"
                ) from None
            finally:
                timer.cancel()
        truncated = len(rows) > self.max_rows
        rows = rows[: self.max_rows]
        return QueryResult(
            columns=columns, rows=as_json(rows), row_count=len(rows), truncated=truncated
        )

    def status(self) -> dict[str, Any]:
        """What `close-sms status --json` reports, read from this file."""
        from ..warehouse.destination import Warehouse
        from ..warehouse.status import read_status
        from .runner import dlt_errors

        with dlt_errors():
            # lock_wait 0: while a sync writes the file, say so now rather than hang the client.
            return as_json(read_status(Warehouse.configure(database=self.database, lock_wait=0)))

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            connection = duckdb.connect(
                str(self.database), read_only=True, config=CONNECTION_CONFIG
            )
        except duckdb.Error as exc:
            if is_lock_conflict(exc):
                raise Unanswerable(
                    f"a sync is writing {self.database} right now (DuckDB allows one writer, or "
                    "readers): ask again in a moment, or serve the reader copy instead"
                ) from None
            raise
        try:
            yield connection
        finally:
            connection.close()


def as_json(value: Any) -> Any:
    """`value` as JSON has it: dates, decimals and other scalars as text, as `status --json`."""
    return json.loads(json.dumps(value, default=str))


@contextmanager
def _answers(tool_error: type[Exception]) -> Iterator[None]:
    """Anticipated failures reach the client as `tool_error`, in one line."""
    try:
        yield
    except (Unanswerable, SyncError, duckdb.Error) as exc:
        raise tool_error(one_line(exc)) from None


def build_server(reader: WarehouseReader) -> Any:
    """The MCP server and its tools over `reader`."""
    with needs_cli_extra("close-sms mcp", extra="mcp"):
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
        from mcp.types import ToolAnnotations

    from ..warehouse.ledger import product_version

    server = MCPServer(
        name="close-sms",
        version=product_version(),
        instructions=(
            f"Close CRM SMS synced by close-sms into DuckDB, dataset {settings.DATASET_NAME}. "
            "Start with list_tables; the sms_* views answer most questions. Read-only."
        ),
        log_level="WARNING",
    )
    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)

    @server.tool(annotations=read_only)
    def list_tables() -> list[TableInfo]:
        """The warehouse's tables and views, each with its description."""
        with _answers(ToolError):
            return reader.tables()

    @server.tool(annotations=read_only)
    def describe_table(
        name: Annotated[str, Field(description="a table or view, e.g. sms_daily")],
    ) -> TableDescription:
        """One table or view: its description, and its columns with types and descriptions."""
        with _answers(ToolError):
            return reader.describe(name)

    @server.tool(annotations=read_only)
    def query(
        sql: Annotated[
            str,
            Field(
                description=f"one SELECT in DuckDB's dialect, e.g. SELECT * FROM "
                f"{settings.DATASET_NAME}.sms_daily ORDER BY message_date DESC LIMIT 10"
            ),
        ],
    ) -> QueryResult:
        """Run one read-only SELECT; at most the row cap comes back, and a slow one is stopped."""
        with _answers(ToolError):
            return reader.query(sql)

    @server.tool(annotations=read_only)
    def sync_status() -> dict[str, Any]:
        """What `close-sms status` reports: last load, change-feed lag, backfill, last runs, rows."""
        with _answers(ToolError):
            return reader.status()

    return server


def serve(database: Path, max_rows: int, timeout: float) -> None:
    """Answer MCP requests on stdin/stdout until the client closes them."""
    if not database.is_file():
        raise ConfigError(f"--database: {database} does not exist; run `close-sms sync` first")
    server = build_server(WarehouseReader(database.resolve(), max_rows, timeout))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    server.run("stdio")
