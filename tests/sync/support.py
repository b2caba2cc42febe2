"""Shared helpers of the sync tests: run the real CLI, and compare the warehouse with Close."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from close_sms import settings
from pipelines.close_sms.strategies import parse_timestamp

ATTACHMENT_FIELDS = ("media_id", "content_type", "filename", "size", "url", "thumbnail_url")
SCALAR_FIELDS = tuple(
    name
    for name, hint in settings.sms_columns().items()
    if name != settings.DELETED_COLUMN and hint.get("data_type") != "json"
)


def cli_env(api_key: str | None, **extra: str) -> dict[str, str]:
    """The environment of a CLI run: no inherited Close settings, telemetry off."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SOURCES__") and k != "CLOSE_API_KEY"
    }
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    if api_key is not None:
        env["SOURCES__CLOSE_SMS__API_KEY"] = api_key
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.close_sms.cli", *args]


def run_cli(
    *args: str,
    api_key: str | None,
    cwd: Path | None = None,
    timeout: float = 300,
    **extra_env: str,
) -> subprocess.CompletedProcess[str]:
    """Run `close-sms ARGS` in a fresh process, as cron would."""
    return subprocess.run(
        cli_command(*args),
        env=cli_env(api_key, **extra_env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _expected_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in settings.SMS_TIMESTAMP_FIELDS:
        return parse_timestamp(value)
    if name == "cost":
        return Decimal(str(value))
    return value


def expected_rows(snapshot: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The emulator's SMS as the warehouse should hold them: typed, attachments as tuples."""
    rows = {}
    for sms_id, sms in snapshot.items():
        row = {name: _expected_value(name, sms.get(name)) for name in SCALAR_FIELDS}
        row["users"] = sorted(sms.get("users") or [])
        row["attachments"] = sorted(
            tuple(a.get(f) for f in ATTACHMENT_FIELDS) for a in sms.get("attachments") or []
        )
        rows[sms_id] = row
    return rows


def warehouse_rows(database: Path) -> dict[str, dict[str, Any]]:
    """`close_sms.sms` and its attachments, keyed by id, in the shape of `expected_rows`."""
    import json

    connection = duckdb.connect(str(database), read_only=True)
    try:
        columns = ", ".join(SCALAR_FIELDS)
        result = connection.execute(f"SELECT {columns}, users, _dlt_id FROM close_sms.sms")
        rows: dict[str, dict[str, Any]] = {}
        by_dlt_id: dict[str, str] = {}
        for record in result.fetchall():
            row = dict(zip((*SCALAR_FIELDS, "users", "_dlt_id"), record, strict=True))
            for name in settings.SMS_TIMESTAMP_FIELDS:
                if isinstance(row[name], datetime):
                    row[name] = parse_timestamp(row[name])
            users = row.pop("users")
            row["users"] = sorted(json.loads(users) if isinstance(users, str) else users or [])
            row["attachments"] = []
            by_dlt_id[row.pop("_dlt_id")] = row["id"]
            rows[row["id"]] = row
        attachment_columns = ", ".join(ATTACHMENT_FIELDS)
        for record in connection.execute(
            f"SELECT _dlt_parent_id, {attachment_columns} FROM close_sms.sms__attachments"
        ).fetchall():
            rows[by_dlt_id[record[0]]]["attachments"].append(tuple(record[1:]))
        for row in rows.values():
            row["attachments"].sort()
        return rows
    finally:
        connection.close()


def mismatches(database: Path, snapshot: dict[str, dict[str, Any]]) -> list[str]:
    """Every difference between the warehouse and Close, field by field; empty when equal."""
    expected = expected_rows(snapshot)
    actual = warehouse_rows(database)
    problems = [f"missing {i}" for i in sorted(expected.keys() - actual.keys())]
    problems += [f"extra {i}" for i in sorted(actual.keys() - expected.keys())]
    for sms_id in sorted(expected.keys() & actual.keys()):
        for name, value in expected[sms_id].items():
            if actual[sms_id][name] != value:
                problems.append(f"{sms_id}.{name}: {actual[sms_id][name]!r} != {value!r}")
    return problems


def count(database: Path, sql: str) -> Any:
    connection = duckdb.connect(str(database), read_only=True)
    try:
        return connection.execute(sql).fetchone()[0]
    finally:
        connection.close()
