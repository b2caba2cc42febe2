"""Values that a destination cannot take as they are must not stop the sync.

PostgreSQL refuses a NUL character in text (`invalid byte sequence for encoding "UTF8": 0x00`):
one such SMS would fail every run. Text bound for it loses its NULs, and nothing else changes:
an empty text stays an empty text on every destination.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from close_sms import close_sms_source
from tests.source.test_plain_source import bare_pipeline
from tests.support import Target, sync


def _hostile_account(emulator) -> tuple[Any, dict[str, str]]:
    """An account with NULs in a text, in a user id and in an attachment's filename, and an
    empty text; the ids of those SMS by role."""
    running = emulator(sms=300, seed=81)
    emu = running.emu
    snapshot = emu.snapshot()
    plain = sorted(i for i, sms in snapshot.items() if not sms["attachments"])
    roles = {
        "nul": plain[0],
        "empty": plain[1],
        "later": plain[2],
        "attachment": sorted(i for i, sms in snapshot.items() if sms["attachments"])[0],
    }
    emu.override_raw(roles["nul"], {"text": "stop\x00here", "users": ["user_a\x00b"]})
    emu.override_raw(roles["empty"], {"text": ""})
    attachments = [dict(a) for a in snapshot[roles["attachment"]]["attachments"]]
    attachments[0]["filename"] = "photo\x00.jpg"
    emu.override_raw(roles["attachment"], {"attachments": attachments, "text": "a\x00b"})
    return running, roles


def _stored(target: Target, sms_id: str, column: str) -> Any:
    ((value,),) = target.query(f"SELECT {column} FROM close_sms.sms WHERE id = '{sms_id}'")
    return value


def _filenames(target: Target, sms_id: str) -> list[str]:
    rows = target.query(
        "SELECT a.filename FROM close_sms.sms__attachments a JOIN close_sms.sms s "
        f"ON a._dlt_parent_id = s._dlt_id WHERE s.id = '{sms_id}'"
    )
    return sorted(row[0] for row in rows)


def _expected(target: Target, text: str) -> str:
    # DuckDB keeps a NUL as it came; PostgreSQL cannot store one.
    return text if target.name == "duckdb" else text.replace("\x00", "")


def _check(target: Target, running, roles: dict[str, str]) -> None:
    assert _stored(target, roles["nul"], "text") == _expected(target, "stop\x00here")
    users = _stored(target, roles["nul"], "users")
    assert (json.loads(users) if isinstance(users, str) else users) == [
        _expected(target, "user_a\x00b")
    ]
    assert _stored(target, roles["attachment"], "text") == _expected(target, "a\x00b")
    snapshot = running.emu.snapshot()
    assert _filenames(target, roles["attachment"]) == sorted(
        _expected(target, a["filename"]) for a in snapshot[roles["attachment"]]["attachments"]
    )
    assert _stored(target, roles["empty"], "text") == ""
    ((rows,),) = target.query("SELECT count(*) FROM close_sms.sms")
    assert rows == len(snapshot)


def test_nul_characters_do_not_stop_a_sync_and_an_empty_text_stays_empty(emulator, target):
    running, roles = _hostile_account(emulator)

    sync(running, target)
    _check(target, running, roles)

    running.emu.override_raw(roles["later"], {"text": "later\x00on"}, emit_update=True)
    running.emu.clock.advance(120)
    report = sync(running, target)

    assert report.upserted >= 1
    assert _stored(target, roles["later"], "text") == _expected(target, "later\x00on")
    _check(target, running, roles)


@pytest.mark.parametrize("target", ["postgres"], indirect=True)
def test_a_bare_pipeline_loads_nul_free_text_into_postgres(emulator, target, tmp_path, monkeypatch):
    running, roles = _hostile_account(emulator)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__API_KEY", running.api_key)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__BASE_URL", running.base_url)
    pipeline = bare_pipeline(target, tmp_path)

    pipeline.run(close_sms_source()).raise_on_failed_jobs()
    _check(target, running, roles)

    running.emu.override_raw(roles["later"], {"text": "later\x00on"}, emit_update=True)
    running.emu.clock.advance(120)
    pipeline.run(close_sms_source()).raise_on_failed_jobs()

    assert _stored(target, roles["later"], "text") == "lateron"
    _check(target, running, roles)
