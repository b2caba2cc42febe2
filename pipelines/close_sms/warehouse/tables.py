"""Tables created with plain SQL, typed by dlt's own type mapper for the destination."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from dlt.common.destination import PreparedTableSchema
from dlt.common.schema.typing import TColumnSchema
from dlt.common.schema.utils import new_table
from dlt.destinations.sql_client import SqlClientBase


def _definitions(
    sql: SqlClientBase[Any], name: str, columns: Sequence[TColumnSchema], not_null: bool
) -> list[str]:
    """`<column> <type>[ NOT NULL]` per column, as a dlt load would declare them."""
    mapper = sql.capabilities.get_type_mapper()
    table = cast(PreparedTableSchema, new_table(name, columns=list(columns)))
    return [
        f"{sql.escape_column_name(column['name'])} "
        f"{mapper.to_destination_type(column, table)}"
        f"{' NOT NULL' if not_null and not column.get('nullable', True) else ''}"
        for column in columns
    ]


def create_table(sql: SqlClientBase[Any], name: str, columns: Sequence[TColumnSchema]) -> None:
    """`CREATE TABLE IF NOT EXISTS` in the dataset, with the types a dlt load would create."""
    definitions = ", ".join(_definitions(sql, name, columns, not_null=True))
    sql.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {sql.make_qualified_table_name(name)} ({definitions})"
    )


def add_columns(sql: SqlClientBase[Any], name: str, columns: Sequence[TColumnSchema]) -> None:
    """Append `columns` to an existing table, nullable (the table may hold rows), as dlt would."""
    for definition in _definitions(sql, name, columns, not_null=False):
        sql.execute_sql(
            f"ALTER TABLE {sql.make_qualified_table_name(name)} ADD COLUMN {definition}"
        )
