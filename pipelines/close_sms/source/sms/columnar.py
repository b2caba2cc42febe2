"""Backfill rows as Arrow tables: dlt writes them to parquet as they are.

dlt's per-row work on row dicts (extract, then the relational normalizer) cost more CPU than
everything else in a backfill. An Arrow table skips it, so the backfill hands dlt tables of
the SMS that come out the same either way:

- no attachments (those are rows of dlt's nested table, made by its normalizer);
- no field outside the declared columns (dlt would add a column, or a nested table);
- every value of its column's type (otherwise dlt keeps it in a variant column).

Every other SMS stays a row dict, and so does a whole batch that Arrow refuses, every SMS
bound for a destination outside `settings.ARROW_DESTINATIONS`, every SMS of a backfill
resource with dlt's `add_limit`, and every SMS where dlt's parquet normalizer adds row keys.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

import dlt
from dlt.common.configuration import known_sections, resolve_configuration
from dlt.common.configuration.exceptions import ContextDefaultCannotBeCreated
from dlt.common.destination.capabilities import DestinationCapabilitiesContext
from dlt.common.json import json
from dlt.common.normalizers.utils import generate_dlt_ids
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.common.typing import TDataItems
from dlt.normalize.configuration import ItemsNormalizerConfiguration

from ... import settings
from .schema import (
    DELETED_COLUMN,
    LOAD_ID_COLUMN,
    ROW_KEY_COLUMN,
    SMS_TIMESTAMP_FIELDS,
    sms_columns,
    sms_dlt_columns,
)

if TYPE_CHECKING:
    import pyarrow as pa

_COLUMNS = {
    name: dict(hint, name=name)
    for name, hint in (sms_columns() | sms_dlt_columns()).items()
    if name != DELETED_COLUMN
}
_DATA_FIELDS = tuple(name for name in _COLUMNS if name not in (ROW_KEY_COLUMN, LOAD_ID_COLUMN))
# An empty or missing `attachments` makes nothing in dlt's rows, so it is left out.
_ACCEPTED_FIELDS = frozenset((*_DATA_FIELDS, "attachments"))
_NO_ATTACHMENTS = (None, [], {})
_JSON_FIELDS = tuple(name for name, column in _COLUMNS.items() if column["data_type"] == "json")
# Arrow would take an int for a timestamp (as microseconds) or a decimal; dlt would not.
_TYPED_FIELDS = (
    *((name, datetime) for name in SMS_TIMESTAMP_FIELDS),
    ("cost", Decimal),
    *((name, (list, dict)) for name in _JSON_FIELDS),
)


# pyarrow is imported on first use: 0.05 s that a cron run with nothing to backfill saves.
@cache
def arrow_schema() -> pa.Schema:
    """The types dlt's own parquet writer gives these columns: JSON as text, timestamps in UTC."""
    from dlt.common.libs.pyarrow import columns_to_arrow

    return columns_to_arrow(_COLUMNS, DestinationCapabilitiesContext.generic_capabilities(), "UTC")


class _JsonAsText(logging.Filter):
    """Drops dlt's summary warning, for each table, that its column hints differ from the schema's.

    The tables are typed by the schema's own columns (`arrow_schema`), so the one difference is
    the JSON column `users` as text, which dlt's own parquet writer writes too; destinations take
    it as JSON. dlt logs each differing hint at INFO, and that stays.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_JSON_AS_TEXT_WARNING)


_JSON_AS_TEXT_WARNING = "In resource: sms_backfill, when merging arrow schema with dlt schema"
logging.getLogger("dlt").addFilter(_JsonAsText())


class ArrowBatcher:
    """Collects typed SMS rows into Arrow tables of `batch_rows`; hands back those that can't be."""

    def __init__(self, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self._rows: list[dict[str, Any]] = []
        self._load_id = _arrow_load_id()

    @property
    def holding(self) -> int:
        """Rows taken and not handed back yet."""
        return len(self._rows)

    def add(self, rows: list[dict[str, Any]]) -> list[TDataItems]:
        """Take a page of typed rows: the items for dlt now (the rows that stay dicts, and a
        table once one is full)."""
        if self._load_id is None:
            return [rows] if rows else []
        others = []
        for row in rows:
            (self._rows if _fits(row) else others).append(row)
        items: list[TDataItems] = [others] if others else []
        if len(self._rows) >= self.batch_rows:
            items += self.flush()
        return items

    def flush(self) -> list[TDataItems]:
        """A table of every row still held (none if none is)."""
        rows, self._rows = self._rows, []
        return [_table(rows, self._load_id)] if rows and self._load_id else []


def _fits(row: dict[str, Any]) -> bool:
    if row.get("attachments") not in _NO_ATTACHMENTS or not row.keys() <= _ACCEPTED_FIELDS:
        return False
    return all(
        (value := row.get(name)) is None or isinstance(value, kind) for name, kind in _TYPED_FIELDS
    )


def _arrow_load_id() -> str | None:
    """The load id Arrow rows carry, or None where the rows stay dicts."""
    try:
        load_id = dlt.current.load_package_state()["load_id"]
    except (CurrentLoadPackageStateNotAvailable, ContextDefaultCannotBeCreated):
        # Read outside a dlt extract (no package, no load id): dlt types the rows itself.
        return None
    destination = dlt.current.pipeline().destination
    if destination is None or destination.destination_type not in settings.ARROW_DESTINATIONS:
        return None
    if _parquet_normalizer().add_dlt_id:
        # dlt would add a second `_dlt_id` to tables that carry one.
        return None
    if dlt.current.get_resource().limit is not None:
        # dlt's add_limit closes the generator after an item: rows held for a table would keep
        # their pages out of the state run after run, so every page goes to dlt whole.
        return None
    return str(load_id)


def _parquet_normalizer() -> ItemsNormalizerConfiguration:
    # Resolved as dlt's extractor resolves it, so a pipeline-scoped setting counts too.
    return resolve_configuration(
        ItemsNormalizerConfiguration(), sections=(known_sections.NORMALIZE, "parquet_normalizer")
    )


def _table(rows: list[dict[str, Any]], load_id: str) -> TDataItems:
    columns = {name: [row.get(name) for row in rows] for name in _DATA_FIELDS}
    for name in _JSON_FIELDS:
        columns[name] = [None if value is None else json.dumps(value) for value in columns[name]]
    columns[ROW_KEY_COLUMN] = generate_dlt_ids(len(rows))
    columns[LOAD_ID_COLUMN] = [load_id] * len(rows)
    import pyarrow as pa

    try:
        return pa.Table.from_pydict(columns, schema=arrow_schema())
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # A value Arrow refuses (a number where text belongs): dlt's normalizer types the
        # batch as it types every row dict.
        return rows
