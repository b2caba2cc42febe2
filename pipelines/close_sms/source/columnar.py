"""Backfill rows as Arrow tables: dlt writes them to parquet as they are.

dlt's per-row work on row dicts (extract, then the relational normalizer) cost more CPU than
everything else in a backfill. An Arrow table skips it, so the backfill hands dlt tables of
the SMS that come out the same either way:

- no attachments (those are rows of dlt's nested table, made by its normalizer);
- no field outside the declared columns (dlt would add a column, or a nested table);
- every value of its column's type (otherwise dlt keeps it in a variant column).

Every other SMS stays a row dict, and so does a whole batch that Arrow refuses, and every
SMS bound for a destination outside `settings.ARROW_DESTINATIONS`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

import dlt
from dlt.common.configuration.exceptions import ContextDefaultCannotBeCreated
from dlt.common.destination.capabilities import DestinationCapabilitiesContext
from dlt.common.json import json
from dlt.common.normalizers.utils import generate_dlt_ids
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.common.typing import TDataItems

from .. import settings
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
    """Drops dlt's warning, once per backfill run, that the tables' JSON column `users` is text.

    dlt's own parquet writer writes JSON columns as text too, so destinations take it as JSON.
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

    def add(self, rows: list[dict[str, Any]]) -> Iterator[TDataItems]:
        """Take a page of typed rows: yields the ones that stay dicts, and a table once full."""
        if self._load_id is None:
            yield rows
            return
        others = []
        for row in rows:
            if _fits(row):
                self._rows.append(row)
            else:
                others.append(row)
        if others:
            yield others
        if len(self._rows) >= self.batch_rows:
            yield from self.flush()

    def flush(self) -> Iterator[TDataItems]:
        """Hand over what is collected."""
        rows, self._rows = self._rows, []
        if rows:
            assert self._load_id is not None
            yield _table(rows, self._load_id)


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
    return str(load_id)


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
