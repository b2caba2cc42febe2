"""What the destination already holds: the only SQL the source runs, over its resource's table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from ..errors import ConfigError, MassDeleteRefused
from . import settings


@dataclass(frozen=True)
class LoadedTable:
    """The destination table a resource loads, by its normalized name."""

    name: str

    @classmethod
    def of_current_resource(cls) -> LoadedTable:
        """The table of the resource running now, as its hints name it (a user may rename it)."""
        resource = dlt.current.resource()
        if resource.has_dynamic_table_name:
            raise ConfigError(
                f"resource {resource.name} needs a fixed table_name: it reads back what it loaded"
            )
        naming = dlt.current.source_schema().naming
        return cls(naming.normalize_table_identifier(str(resource.table_name)))

    def count(self) -> int:
        """Rows in the table (0 before it exists)."""
        ((rows,),) = self._rows("SELECT count(*) FROM {table}") or [(0,)]
        return int(rows)

    def ids(self) -> set[str]:
        """Every id in the table (none before it exists)."""
        return {row[0] for row in self._rows("SELECT id FROM {table}")}

    def values_of(self, column: str) -> set[str]:
        """The distinct non-null values of `column` (a column of the table's own schema)."""
        return {
            row[0]
            for row in self._rows(
                f"SELECT DISTINCT {column} FROM {{table}} WHERE {column} IS NOT NULL"
            )
        }

    def versions_since(self, lower: datetime) -> list[tuple[Any, ...]]:
        """(id, date_updated, status) of the rows created at `lower` or later."""
        return self._rows(
            "SELECT id, date_updated, status FROM {table} WHERE date_created >= %s", lower
        )

    def ids_loaded_before(self, load_id: str, start: datetime) -> list[str]:
        """Ids created at `start` or later whose rows were last written by a load before `load_id`."""
        rows = self._rows(
            "SELECT id FROM {table} "
            # Load ids are epoch seconds as text; compared as numbers, since a database's text
            # collation may not order them by time.
            "WHERE CAST(_dlt_load_id AS DECIMAL(24, 9)) < CAST(%s AS DECIMAL(24, 9)) "
            "AND date_created >= %s",
            load_id,
            start,
        )
        return [row[0] for row in rows]

    def _rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of `query` (`{table}` in it); none before the table exists."""
        with dlt.current.pipeline().sql_client() as sql:
            if not sql.has_dataset():
                return []
            try:
                table = sql.make_qualified_table_name(self.name)
                rows = sql.execute_sql(query.format(table=table), *args)
            except DatabaseUndefinedRelation:
                return []
        return [tuple(row) for row in rows or []]


def refuse_mass_delete(removals: int, table: LoadedTable, noun: str, max_share: float) -> None:
    """Stop a run that would remove more than `max_share` of `table` without `deleted` events."""
    rows = table.count()
    allowed = max(settings.DELETE_GUARD_MIN_ROWS, max_share * rows)
    if removals > allowed:
        raise MassDeleteRefused(
            f"this run would remove {removals:,} of the {rows:,} {noun} in the "
            f"warehouse without `deleted` events behind them, more than max_delete_share = "
            f"{max_share:g} (and {settings.DELETE_GUARD_MIN_ROWS} rows) allows; "
            "nothing was removed"
        )
