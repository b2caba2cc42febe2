"""The process that runs `close-sms mcp`'s SQL, so that the server can kill it at the deadline.

DuckDB cannot interrupt some calls (one `levenshtein` of two long strings runs on for seconds),
and while one runs the worker holds the file; killing the process ends both at once. The server
starts it as `python -I -m close_sms.app.mcp.worker DATABASE LIMITS` and writes one JSON request
a line to its stdin; the worker answers each with one JSON line on stdout. It imports only the
standard library and duckdb, so a replacement is ready in a fraction of a second.

Each request opens the file read-only, with external access off and the configuration locked,
and closes it before the answer goes out.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
from dataclasses import dataclass
from typing import Any

import duckdb

# Room beyond DuckDB's memory_limit for Python, DuckDB's own code and the values DuckDB does
# not count against its limit (one huge string): the kernel refuses the worker more than this.
ADDRESS_SPACE_HEADROOM_MB = 384
# An answer wider than this is refused: even cut cells would make one row too large.
MAX_COLUMNS = 500
# Values of these types have a small fixed size and pass as they are; every other column is
# cut inside DuckDB, so a huge value never reaches Python whole.
FIXED_SIZE_TYPES = frozenset(
    {
        "boolean",
        "tinyint",
        "smallint",
        "integer",
        "bigint",
        "hugeint",
        "utinyint",
        "usmallint",
        "uinteger",
        "ubigint",
        "uhugeint",
        "float",
        "double",
        "decimal",
        "date",
        "time",
        "time with time zone",
        "timestamp",
        "timestamp with time zone",
        "timestamp_s",
        "timestamp_ms",
        "timestamp_ns",
        "interval",
        "uuid",
    }
)
# Lists, structs and maps come back as their JSON text, cut like any text, parsed when whole.
NESTED_TYPES = frozenset({"list", "array", "struct", "map", "union"})
FETCH_BATCH_ROWS = 256


@dataclass(frozen=True)
class Limits:
    """What one answer may cost: DuckDB's memory and threads, and the answer's size."""

    memory_limit_mb: int
    threads: int
    max_rows: int
    max_bytes: int
    max_cell_chars: int


def connect(database: str, limits: Limits) -> duckdb.DuckDBPyConnection:
    """`database` opened read-only, able to reach no other file and to change no setting."""
    connection = duckdb.connect(
        database,
        read_only=True,
        config={
            # No file but this database (no read_csv, ATTACH, COPY), no extension loaded or
            # installed on demand, and no table name resolved to an object of this process.
            "enable_external_access": False,
            "autoload_known_extensions": False,
            "autoinstall_known_extensions": False,
            "python_enable_replacements": False,
            "memory_limit": f"{limits.memory_limit_mb}MB",
            "threads": limits.threads,
            # No spilling to disk: a reader writes no file, and a killed one would leave them.
            "temp_directory": "",
        },
    )
    try:
        # Set here, not in `config`: DuckDB knows ICU's TimeZone only once the file is open.
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("SET enable_progress_bar = false")
        # Last: from here on no statement can change a setting back.
        connection.execute("SET lock_configuration = true")
    except BaseException:
        connection.close()
        raise
    return connection


def run_statements(
    connection: duckdb.DuckDBPyConnection, statements: dict[str, str]
) -> dict[str, Any]:
    """The rows of each of the server's own statements (`name: sql`), or its error."""
    results: dict[str, Any] = {}
    for name, sql in statements.items():
        try:
            results[name] = {"rows": connection.execute(sql).fetchall()}
        except duckdb.Error as exc:
            results[name] = {"error": _first_line(exc)}
    return results


def run_query(connection: duckdb.DuckDBPyConnection, sql: str, limits: Limits) -> dict[str, Any]:
    """The rows of one checked SELECT, within the row and byte caps, long cells cut."""
    relation = connection.sql(sql)
    names, types = relation.columns, relation.types
    if len(names) > MAX_COLUMNS:
        raise ValueError(f"the answer has {len(names)} columns; at most {MAX_COLUMNS} come back")
    aliases = [f"c{index}" for index in range(len(names))]
    nested = [kind.id in NESTED_TYPES for kind in types]
    cells = ", ".join(
        _bounded(alias, kind.id, limits.max_cell_chars)
        for alias, kind in zip(aliases, types, strict=True)
    )
    cursor = connection.execute(
        f"SELECT {cells} FROM ({sql}) AS answer({', '.join(aliases)}) LIMIT {limits.max_rows + 1}"
    )
    rows: list[list[Any]] = []
    cut_cells: list[list[int]] = []
    size = 0
    truncated = False
    while not truncated and (batch := cursor.fetchmany(FETCH_BATCH_ROWS)):
        for row in batch:
            values, cuts = _cells(row, nested, limits.max_cell_chars)
            # The row as JSON, and about 12 bytes for each of its [row, column] in cut_cells.
            cost = len(json.dumps(values, default=str).encode()) + 12 * len(cuts)
            if len(rows) == limits.max_rows or size + cost > limits.max_bytes:
                truncated = True
                break
            cut_cells += [[len(rows), column] for column in cuts]
            rows.append(values)
            size += cost
    return {
        "columns": names,
        "rows": rows,
        "row_count": len(rows),
        "truncated": truncated,
        "cut_cells": cut_cells,
    }


def _bounded(alias: str, type_id: str, max_chars: int) -> str:
    """The select expression of one column: as it is, or as text of at most `max_chars` + 1."""
    if type_id in FIXED_SIZE_TYPES:
        return alias
    text = f"to_json({alias})" if type_id in NESTED_TYPES else alias
    # One character more than may be shown tells a cut cell from one that fits exactly.
    return f"left(CAST({text} AS VARCHAR), {max_chars + 1})"


def _cells(row: tuple[Any, ...], nested: list[bool], max_chars: int) -> tuple[list[Any], list[int]]:
    """A row's cells as the answer holds them, and the columns whose cells were cut."""
    values: list[Any] = []
    cuts: list[int] = []
    for column, (value, is_nested) in enumerate(zip(row, nested, strict=True)):
        if isinstance(value, str) and len(value) > max_chars:
            cuts.append(column)
            value = value[:max_chars]
        elif is_nested and value is not None:
            value = json.loads(value)
        values.append(value)
    return values, cuts


def answer(database: str, limits: Limits, request: dict[str, Any]) -> dict[str, Any]:
    """One request's answer: `{"result": ...}`, or `{"error": one line}`."""
    try:
        with connect(database, limits) as connection:
            if "query" in request:
                return {"result": run_query(connection, request["query"], limits)}
            return {"result": run_statements(connection, request["statements"])}
    except (duckdb.Error, ValueError) as exc:
        return {"error": _first_line(exc)}
    except MemoryError:
        return {"error": "Out of Memory Error: the answer needs more memory than the worker has"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main() -> None:
    """Answer requests on stdin until it closes."""
    database, limits_json = sys.argv[1:]
    limits = Limits(**json.loads(limits_json))
    ceiling = (limits.memory_limit_mb + ADDRESS_SPACE_HEADROOM_MB) * 1_000_000
    # Where the kernel refuses this limit (macOS), DuckDB's memory_limit still holds.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    # Answers go to a copy of stdout; stdout itself becomes stderr, so nothing DuckDB might
    # print there can break the protocol.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    for line in sys.stdin.buffer:
        reply = answer(database, limits, json.loads(line))
        answers.write(json.dumps(reply, default=str).encode() + b"\n")
        answers.flush()


if __name__ == "__main__":
    main()
