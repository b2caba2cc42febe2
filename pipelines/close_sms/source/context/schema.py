"""The context tables: their column hints, and how a Close object becomes a row.

Declared as `sms` declares its columns (source/sms/schema.py): every documented field, so
columns null in all rows still exist; fields Close adds later arrive as new columns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from dlt.common.normalizers.naming.snake_case import NamingConvention

from ...errors import ConfigError
from ..privacy import Privacy
from ..sms.schema import DELETED_COLUMN, _parsed
from ..state import CustomField
from ..timestamps import parse_timestamp

USERS = "users"
LEAD_STATUSES = "lead_statuses"
SMS_TEMPLATES = "sms_templates"
PHONE_NUMBERS = "phone_numbers"
LEADS = "leads"
CONTACTS = "contacts"
# Read whole, again at most every `context_refresh_minutes`.
SMALL_TABLES = (USERS, LEAD_STATUSES, SMS_TEMPLATES, PHONE_NUMBERS)
CONTEXT_TABLES = (*SMALL_TABLES, LEADS, CONTACTS)

TIMESTAMP_FIELDS = ("date_created", "date_updated")

_TIMESTAMP: dict[str, Any] = {"data_type": "timestamp", "timezone": True}
_TEXT: dict[str, Any] = {"data_type": "text"}
_KEY: dict[str, Any] = {"data_type": "text", "nullable": False, "primary_key": True}
_JSON: dict[str, Any] = {"data_type": "json"}
_BOOL: dict[str, Any] = {"data_type": "bool"}
_DATES = dict.fromkeys(TIMESTAMP_FIELDS, _TIMESTAMP)
_TOMBSTONE = {DELETED_COLUMN: {"data_type": "bool", "hard_delete": True}}

_HINTS: dict[str, dict[str, dict[str, Any]]] = {
    USERS: {
        "id": _KEY,
        **dict.fromkeys(("first_name", "last_name", "email", "image", "last_used_timezone"), _TEXT),
        "organizations": _JSON,
        # Close gives no flag: a former member is listed with no organizations.
        "is_active": _BOOL,
        **_DATES,
    },
    LEAD_STATUSES: {"id": _KEY, **dict.fromkeys(("label", "organization_id"), _TEXT)},
    SMS_TEMPLATES: {
        "id": _KEY,
        **dict.fromkeys(("name", "text", "organization_id", "created_by", "updated_by"), _TEXT),
        "attachments": _JSON,
        "is_shared": _BOOL,
        **_DATES,
    },
    PHONE_NUMBERS: {
        "id": _KEY,
        **dict.fromkeys(("number", "number_formatted", "country", "label", "user_id"), _TEXT),
        "is_group_number": _BOOL,
        **dict.fromkeys(
            ("participants", "supports_mms_to_countries", "supports_sms_to_countries"), _JSON
        ),
        **dict.fromkeys(
            (
                "type",
                "carrier",
                "carrier_type",
                "forward_to",
                "forward_to_formatted",
                "address_id",
                "bundle_id",
                "next_billing_on",
            ),
            _TEXT,
        ),
        "organization_id": _TEXT,
        **_DATES,
    },
    LEADS: {
        "id": _KEY,
        **dict.fromkeys(
            ("name", "display_name", "description", "status_id", "status_label", "url", "source"),
            _TEXT,
        ),
        "contact_ids": _JSON,
        **dict.fromkeys(
            (
                "html_url",
                "organization_id",
                "created_by",
                "created_by_name",
                "updated_by",
                "updated_by_name",
            ),
            _TEXT,
        ),
        **_DATES,
    },
    CONTACTS: {
        "id": _KEY,
        **dict.fromkeys(("lead_id", "name", "display_name", "title", "organization_id"), _TEXT),
        **dict.fromkeys(("phones", "emails", "urls", "integration_links"), _JSON),
        **dict.fromkeys(("created_by", "updated_by"), _TEXT),
        **_DATES,
    },
}
# What a lead embeds of other objects, or of its contacts' personal data: `contacts` holds
# only the ones SMS name, and custom fields become columns only when a setting names them.
_LEAD_DROPPED = frozenset(
    {
        "contacts",
        "contacts_summary",
        "primary_email",
        "primary_phone",
        "addresses",
        "opportunities",
        "tasks",
        "integration_links",
        "custom",
    }
)
CUSTOM_PREFIX = "custom."
# Close's custom field types -> column hints; other types are stored as text.
_CUSTOM_TYPES: dict[str, dict[str, Any]] = {
    "number": {"data_type": "double"},
    "date": {"data_type": "date"},
    "datetime": _TIMESTAMP,
}
_NAMING = NamingConvention()


def table_hints(table: str, custom_fields: list[CustomField] | None = None) -> dict[str, Any]:
    """The hints of a context resource: merged on `id`, tombstones deleted, columns typed."""
    columns = {name: dict(hint) for name, hint in (_HINTS[table] | _TOMBSTONE).items()}
    for cf in custom_fields or []:
        columns[cf.column] = dict(_custom_hint(cf))
    return {
        "table_name": table,
        "write_disposition": {"disposition": "merge", "strategy": "delete-insert"},
        "primary_key": "id",
        "columns": columns,
    }


def custom_field_column(name: str) -> str:
    """The column of a lead custom field: its name in snake_case; refused if a field's own."""
    column = _NAMING.normalize_identifier(name)
    if column in _HINTS[LEADS] or column in _LEAD_DROPPED or column == DELETED_COLUMN:
        raise ConfigError(
            f"lead custom field {name!r} would be stored as column {column!r}, which leads "
            "already has: leave it out of lead_custom_fields"
        )
    return column


def _custom_hint(cf: CustomField) -> dict[str, Any]:
    return _JSON if cf.multiple else _CUSTOM_TYPES.get(cf.type, _TEXT)


def tombstone(object_id: str) -> dict[str, Any]:
    """A row that makes dlt's merge delete the object's row."""
    return {"id": object_id, DELETED_COLUMN: True}


def _typed(item: dict[str, Any]) -> dict[str, Any]:
    row = dict(item)
    for name in TIMESTAMP_FIELDS:
        if name in row:
            row[name] = _parsed(row[name], parse_timestamp)
    return row


def user_row(item: dict[str, Any], privacy: Privacy) -> dict[str, Any]:
    row = _typed(item)
    row["is_active"] = bool(row.get("organizations"))
    return row


def status_row(item: dict[str, Any], privacy: Privacy) -> dict[str, Any]:
    return _typed(item)


def template_row(item: dict[str, Any], privacy: Privacy) -> dict[str, Any]:
    return privacy.apply_to_text(_typed(item))


def number_row(item: dict[str, Any], privacy: Privacy) -> dict[str, Any]:
    row = _typed(item)
    if row.get("is_group_number") is None:
        # Group numbers belong to no user.
        row["is_group_number"] = row.get("user_id") is None
    return privacy.apply_to_number(row)


def contact_row(item: dict[str, Any], privacy: Privacy) -> dict[str, Any]:
    return privacy.apply_to_person(_typed(item))


def lead_row(
    item: dict[str, Any], privacy: Privacy, custom_fields: list[CustomField]
) -> dict[str, Any]:
    """A lead with the named custom fields as typed columns, and no other custom field."""
    row = _typed(
        {
            k: v
            for k, v in item.items()
            if k not in _LEAD_DROPPED and not k.startswith(CUSTOM_PREFIX)
        }
    )
    for cf in custom_fields:
        value = item.get(f"{CUSTOM_PREFIX}{cf.id}")
        row[cf.column] = _custom_value(cf, value)
    return privacy.apply_to_person(row)


def _custom_value(cf: CustomField, value: Any) -> Any:
    # A value that does not parse stays as it came: dlt stores it in a variant column.
    if value is None or cf.multiple:
        return value
    parse: Callable[[Any], Any] | None = {
        "number": _number,
        "date": _date,
        "datetime": parse_timestamp,
    }.get(cf.type)
    return _parsed(value, parse) if parse else value


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def _date(value: Any) -> date:
    return date.fromisoformat(str(value)[:10])
