"""The tables: column hints for `sms`, `sms__attachments` and `sms_events`, and row typing.

Every documented field is declared, so columns that are null in all rows still exist.
Text bound for a destination that cannot store a NUL character loses its NULs (`without_nul`):
the one change the sync makes to a value Close sends.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import dlt
from dlt.common import json
from dlt.common.schema.typing import TTableSchema
from dlt.common.schema.utils import new_table
from dlt.sources import DltResource

from ..privacy import Privacy
from ..timestamps import parse_timestamp

if TYPE_CHECKING:
    import pyarrow as pa

# The column marking tombstones: rows carrying it are removed by dlt's merge (hard delete).
DELETED_COLUMN = "_deleted"
ROW_KEY_COLUMN = "_dlt_id"
LOAD_ID_COLUMN = "_dlt_load_id"

SMS_TIMESTAMP_FIELDS = (
    "date_created",
    "date_updated",
    "activity_at",
    "date_sent",
    "date_scheduled",
)
EVENT_TIMESTAMP_FIELDS = ("date_created", "date_updated")

_TIMESTAMP: dict[str, Any] = {"data_type": "timestamp", "timezone": True}
_TEXT: dict[str, Any] = {"data_type": "text"}
_KEY: dict[str, Any] = {"data_type": "text", "nullable": False, "primary_key": True}
_JSON: dict[str, Any] = {"data_type": "json"}

_SMS_HINTS: dict[str, dict[str, Any]] = {
    "id": _KEY,
    **dict.fromkeys(
        ("_type", "organization_id", "lead_id", "contact_id", "user_id", "user_name"), _TEXT
    ),
    "users": _JSON,
    **dict.fromkeys(("created_by", "created_by_name", "updated_by", "updated_by_name"), _TEXT),
    **dict.fromkeys(SMS_TIMESTAMP_FIELDS, _TIMESTAMP),
    **dict.fromkeys(("direction", "status", "source", "text", "template_id"), _TEXT),
    **dict.fromkeys(
        (
            "local_phone",
            "local_phone_formatted",
            "local_country_iso",
            "remote_phone",
            "remote_phone_formatted",
            "remote_country_iso",
        ),
        _TEXT,
    ),
    "cost": {"data_type": "decimal", "precision": 18, "scale": 6},
    "error_message": _TEXT,
    **dict.fromkeys(
        (
            "sequence_id",
            "sequence_name",
            "sequence_subscription_id",
            "agent_action_reason",
            "agent_config_id",
            # Not in Close's OpenAPI yet, but on every recent SMS: `fixed`/`auto`, and
            # `context`/`local_presence`/`fallback`.
            "caller_id_mode",
            "caller_id_reason",
        ),
        _TEXT,
    ),
    DELETED_COLUMN: {"data_type": "bool", "hard_delete": True},
}
# dlt adds these to row dicts itself, in this order. Declared because the backfill's Arrow
# tables carry their own, and an Arrow table loaded first would leave `_dlt_id` without the
# row-key hints that the merge needs to delete the attachments of replaced rows.
_DLT_HINTS: dict[str, dict[str, Any]] = {
    LOAD_ID_COLUMN: {"data_type": "text", "nullable": False},
    ROW_KEY_COLUMN: {"data_type": "text", "nullable": False, "row_key": True, "unique": True},
}

_ATTACHMENT_HINTS: dict[str, dict[str, Any]] = {
    **dict.fromkeys(("media_id", "content_type", "filename"), _TEXT),
    "size": {"data_type": "bigint"},
    **dict.fromkeys(("url", "thumbnail_url"), _TEXT),
}

_EVENT_HINTS: dict[str, dict[str, Any]] = {
    "id": _KEY,
    **dict.fromkeys(("object_type", "object_id", "action"), _TEXT),
    **dict.fromkeys(EVENT_TIMESTAMP_FIELDS, _TIMESTAMP),
    "changed_fields": _JSON,
    **dict.fromkeys(("user_id", "request_id", "lead_id", "organization_id", "api_key_id"), _TEXT),
    "meta": _JSON,
}


def _fresh(hints: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    # dlt writes into the hint dicts it is given, so every resource gets its own copies.
    return {name: dict(hint) for name, hint in hints.items()}


def sms_columns() -> dict[str, dict[str, Any]]:
    """Column hints of the `sms` table."""
    return _fresh(_SMS_HINTS)


def sms_dlt_columns() -> dict[str, dict[str, Any]]:
    """Hints of dlt's own columns in the `sms` table."""
    return _fresh(_DLT_HINTS)


def attachment_columns() -> dict[str, dict[str, Any]]:
    """Column hints of the `sms__attachments` child table."""
    return _fresh(_ATTACHMENT_HINTS)


def event_columns() -> dict[str, dict[str, Any]]:
    """Column hints of the `sms_events` table."""
    return _fresh(_EVENT_HINTS)


def normalize_sms(item: dict[str, Any], privacy: Privacy) -> dict[str, Any]:
    """Type an SMS for loading, and hash or drop what `privacy` says.

    A value that does not parse is kept as it came: dlt then stores it in a variant column (for
    example `cost__v_text`), so nothing Close sends is dropped, and a type change shows up as a
    new column instead of a failure.
    """
    row = dict(item)
    for name in SMS_TIMESTAMP_FIELDS:
        row[name] = _parsed(row.get(name), parse_timestamp)
    if row.get("cost") is not None:
        row["cost"] = _parsed(row["cost"], _decimal)
    return privacy.apply(row)


def normalize_event(item: dict[str, Any]) -> dict[str, Any]:
    """Type an event; `data`/`previous_data` are dropped (Close hides them after an hour)."""
    row = {k: v for k, v in item.items() if k not in ("data", "previous_data")}
    for name in EVENT_TIMESTAMP_FIELDS:
        row[name] = _parsed(row.get(name), parse_timestamp)
    return row


def tombstone(sms_id: str) -> dict[str, Any]:
    """A row that makes dlt's merge delete the SMS and its attachments."""
    return {"id": sms_id, DELETED_COLUMN: True}


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(value)
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(value)
    return number


def _parsed(value: Any, parse: Callable[[Any], Any]) -> Any:
    if value is None:
        return None
    try:
        return parse(value)
    except (ValueError, TypeError, InvalidOperation, OverflowError):
        return value


def sms_hints() -> dict[str, Any]:
    return {
        "table_name": "sms",
        "write_disposition": {"disposition": "merge", "strategy": "delete-insert"},
        "primary_key": "id",
        "columns": sms_columns() | sms_dlt_columns(),
    }


def declare_attachments(schema: dlt.Schema, sms_table: TTableSchema) -> None:
    """Declare `sms__attachments` in the source's schema.

    Not as the resources' `nested_hints`: dlt 1.31 applies an Arrow table's columns to every
    nested table of the resource that yields it.
    """
    schema.update_table(sms_table)
    columns = [dict(hint, name=name) for name, hint in attachment_columns().items()]
    # dlt checks the parent's name before it normalizes the table's names.
    parent = schema.naming.normalize_table_identifier(sms_table["name"])
    name = schema.naming.shorten_fragments(
        parent, schema.naming.normalize_identifier("attachments")
    )
    schema.update_table(new_table(name, parent_table_name=parent, columns=columns))


# Destinations that store a NUL character in text as it came; the others get text without it
# (PostgreSQL refuses it: `invalid byte sequence for encoding "UTF8": 0x00`, every run).
_HOLDS_NUL = ("dlt.destinations.duckdb", "dlt.destinations.filesystem")
_NUL = "\x00"
# How JSON text writes a NUL: the backfill's Arrow tables carry JSON columns as text.
_JSON_NUL = json.dumps(_NUL)[1:-1]
_SMS_JSON_FIELDS = frozenset(name for name, hint in _SMS_HINTS.items() if hint is _JSON)


def without_nul(*resources: DltResource) -> tuple[DltResource, ...]:
    """`resources`, each removing NUL characters from its text where the destination needs it."""
    for resource in resources:
        resource.add_map(_nul_remover())
    return resources


def _nul_remover() -> Callable[[Any], Any]:
    """A map step that removes NULs from every string of a row or an Arrow table (in nested
    values and JSON too), once the destination is known not to hold them; for one that does,
    it passes items on untouched."""
    needed: bool | None = None

    def remove(item: Any) -> Any:
        nonlocal needed
        if needed is None:
            # Decided at the first item, in the extract, where the pipeline is known.
            destination = dlt.current.pipeline().destination
            needed = destination is None or destination.destination_type not in _HOLDS_NUL
        if not needed:
            return item
        if isinstance(item, dict):
            return _value_without_nul(item)
        return _table_without_nul(item)

    return remove


def _value_without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_NUL, "") if _NUL in value else value
    if isinstance(value, dict):
        return {key: _value_without_nul(field) for key, field in value.items()}
    if isinstance(value, list):
        return [_value_without_nul(field) for field in value]
    return value


def _table_without_nul(table: pa.Table) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    for index, field in enumerate(table.schema):
        if not pa.types.is_string(field.type) and not pa.types.is_large_string(field.type):
            continue
        column = table.column(index)
        if pc.any(pc.match_substring(column, _NUL)).as_py():
            table = table.set_column(index, field, pc.replace_substring(column, _NUL, ""))
        elif (
            field.name in _SMS_JSON_FIELDS and pc.any(pc.match_substring(column, _JSON_NUL)).as_py()
        ):
            # JSON as text: its strings' NULs are escapes, read back to be removed exactly.
            texts = [_json_without_nul(text) for text in column.to_pylist()]
            table = table.set_column(index, field, pa.array(texts, type=field.type))
    return table


def _json_without_nul(text: str | None) -> str | None:
    if text is None or _JSON_NUL not in text:
        return text
    return json.dumps(_value_without_nul(json.loads(text)))
