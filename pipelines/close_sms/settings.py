"""Defaults and table hints for the Close SMS source, kept in one place.

Defaults live in code so that the sync behaves the same from any working directory
(cron starts jobs in $HOME, where no project `.dlt/` folder is found).
"""

from __future__ import annotations

from typing import Any

SOURCE_NAME = "close_sms"
DATASET_NAME = "close_sms"
PIPELINE_NAME = "close_sms"

DEFAULT_BASE_URL = "https://api.close.com/api/v1"
DEFAULT_DATABASE = "warehouse.duckdb"
DEMO_DATABASE = "close_sms_demo.duckdb"
# Close was founded in 2013; nothing in an account is older.
DEFAULT_START_DATE = "2013-01-01"

SMS_ENDPOINT = "/activity/sms/"
EVENT_ENDPOINT = "/event/"
ME_ENDPOINT = "/me/"
EVENT_OBJECT_TYPE = "activity.sms"
# Close accepts object_type only together with action (or object_id): one query per action.
EVENT_ACTIONS = ("created", "updated", "sent", "deleted")

PAGE_SIZE = 100
# SMS of a partly read second that the next page reads again, so that up to this many deletes
# between two requests cannot shift an unread SMS past Close's offset.
PAGE_OVERLAP = 25
EVENT_PAGE_SIZE = 50
ID_BATCH_SIZE = 100
# Close recommends the POST override once a URL passes about 2000 characters.
MAX_URL_LENGTH = 2000
# Observed on /activity/email/; the SMS value is unknown, so it stays configurable.
DEFAULT_MAX_SKIP = 250_000
# Singer observed that date_created filters are honoured to the second only.
FILTER_PRECISION_SECONDS = 1

EVENT_RETENTION_DAYS = 30
# A last feed check this close to the event log's horizon is treated as lost: a reconcile backfill runs.
HORIZON_SAFETY_DAYS = 1
# Close recommends rescanning the latest five minutes of events (consolidation, late writes).
EVENT_LOOKBACK_SECONDS = 300
# A run that finds no events records its check only when the last record is this old, so
# quiet cron runs write nothing to the database (the next run reads from the older check).
FEED_CHECKPOINT_SECONDS = 900

# Windows in flight. 8 keeps Close's budget used while the extract thread flushes a buffer
# (20 req/s + 100 ms latency: 4 workers 0.87 of the budget, 8 workers 0.97; no-limit 100k
# backfill 31.3 s -> 29.8 s).
BACKFILL_WORKERS = 8
# DuckDB keeps table blocks cached up to its memory limit (80% of RAM by default), so the
# sync's memory would grow with the table; merges spill to disk past this instead.
DUCKDB_MEMORY_LIMIT = "128MB"
# SMS per extract/normalize/load chunk of a backfill; bounds memory and is the resume granularity.
BACKFILL_CHUNK_SIZE = 50_000

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
MAX_RETRIES = 8
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 60.0

# The column marking tombstones: rows carrying it are removed by dlt's merge (hard delete).
DELETED_COLUMN = "_deleted"

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

# Every documented field is declared, so columns that are null in all rows still exist.
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
        ),
        _TEXT,
    ),
    DELETED_COLUMN: {"data_type": "bool", "hard_delete": True},
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


def attachment_columns() -> dict[str, dict[str, Any]]:
    """Column hints of the `sms__attachments` child table."""
    return _fresh(_ATTACHMENT_HINTS)


def event_columns() -> dict[str, dict[str, Any]]:
    """Column hints of the `sms_events` table."""
    return _fresh(_EVENT_HINTS)
