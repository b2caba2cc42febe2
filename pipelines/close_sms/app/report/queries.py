"""The report's queries over the analytics views, and the JSON-ready rows they return.

The queries are written in DuckDB's dialect, like the views, and translated for the
destination the sql client talks to.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from dlt.destinations.sql_client import SqlClientBase

from ...errors import ConfigError
from ...source.settings import DATASET_NAME
from ...warehouse.dialect import translate
from ...warehouse.views import missing_views

# The response-time buckets of the distribution chart: (label, upper bound in seconds).
RESPONSE_BUCKETS: tuple[tuple[str, float | None], ...] = (
    ("< 1 min", 60),
    ("1-5 min", 300),
    ("5-15 min", 900),
    ("15-60 min", 3600),
    ("1-4 h", 4 * 3600),
    ("4-24 h", 24 * 3600),
    ("> 1 day", None),
)
NO_REPLY = "no reply"
TOP_USERS = 10
TOP_TEMPLATES = 10
TOP_NUMBERS = 10
_VIEWS_READ = (
    "sms_messages",
    "sms_daily",
    "sms_delivery",
    "sms_response_times",
    "sms_user_daily",
    "sms_opt_outs",
    "sms_ai_vs_human",
    "sms_template_performance",
    "sms_numbers",
    "sync_health",
)

_DAILY_VOLUME = f"""
SELECT message_date, direction, sum(message_count) AS message_count
FROM {DATASET_NAME}.sms_daily
GROUP BY message_date, direction
ORDER BY message_date, direction
"""

_DELIVERY = f"""
SELECT message_date, outbound_count, sent_count, failed_count, failure_rate, top_error_message
FROM {DATASET_NAME}.sms_delivery
ORDER BY message_date
"""


def _response_sql() -> str:
    # Buckets are checked in order, so each WHEN only needs its upper bound.
    cases = [
        f"WHEN response_seconds < {upper} THEN '{label}'" if upper else f"ELSE '{label}'"
        for label, upper in RESPONSE_BUCKETS
    ]
    return f"""
    SELECT
        CASE WHEN response_seconds IS NULL THEN '{NO_REPLY}' {" ".join(cases)} END AS bucket,
        count(*) AS inbound_count
    FROM {DATASET_NAME}.sms_response_times
    GROUP BY bucket
    """


_RESPONSE_SUMMARY = f"""
SELECT
    count(*) AS inbound_count,
    count(response_seconds) AS replied_count,
    median(response_seconds) AS median_seconds,
    quantile_cont(response_seconds, 0.9) AS p90_seconds
FROM {DATASET_NAME}.sms_response_times
"""

# Busiest = most SMS sent plus received; SMS without a user are nobody's workload.
_BUSIEST_USERS = f"""
SELECT
    user_id,
    arg_max(user_name, message_date) AS user_name,
    sum(sent_count) AS sent_count,
    sum(received_count) AS received_count,
    sum(failed_count) AS failed_count,
    sum(sent_count) + sum(received_count) AS total_count
FROM {DATASET_NAME}.sms_user_daily
WHERE user_id IS NOT NULL
GROUP BY user_id
ORDER BY total_count DESC, user_id
LIMIT {TOP_USERS}
"""

_SYNC_HEALTH = f"""
SELECT
    run_date, runs, successful_runs, failed_runs, interrupted_runs + locked_runs AS other_runs,
    max_lag_seconds, last_success_at, last_error
FROM {DATASET_NAME}.sync_health
ORDER BY run_date
"""

_OPT_OUTS = f"""
SELECT
    CAST(opted_out_at AT TIME ZONE 'UTC' AS DATE) AS opt_out_date,
    count(*) AS opt_out_count,
    count(*) FILTER (WHERE sent_after_opt_out_count > 0) AS texted_after_count,
    count(*) FILTER (WHERE refused_after_opt_out_count > 0) AS refused_after_count,
    CAST(sum(sent_after_opt_out_count) AS BIGINT) AS sent_after_count
FROM {DATASET_NAME}.sms_opt_outs
GROUP BY opt_out_date
ORDER BY opt_out_date
"""

# Opt-outs are read from the text: hashed (64 hex digits) or dropped (null), none can be found.
_READABLE_TEXTS = f"""
SELECT count(*) AS inbound_count,
    count(*) FILTER (WHERE text IS NOT NULL AND NOT regexp_matches(text, '^[0-9a-f]{{64}}$'))
        AS readable_count
FROM {DATASET_NAME}.sms_messages
WHERE direction = 'inbound'
"""

_SENDERS = f"""
SELECT message_date, sender_kind, outbound_count, sent_count, failed_count, replied_count, reply_rate,
    median_reply_seconds, failure_rate, total_cost_cents
FROM {DATASET_NAME}.sms_ai_vs_human
ORDER BY message_date, sender_kind
"""

_TEMPLATES = f"""
SELECT template_id, template_name, outbound_count, sent_count, failed_count, failure_rate,
    replied_count, reply_rate, median_reply_seconds
FROM {DATASET_NAME}.sms_template_performance
ORDER BY outbound_count DESC, template_id
LIMIT {TOP_TEMPLATES}
"""

# Numbers Close no longer lists, or SMS without one, are still someone's volume: kept.
_NUMBERS = f"""
SELECT local_phone, local_phone_label, owner_name, message_count, inbound_count, sent_count,
    failed_count, failure_rate, top_error_message, top_error_count
FROM {DATASET_NAME}.sms_numbers
ORDER BY message_count DESC, local_phone
LIMIT {TOP_NUMBERS}
"""

_OVERVIEW = f"""
SELECT count(*) AS sms_count, min(message_date) AS first_date, max(message_date) AS last_date
FROM {DATASET_NAME}.sms_messages
"""


def _records(sql: SqlClientBase[Any], query: str) -> list[dict[str, Any]]:
    with sql.execute_query(translate(query, sql.capabilities.sqlglot_dialect)) as cursor:
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    return [{name: _plain(value) for name, value in zip(names, row, strict=True)} for row in rows]


def _plain(value: Any) -> Any:
    # JSON-ready values: dates as ISO strings, decimals and huge ints as plain numbers.
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def check_views(sql: SqlClientBase[Any]) -> None:
    """Raise ConfigError, saying how to fix it, when a view the report reads is missing."""
    missing = [name for name in missing_views(sql) if name in _VIEWS_READ]
    if missing:
        raise ConfigError(
            f"the dataset {DATASET_NAME} has no view(s) {', '.join(missing)}; apply them first "
            "with `close-sms views`"
        )


def collect(sql: SqlClientBase[Any]) -> dict[str, Any]:
    """The rows behind every chart, as JSON-ready records."""
    buckets = {row["bucket"]: row["inbound_count"] for row in _records(sql, _response_sql())}
    order = [label for label, _ in RESPONSE_BUCKETS] + [NO_REPLY]
    return {
        "overview": _records(sql, _OVERVIEW)[0],
        "daily_volume": _records(sql, _DAILY_VOLUME),
        "delivery": _records(sql, _DELIVERY),
        "response_times": [
            {"bucket": label, "inbound_count": buckets.get(label, 0)} for label in order
        ],
        "response_summary": _records(sql, _RESPONSE_SUMMARY)[0],
        "busiest_users": _records(sql, _BUSIEST_USERS),
        "opt_outs": _records(sql, _OPT_OUTS),
        "readable_texts": _records(sql, _READABLE_TEXTS)[0],
        "senders": _records(sql, _SENDERS),
        "templates": _records(sql, _TEMPLATES),
        "numbers": _records(sql, _NUMBERS),
        "sync_health": _records(sql, _SYNC_HEALTH),
    }
