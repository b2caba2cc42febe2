"""Tables created with plain SQL, typed by dlt's own type mapper for the destination."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from dlt.common.destination import PreparedTableSchema
from dlt.common.schema.typing import TColumnSchema
from dlt.common.schema.utils import new_table
from dlt.destinations.sql_client import SqlClientBase


def create_table(sql: SqlClientBase[Any], name: str, columns: Sequence[TColumnSchema]) -> None:
    """`CREATE TABLE IF NOT EXISTS` in the dataset, with the types a dlt load would create."""
    mapper = sql.capabilities.get_type_mapper()
    table = cast(PreparedTableSchema, new_table(name, columns=list(columns)))
    definitions = ", ".join(
        f"{sql.escape_column_name(column['name'])} "
        f"{mapper.to_destination_type(column, table)}"
        f"{'' if column.get('nullable', True) else ' NOT NULL'}"
        for column in columns
    )
    sql.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {sql.make_qualified_table_name(name)} ({definitions})"
    )
