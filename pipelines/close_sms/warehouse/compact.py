"""The DuckDB file rewritten without the bytes of deleted rows (`close-sms compact`).

DuckDB marks the blocks of deleted and replaced rows free and reuses them later, but keeps
their bytes until then: an SMS deleted in Close stays readable in the file, and in every reader
copy of it. A new file that `COPY FROM DATABASE` fills holds the live rows alone; it replaces
the database in one rename, with the database's mode and group, once every table in it counts
the same rows. Every table comes along, dlt's state and load records included, with the views
and comments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlt.destinations.sql_client import SqlClientBase

from ..errors import ConfigError, DatabaseError
from .destination import Warehouse
from .reader_copy import durable_replace, match_access


@dataclass(frozen=True)
class Compaction:
    """The database's size before and after it was rewritten, in bytes."""

    before: int
    after: int


def compact_database(warehouse: Warehouse) -> Compaction:
    """Rewrite the DuckDB file with its live rows only; call it holding the writer lock.

    The reader copy is not touched: publish it again afterwards.
    """
    database = warehouse.database
    if database is None:
        raise ConfigError(
            f"compact is for the duckdb destination only; {warehouse.describe()} frees deleted "
            "rows its own way (PostgreSQL: VACUUM FULL)"
        )
    if not database.exists():
        raise DatabaseError(f"compact: {database} does not exist")
    partial = database.with_name(f".{database.name}.compact")
    before = database.stat().st_size
    try:
        _remove_with_wal(partial)
        with warehouse.sql_client() as sql:
            _copy_live_rows(sql, partial)
        for path in (database, partial):
            if _wal(path).exists():
                # Its changes are in no copy: another process wrote the file meanwhile.
                raise DatabaseError(f"compact: {_wal(path)} appeared while copying; run it again")
        match_access(database, partial)
        durable_replace(partial, database)
    except OSError as exc:
        raise DatabaseError(f"compact {database}: {exc.strerror or exc}") from None
    finally:
        _remove_with_wal(partial)
    return Compaction(before, database.stat().st_size)


def _copy_live_rows(sql: SqlClientBase, partial: Path) -> None:
    """Fill the new file `partial` from the open database, and check that no row was lost."""
    ((source,),) = sql.execute_sql("SELECT current_database()")
    target = f"{source}_compacted"
    # The database's last changes into its file first, so the WAL holds nothing to lose.
    sql.execute_sql("CHECKPOINT")
    sql.execute_sql(f"ATTACH {_literal(str(partial))} AS {_name(target)}")
    try:
        sql.execute_sql(f"COPY FROM DATABASE {_name(source)} TO {_name(target)}")
        lost = _tables_that_differ(sql, source, target)
        if lost:
            raise DatabaseError(
                f"compact: the copy of {', '.join(lost)} does not hold the same rows; "
                "the database was left as it was"
            )
        sql.execute_sql(f"CHECKPOINT {_name(target)}")
    finally:
        sql.execute_sql(f"DETACH {_name(target)}")


def _tables_that_differ(sql: SqlClientBase, source: str, target: str) -> list[str]:
    """The tables whose row counts differ between the two catalogs, or that one lacks."""
    tables = {
        catalog: set(
            sql.execute_sql(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = %s",
                catalog,
            )
        )
        for catalog in (source, target)
    }
    differ = tables[source] ^ tables[target]
    for schema, table in tables[source] & tables[target]:
        ((source_rows, target_rows),) = sql.execute_sql(
            f"SELECT (SELECT count(*) FROM {_name(source)}.{_name(schema)}.{_name(table)}), "
            f"(SELECT count(*) FROM {_name(target)}.{_name(schema)}.{_name(table)})"
        )
        if source_rows != target_rows:
            differ.add((schema, table))
    return sorted(f"{schema}.{table}" for schema, table in differ)


def _name(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _wal(path: Path) -> Path:
    return path.with_name(f"{path.name}.wal")


def _remove_with_wal(path: Path) -> None:
    """Remove a file DuckDB wrote, and the write-ahead log beside it."""
    path.unlink(missing_ok=True)
    _wal(path).unlink(missing_ok=True)
