"""The API keys appear nowhere: output, logs, dlt's pipeline folder and trace, the database."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import duckdb
import pytest

from close_sms.warehouse.destination import Warehouse
from tests.reliability.helpers import sync_cli
from tests.support import mismatches

# Three keys, all configured: the requests are spread over them, so each one is sent.
KEYS = (
    "api_ZZsecretRELIABILITYkey9f27c1e04b5d",
    "api_YYsecondPOOLEDkeyQ4m81t0ce3a7",
    "api_XXthirdPOOLEDkeyW9p52u6bd1e8",
)


def _needles() -> list[bytes]:
    needles = []
    for key in KEYS:
        basic = base64.b64encode(f"{key}:".encode())
        # The key itself, its middle (catches partial echoes), and the Basic auth header value.
        needles += [key.encode(), key[8:-6].encode(), basic, basic[:-4]]
    return needles


def _files_holding_the_key(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(needle in data for needle in _needles()):
                found.append(str(path))
    return found


@pytest.mark.slow
def test_the_keys_are_nowhere_and_attachment_urls_carry_no_credentials(emulator, tmp_path):
    running = emulator(sms=400, seed=81)
    emu = running.emu
    for key in KEYS:
        emu.add_api_key(key)
    configured = ",".join(KEYS)
    try:
        database = tmp_path / "w.duckdb"
        emu.faults.add("503", 2, "/activity/sms/")
        emu.faults.add("429", 3, "/event/", reset=0.1)
        emu.faults.add("html200", 1, "/me/")
        runs = [
            sync_cli(running, database, api_key=configured, RUNTIME__LOG_LEVEL="DEBUG"),
            sync_cli(running, database, "--debug", api_key=configured),
        ]
        lead = next(iter(emu.snapshot().values()))["lead_id"]
        emu.create_sms(
            {
                "status": "inbox",
                "lead_id": lead,
                "text": "mms",
                "attachments": [
                    {"content_type": "image/png", "filename": "p.png", "url": "https://x.test/p"}
                ],
            }
        )
        runs.append(sync_cli(running, database, "--reconcile", api_key=configured))
        # A failing run as well: a key is rejected (error paths must not echo it either).
        emu.remove_api_key(KEYS[1])
        runs.append(sync_cli(running, database, api_key=configured))
    finally:
        for key in KEYS:
            emu.remove_api_key(key)

    assert [r.returncode for r in runs] == [0, 0, 0, 3], runs[-1].stderr
    assert "key 2 of 3" in runs[-1].stderr
    log = emu.request_log
    senders = {r.api_key_id for r in log if r.path == "/api/v1/activity/sms/" and r.status == 200}
    assert len(senders) == 3  # every key was really sent
    assert mismatches(database, emu.snapshot()) == []
    assert emu.stats.faults["503"] == 2 and emu.stats.faults["html200"] == 1
    for result in runs:
        assert all(n.decode() not in result.stdout + result.stderr for n in _needles())
    assert sum(len(r.stderr) for r in runs) > 1000  # the DEBUG/--debug logs were searched

    state = Warehouse.configure(database=database).working_dir
    trace_files = [p for p in state.rglob("*") if p.is_file() and "trace" in p.name]
    assert trace_files, "dlt's trace was expected in the pipeline folder"
    assert _files_holding_the_key(state) == []
    assert _files_holding_the_key(tmp_path) == []  # database, lock and anything else there

    connection = duckdb.connect(str(database), read_only=True)
    try:
        tables = connection.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
        ).fetchall()
        # One scan a table: any column whose text holds any key's middle.
        pattern = "|".join(key[8:-6] for key in KEYS)
        holding = []
        for schema, table in tables:
            columns = [
                c
                for (c,) in connection.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = ? AND table_name = ?",
                    [schema, table],
                ).fetchall()
            ]
            hits = connection.execute(
                "SELECT "
                + ", ".join(
                    f'coalesce(bool_or(regexp_matches(CAST("{c}" AS VARCHAR), ?)), false)'
                    for c in columns
                )
                + f' FROM "{schema}"."{table}"',
                [pattern] * len(columns),
            ).fetchone()
            holding += [
                f"{schema}.{table}.{c}" for c, hit in zip(columns, hits, strict=True) if hit
            ]
        urls = [
            url
            for row in connection.execute(
                "SELECT url, thumbnail_url FROM close_sms.sms__attachments"
            ).fetchall()
            for url in row
            if url
        ]
    finally:
        connection.close()
    assert len(tables) >= 5
    assert holding == []
    assert len(urls) > 10
    for url in urls:
        parsed = urlparse(url)
        assert parsed.scheme == "https" and parsed.username is None and parsed.password is None
        assert not {"key", "api_key", "token", "access_token", "signature"} & set(
            parse_qs(parsed.query)
        )
        assert "api_" not in url
