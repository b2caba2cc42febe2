"""Small helpers of the reliability tests, on top of `tests.support`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import duckdb

from tests.support import run_cli

# Fast failure in bad-input runs: few retries, short waits.
FAST_FAIL = {
    "SOURCES__CLOSE_SMS__MAX_RETRIES": "2",
    "SOURCES__CLOSE_SMS__BACKOFF_MAX": "0.05",
    "SOURCES__CLOSE_SMS__READ_TIMEOUT": "2",
}


def sync_cli(running: Any, database: Path, *extra: str, api_key: str | None = None, **env: str):
    """`close-sms sync` against the emulator, in a fresh process."""
    return run_cli(
        "sync",
        "--base-url",
        running.base_url,
        "--database",
        str(database),
        *extra,
        api_key=api_key or running.api_key,
        **env,
    )


def status(database: Path) -> dict[str, Any]:
    """`close-sms status --json`."""
    result = run_cli("status", "--json", "--database", str(database), api_key=None)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def fingerprint(database: Path) -> dict[str, Any]:
    """Every table of the file (dlt's own included), as sorted rows: equal means unchanged."""
    with duckdb.connect(str(database), read_only=True) as connection:
        tables = connection.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' ORDER BY 1, 2"
        ).fetchall()
        return {
            f"{schema}.{table}": sorted(
                repr(row)
                for row in connection.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
            )
            for schema, table in tables
        }


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(stderr: str) -> str:
    """The CLI's error line; asserts it is one clear line without a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.startswith("close-sms: error:")]
    assert len(lines) == 1, stderr
    return lines[0]
