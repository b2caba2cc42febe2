"""Backfill rows as Arrow tables: dlt writes them to parquet as they are.

dlt's per-row work on row dicts (extract, then the relational normalizer) cost more CPU than
everything else in a backfill. An Arrow table skips it, so the backfill hands dlt tables of
the SMS that come out the same either way:

- no attachments (those are rows of dlt's nested table, made by its normalizer);
- every value of its column's type (otherwise dlt keeps it in a variant column);
- a field outside the declared columns only as a scalar (str, int, bool, float) or null: a
  dict or list would be a nested table or more columns. A batch carries such a field as a
  column of the type dlt would give it, and only when each of its values has that type.

On PostgreSQL an SMS with an empty text anywhere stays a row dict too: dlt loads Arrow tables
into it from csv with `FORCE_NULL`, which makes `""` a NULL; its insert statements keep `""`.

Every other SMS stays a row dict, and so does a whole batch that Arrow refuses (or whose
undeclared field has values of several types, or of a type other than its column's), every SMS
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
from dlt.common import json
from dlt.common.configuration import known_sections, resolve_configuration
from dlt.common.configuration.exceptions import ContextDefaultCannotBeCreated
from dlt.common.destination import DestinationCapabilitiesContext
from dlt.common.normalizers.utils import generate_dlt_ids
from dlt.common.schema.typing import TDataType
from dlt.common.schema.utils import autodetect_sc_type, is_complete_column
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.normalize.configuration import ItemsNormalizerConfiguration
from dlt.sources import TDataItems

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
# The types an undeclared field may have in a table, and dlt's type of each; looked up by
# exact type, so that True is a bool here, not an int.
_SCALAR_TYPES: dict[type, TDataType] = {str: "text", int: "bigint", bool: "bool", float: "double"}
_TABLE_NAME = "sms"
# Destinations that dlt loads Arrow tables into from csv files with `FORCE_NULL` on every
# nullable column, so that an empty text arrives as NULL.
_EMPTY_TEXT_AS_NULL = ("dlt.destinations.postgres",)


def _empty_text(row: dict[str, Any]) -> bool:
    """Whether a text of `row` is empty, or will be once its NULs are removed for the destination."""
    return any(isinstance(value, str) and not value.strip("\x00") for value in row.values())


# pyarrow is imported on first use: 0.05 s that a cron run with nothing to backfill saves.
@cache
def arrow_schema(extra: tuple[tuple[str, TDataType], ...] = ()) -> pa.Schema:
    """The types dlt's own parquet writer gives these columns: JSON as text, timestamps in UTC;
    `extra` adds undeclared columns (name, dlt type) after them."""
    from dlt.common.libs.pyarrow import columns_to_arrow

    columns = _COLUMNS | {name: {"name": name, "data_type": kind} for name, kind in extra}
    return columns_to_arrow(columns, DestinationCapabilitiesContext.generic_capabilities(), "UTC")


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
        self._load_id = _arrow_load_id() or ""
        # None where the rows stay dicts.
        self._fields = _UndeclaredFields(dlt.current.source_schema()) if self._load_id else None
        self._empty_text_fits = not self._load_id or _destination() not in _EMPTY_TEXT_AS_NULL
        # Undeclared fields of the rows held, in the order they were first met.
        self._extra: dict[str, None] = {}

    @property
    def holding(self) -> int:
        """Rows taken and not handed back yet."""
        return len(self._rows)

    def add(self, rows: list[dict[str, Any]]) -> list[TDataItems]:
        """Take a page of typed rows: the items for dlt now (the rows that stay dicts, and a
        table once one is full)."""
        fields = self._fields
        if fields is None:
            return [rows] if rows else []
        others = []
        for row in rows:
            extra = _extra_fields(row)
            if extra is None or (not self._empty_text_fits and _empty_text(row)):
                others.append(row)
                continue
            self._rows.append(row)
            if extra:
                self._extra.update(dict.fromkeys(extra))
        items: list[TDataItems] = []
        if others:
            fields.met(others)
            items.append(others)
        if len(self._rows) >= self.batch_rows:
            items += self.flush()
        return items

    def flush(self) -> list[TDataItems]:
        """A table of every row still held (none if none is)."""
        rows, self._rows = self._rows, []
        extra, self._extra = tuple(self._extra), {}
        fields = self._fields
        if not rows or fields is None:
            return []
        columns = fields.columns(rows, extra)
        if columns is None:
            fields.met(rows)
            return [rows]
        table = _table(rows, self._load_id, columns)
        if isinstance(table, list):
            fields.met(table)
        else:
            fields.typed(columns)
        return [table]


class _UndeclaredFields:
    """The dlt type of each undeclared field, as dlt's normalizer would set it for row dicts:
    the schema's column if there is one, else the type of the first value met."""

    def __init__(self, schema: dlt.Schema) -> None:
        self._schema = schema
        self._types: dict[str, TDataType] = {}
        # Names dlt keeps as they are (checked once each): others it would rename.
        self._plain_names: dict[str, bool] = {}

    def met(self, rows: list[dict[str, Any]]) -> None:
        """Note the types of new undeclared fields in row dicts handed to dlt."""
        for row in rows:
            for name in row.keys() - _ACCEPTED_FIELDS:
                value = row[name]
                if type(value) in _SCALAR_TYPES and self._known_type(name) is None:
                    self._types[name] = self._first_type(name, value)

    def typed(self, columns: tuple[tuple[str, TDataType], ...]) -> None:
        """Note the undeclared columns of a table handed to dlt."""
        for name, kind in columns:
            self._types.setdefault(name, kind)

    def columns(
        self, rows: list[dict[str, Any]], names: tuple[str, ...]
    ) -> tuple[tuple[str, TDataType], ...] | None:
        """The undeclared columns of a table of `rows`, or None where dlt would type a value
        otherwise than Arrow (several types in a field, a value not of its column's type)."""
        columns = []
        for name in names:
            values = [value for row in rows if (value := row.get(name)) is not None]
            if not values:
                # Null in every row: dlt makes no column of it, nor would row dicts.
                continue
            if not self._plain_name(name) or len({type(value) for value in values}) > 1:
                return None
            kind = _SCALAR_TYPES[type(values[0])]
            if (self._known_type(name) or self._first_type(name, values[0])) != kind:
                return None
            columns.append((name, kind))
        return tuple(columns)

    def _known_type(self, name: str) -> TDataType | None:
        if name in self._types:
            return self._types[name]
        column = self._schema.get_table_columns(_TABLE_NAME).get(name)
        return column["data_type"] if column and is_complete_column(column) else None

    def _first_type(self, name: str, value: Any) -> TDataType:
        """The type dlt's normalizer gives a new column from its first value: the schema's
        preferred type, else a detected one (`iso_timestamp`), else the value's own."""
        # dlt keeps the detections in a private attribute; its normalizer reads the same one.
        detected = autodetect_sc_type(self._schema._type_detections, type(value), value)
        return self._schema.get_preferred_type(name) or detected or _SCALAR_TYPES[type(value)]

    def _plain_name(self, name: str) -> bool:
        if name not in self._plain_names:
            self._plain_names[name] = self._schema.naming.normalize_identifier(name) == name
        return self._plain_names[name]


def _extra_fields(row: dict[str, Any]) -> set[str] | None:
    """The undeclared fields of a row that fits a table, or None if the row does not fit."""
    if row.get("attachments") not in _NO_ATTACHMENTS:
        return None
    extra = row.keys() - _ACCEPTED_FIELDS
    if any((value := row[name]) is not None and type(value) not in _SCALAR_TYPES for name in extra):
        return None
    if all(
        (value := row.get(name)) is None or isinstance(value, kind) for name, kind in _TYPED_FIELDS
    ):
        return extra
    return None


def _arrow_load_id() -> str | None:
    """The load id Arrow rows carry, or None where the rows stay dicts."""
    try:
        load_id = dlt.current.load_package_state()["load_id"]
    except (CurrentLoadPackageStateNotAvailable, ContextDefaultCannotBeCreated):
        # Read outside a dlt extract (no package, no load id): dlt types the rows itself.
        return None
    if _destination() not in settings.ARROW_DESTINATIONS:
        return None
    if _parquet_normalizer().add_dlt_id:
        # dlt would add a second `_dlt_id` to tables that carry one.
        return None
    if dlt.current.get_resource().limit is not None:
        # dlt's add_limit closes the generator after an item: rows held for a table would keep
        # their pages out of the state run after run, so every page goes to dlt whole.
        return None
    return str(load_id)


def _destination() -> str | None:
    """The type of the current pipeline's destination (None without one)."""
    destination = dlt.current.pipeline().destination
    return None if destination is None else destination.destination_type


def _parquet_normalizer() -> ItemsNormalizerConfiguration:
    # Resolved as dlt's extractor resolves it, so a pipeline-scoped setting counts too.
    return resolve_configuration(
        ItemsNormalizerConfiguration(), sections=(known_sections.NORMALIZE, "parquet_normalizer")
    )


def _table(
    rows: list[dict[str, Any]], load_id: str, extra: tuple[tuple[str, TDataType], ...]
) -> TDataItems:
    names = (*_DATA_FIELDS, *(name for name, _ in extra))
    columns = {name: [row.get(name) for row in rows] for name in names}
    for name in _JSON_FIELDS:
        columns[name] = [None if value is None else json.dumps(value) for value in columns[name]]
    columns[ROW_KEY_COLUMN] = generate_dlt_ids(len(rows))
    columns[LOAD_ID_COLUMN] = [load_id] * len(rows)
    import pyarrow as pa

    try:
        return pa.Table.from_pydict(columns, schema=arrow_schema(extra))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # A value Arrow refuses (a number where text belongs): dlt's normalizer types the
        # batch as it types every row dict.
        return rows
