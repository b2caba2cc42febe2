"""Shared helpers of the sync tests: run the real CLI, and compare the warehouse with Close."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from close_sms.app.outcome import SyncReport
from close_sms.app.runner import SyncOptions, run_sync
from close_sms.errors import ConfigError
from close_sms.source import settings
from close_sms.source.sms.schema import DELETED_COLUMN, SMS_TIMESTAMP_FIELDS, sms_columns
from close_sms.source.timestamps import parse_timestamp
from close_sms.warehouse.destination import Warehouse

ATTACHMENT_FIELDS = ("media_id", "content_type", "filename", "size", "url", "thumbnail_url")
SCALAR_FIELDS = tuple(
    name
    for name, hint in sms_columns().items()
    if name != DELETED_COLUMN and hint.get("data_type") != "json"
)


@dataclass
class Target:
    """A warehouse the tests sync into: a DuckDB file, or a database on the PostgreSQL server.

    `env` is what a CLI run needs to reach it, `cli_args` the flags that name it.
    """

    name: str
    warehouse: Warehouse
    cli_args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def duckdb(cls, database: Path) -> Target:
        return cls("duckdb", Warehouse.configure(database=database), ("--database", str(database)))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a read-only query (for DuckDB, a read-only connection to the file)."""
        with self.warehouse.sql_client(read_only=True) as client:
            return [tuple(row) for row in client.execute_sql(sql) or []]

    def execute(self, sql: str) -> None:
        """Run a statement that writes, in its own transaction."""
        with self.warehouse.sql_client() as client, client.begin_transaction():
            client.execute_sql(sql)


def as_target(where: Target | Path) -> Target:
    return where if isinstance(where, Target) else Target.duckdb(where)


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
    return [sys.executable, "-m", "close_sms.app.cli", *args]


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


RUNNER_OPTIONS = ("full_refresh", "reconcile", "chunk_size", "alerts")


def sync(running: Any, where: Target | Path, **options: Any) -> SyncReport:
    """One `close-sms sync` in this process; other keywords are arguments of the source."""
    runner = {name: options.pop(name) for name in RUNNER_OPTIONS if name in options}
    source_args = {"base_url": running.base_url, "api_key": running.api_key, "backoff_max": 0.05}
    return run_sync(
        SyncOptions(
            warehouse=as_target(where).warehouse, source_args={**source_args, **options}, **runner
        ),
        say=lambda message: None,
    )


def config_error_in(exc: BaseException | None) -> ConfigError:
    """The ConfigError that caused `exc` (dlt wraps a source's failures in its own)."""
    while exc is not None and not isinstance(exc, ConfigError):
        exc = exc.__cause__ or exc.__context__
    assert exc is not None, "no ConfigError in the chain"
    return exc


def backfill_pages(running: Any, since: int) -> list[Any]:
    """The backfill pages among the emulator's requests from `since` on.

    The recent re-read lists SMS created in the last `recent_window_hours`; a backfill starts
    further back.
    """
    recent = running.emu.clock.now() - timedelta(hours=settings.RECENT_WINDOW_HOURS + 1)
    return [
        r
        for r in running.emu.request_log[since:]
        if r.path.endswith("/activity/sms/")
        and "date_created__gte" in r.params
        and parse_timestamp(r.params["date_created__gte"]) < recent
    ]


def _expected_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in SMS_TIMESTAMP_FIELDS:
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


def warehouse_rows(where: Target | Path) -> dict[str, dict[str, Any]]:
    """`close_sms.sms` and its attachments, keyed by id, in the shape of `expected_rows`."""
    target = as_target(where)
    columns = ", ".join(SCALAR_FIELDS)
    rows: dict[str, dict[str, Any]] = {}
    by_dlt_id: dict[str, str] = {}
    for record in target.query(f"SELECT {columns}, users, _dlt_id FROM close_sms.sms"):
        row = dict(zip((*SCALAR_FIELDS, "users", "_dlt_id"), record, strict=True))
        for name in SMS_TIMESTAMP_FIELDS:
            if isinstance(row[name], datetime):
                row[name] = parse_timestamp(row[name])
        users = row.pop("users")
        row["users"] = sorted(json.loads(users) if isinstance(users, str) else users or [])
        row["attachments"] = []
        by_dlt_id[row.pop("_dlt_id")] = row["id"]
        rows[row["id"]] = row
    attachment_columns = ", ".join(ATTACHMENT_FIELDS)
    for record in target.query(
        f"SELECT _dlt_parent_id, {attachment_columns} FROM close_sms.sms__attachments"
    ):
        rows[by_dlt_id[record[0]]]["attachments"].append(tuple(record[1:]))
    for row in rows.values():
        row["attachments"].sort()
    return rows


def mismatches(where: Target | Path, snapshot: dict[str, dict[str, Any]]) -> list[str]:
    """Every difference between the warehouse and Close, field by field; empty when equal."""
    expected = expected_rows(snapshot)
    actual = warehouse_rows(where)
    problems = [f"missing {i}" for i in sorted(expected.keys() - actual.keys())]
    problems += [f"extra {i}" for i in sorted(actual.keys() - expected.keys())]
    # `warehouse_rows` keys by id, so a row stored twice would hide there.
    problems += [
        f"{sms_id} stored {times} times"
        for sms_id, times in as_target(where).query(
            "SELECT id, count(*) FROM close_sms.sms GROUP BY id HAVING count(*) > 1 ORDER BY id"
        )
    ]
    for sms_id in sorted(expected.keys() & actual.keys()):
        for name, value in expected[sms_id].items():
            if actual[sms_id][name] != value:
                problems.append(f"{sms_id}.{name}: {actual[sms_id][name]!r} != {value!r}")
    return problems


def count(where: Target | Path, sql: str) -> Any:
    """The first value of a read-only query."""
    return as_target(where).query(sql)[0][0]


def change_account(emu) -> None:
    """An update, a status change, a delete and a new SMS, as Close users make them."""
    some = sorted(emu.snapshot().values(), key=lambda sms: sms["id"])
    base = {key: some[0][key] for key in ("lead_id", "contact_id", "remote_phone", "local_phone")}
    emu.create_sms({**base, "status": "inbox", "direction": "inbound", "text": "new"})
    draft = emu.create_sms({**base, "status": "draft", "text": "draft"})
    emu.update_sms(draft["id"], {"text": "draft, edited"})
    emu.update_sms(draft["id"], {"status": "outbox"})
    emu.delete_sms(some[1]["id"])
    emu.clock.advance(120)


# The fields of each context table the comparison with Close checks, by table and Close's kind.
CONTEXT_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "users": ("user", ("first_name", "last_name", "email")),
    "lead_statuses": ("lead_status", ("label",)),
    "sms_templates": ("sms_template", ("name", "text")),
    "phone_numbers": ("phone_number", ("number", "label", "user_id", "is_group_number")),
    "leads": ("lead", ("name", "status_id", "status_label")),
    "contacts": ("contact", ("lead_id", "name", "title")),
}


def expected_context(
    emu, snapshot: dict[str, dict[str, Any]] | None = None, named_only: bool = True
) -> dict[str, dict[str, dict[str, Any]]]:
    """The context tables as Close holds them: every user, status, template and number, and the
    live leads and contacts the SMS name (those of `snapshot` when given, else Close's SMS; all
    live leads and contacts unless `named_only`)."""
    sms = (emu.snapshot() if snapshot is None else snapshot).values()
    named = {
        "lead": {s["lead_id"] for s in sms if s["lead_id"]},
        "contact": {s["contact_id"] for s in sms if s["contact_id"]},
    }
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    with emu.lock:
        crm = emu.store.crm
        for table, (kind, fields) in CONTEXT_FIELDS.items():
            objects = crm.select(kind, {})
            tables[table] = {
                obj.id: {name: crm.render(kind, obj).get(name) for name in fields}
                for obj in objects
                if not named_only or kind not in named or obj.id in named[kind]
            }
    return tables


def context_mismatches(
    where: Target | Path,
    emu,
    snapshot: dict[str, dict[str, Any]] | None = None,
    allow_unnamed: bool = False,
) -> list[str]:
    """Every difference between the context tables and Close; empty when equal. `snapshot`:
    the SMS whose leads and contacts the tables must hold, when not Close's own;
    `allow_unnamed`: a live lead or contact no SMS names may stay, if it equals Close's."""
    target = as_target(where)
    problems = []
    live = expected_context(emu, snapshot, named_only=False) if allow_unnamed else {}
    for table, expected in expected_context(emu, snapshot).items():
        fields = CONTEXT_FIELDS[table][1]
        actual = {
            row[0]: dict(zip(fields, row[1:], strict=True))
            for row in target.query(f"SELECT id, {', '.join(fields)} FROM close_sms.{table}")
        }
        # Rows that may stay: the named ones, and with `allow_unnamed` every live one.
        allowed = {**expected, **live.get(table, {})}
        problems += [f"{table}: missing {i}" for i in sorted(expected.keys() - actual.keys())]
        problems += [f"{table}: extra {i}" for i in sorted(actual.keys() - allowed.keys())]
        for object_id in sorted(allowed.keys() & actual.keys()):
            for name, value in allowed[object_id].items():
                if actual[object_id][name] != value:
                    problems.append(
                        f"{table} {object_id}.{name}: {actual[object_id][name]!r} != {value!r}"
                    )
    return problems


def unresolved_references(where: Target | Path) -> dict[str, int]:
    """SMS whose user, lead, contact or template is missing from its context table."""
    checks = {
        "user_id": "users",
        "lead_id": "leads",
        "contact_id": "contacts",
        "template_id": "sms_templates",
    }
    return {
        column: count(
            where,
            f"SELECT count(*) FROM close_sms.sms s WHERE s.{column} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM close_sms.{table} t WHERE t.id = s.{column})",
        )
        for column, table in checks.items()
    }
