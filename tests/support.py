"""Shared helpers of the sync tests: run the real CLI, and compare the warehouse with Close."""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dlt.common.versioned_state import decompress_state

from close_sms.app.outcome import SyncReport
from close_sms.app.runner import SyncOptions, run_sync
from close_sms.errors import ConfigError
from close_sms.source import settings
from close_sms.source.sms.schema import DELETED_COLUMN, SMS_TIMESTAMP_FIELDS, sms_columns
from close_sms.source.timestamps import parse_timestamp
from close_sms.warehouse.destination import Warehouse
from tests import cli_process

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
    """Run `close-sms ARGS` in a fresh process, as cron would (forked, see `cli_process`)."""
    return cli_process.run(
        cli_command(*args),
        env=cli_env(api_key, **extra_env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# `close-sms ARGS`, killed (as the OOM killer or a power cut would) at KILL_AT: once dlt queued
# the job that merges staged `sms` rows, or once that job committed, before dlt records it; or
# ("state committed") once the job that appends dlt's state row committed, before it is recorded.
KILLED_AT_THE_SMS_MERGE = """
import os, runpy, signal, sys
from dlt.common.storages.load_package import PackageStorage, ParsedLoadJobFileName

queue, record = PackageStorage.import_job, PackageStorage.save_pending_transition
MOMENTS = {
    "queued": ("queued", "sms", "sql"),
    "committed": ("committed", "sms", "sql"),
    "state committed": ("committed", "_dlt_pipeline_state", None),
}

def kill_at(moment, path):
    job = ParsedLoadJobFileName.parse(os.path.basename(path))
    when, table, file_format = MOMENTS[os.environ["KILL_AT"]]
    if when == moment and job.table_name == table and file_format in (None, job.file_format):
        os.kill(os.getpid(), signal.SIGKILL)

def queue_then_kill(storage, load_id, path, *args, **kwargs):
    queue(storage, load_id, path, *args, **kwargs)
    kill_at("queued", path)

def kill_then_record(storage, load_id, file_name, *args, **kwargs):
    kill_at("committed", file_name)
    record(storage, load_id, file_name, *args, **kwargs)

PackageStorage.import_job = queue_then_kill
PackageStorage.save_pending_transition = kill_then_record
sys.argv[0] = "close-sms"
runpy.run_module("close_sms.app.cli", run_name="__main__")
"""


def run_killed_at_the_sms_merge(
    script_dir: Path, kill_at: str, *args: str, api_key: str | None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """`close-sms ARGS` in a fresh process, killed with SIGKILL at `kill_at` ("queued",
    "committed" or "state committed", see KILLED_AT_THE_SMS_MERGE); the script is written into
    `script_dir`."""
    script = script_dir / "killed_at_the_sms_merge.py"
    script.write_text(KILLED_AT_THE_SMS_MERGE)
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=cli_env(api_key, KILL_AT=kill_at, **extra_env),
        capture_output=True,
        text=True,
        timeout=300,
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


# dlt keeps its state zlib-compressed and base64-encoded in files and in _dlt_pipeline_state.
COMPRESSED_STATE = re.compile(rb"eNp[A-Za-z0-9+/=]{20,}")


def search_forms(values: set[str]) -> dict[bytes, str]:
    """Each raw value as bytes, as UTF-8 and as JSON and SQL would escape it."""
    forms = {}
    for value in values:
        for form in (
            value,
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
            value.replace("'", "''"),
        ):
            forms[form.encode()] = value
    return forms


def readable_bytes(path: Path) -> bytes:
    """A file's bytes, with what parquet, gzip and dlt's compressed state hide made readable."""
    data = path.read_bytes()
    if data.startswith(b"PAR1"):
        rows = pq.read_table(path).to_pylist()
        data += json.dumps(rows, ensure_ascii=False, default=str).encode()
    elif data.startswith(b"\x1f\x8b"):
        data += gzip.decompress(data)
    return data + decompressed_states(data)


def decompressed_states(data: bytes) -> bytes:
    """Every dlt state compressed in `data`, as JSON."""
    states = []
    for match in COMPRESSED_STATE.finditer(data):
        try:
            states.append(json.dumps(decompress_state(match.group().decode())))
        except Exception:  # a base64-looking run that is no dlt state
            continue
    return "".join(states).encode()


def found_in(haystacks: dict[str, bytes], needles: dict[bytes, str]) -> list[str]:
    """`where: value` for each raw value (of `search_forms`) found in a haystack, by name."""
    return sorted(
        {
            f"{where}: {raw!r}"
            for where, data in haystacks.items()
            for n, raw in needles.items()
            if n in data
        }
    )


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps the JSON bodies it is sent."""

    def __init__(self) -> None:
        messages = self.messages = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0KEN/s3cr3t"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def texts(self) -> list[str]:
        return [message["text"] for message in self.messages]


def until(condition: Callable[[], bool], seconds: float) -> float:
    """Seconds until `condition` held, polled; fails after `seconds`."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > seconds:
            pytest.fail(f"not within {seconds} s")
        # Not more often: a poll may open the DuckDB file, which a sync then waits to write.
        time.sleep(0.5)
    return time.monotonic() - began


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now, for a server a test starts elsewhere."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
