"""Privacy settings: no raw phone number or SMS text reaches a table, a dlt file or the output."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from close_sms import close_sms_source
from close_sms.errors import ConfigError
from close_sms.source.privacy import PHONE_FIELDS, Privacy
from close_sms.source.sms.schema import normalize_sms
from close_sms.source.state import SourceState
from tests.support import (
    Target,
    change_account,
    cli_env,
    config_error_in,
    count,
    decompressed_states,
    found_in,
    mismatches,
    readable_bytes,
    run_cli,
    run_killed_at_the_sms_merge,
    search_forms,
)

KEY = "privacy-test-key-5f0c9a7e1d2b4c83"
OTHER_KEY = "another-test-key-0b6e2f9d4a7c1e58"
NEW_PHONE = "+14155550123"
PROBE_TEXTS = (
    "Privacy probe: the gate code for Saturday is 4711",
    "Privacy probe, edited: ask for Mrs. Okonkwo at reception",
    "Privacy probe from a new number: my passport ends in 8802",
)


def _hmac(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _privacy_env(sms_text: str, key: str = KEY) -> dict[str, str]:
    return {
        "SOURCES__CLOSE_SMS__HASH_PHONES": "true",
        "SOURCES__CLOSE_SMS__SMS_TEXT": sms_text,
        # The names and emails of contacts and leads follow the text's mode.
        "SOURCES__CLOSE_SMS__CONTACT_NAMES": sms_text,
        "SOURCES__CLOSE_SMS__HASH_KEY": key,
    }


def _sync(running: Any, target: Target, *flags: str, **env: str):
    return run_cli(
        "sync",
        "--base-url",
        running.base_url,
        *target.cli_args,
        *flags,
        api_key=running.api_key,
        **target.env,
        **env,
    )


def _expected(snapshot: dict[str, dict[str, Any]], sms_text: str) -> dict[str, dict[str, Any]]:
    """The snapshot as the warehouse must hold it: computed here, independently of the source.

    Every phone field hashes its digits and `+`, so a display form hashes like its E.164.
    """
    expected = {}
    for sms_id, sms in snapshot.items():
        row = dict(sms)
        for name in PHONE_FIELDS:
            if row.get(name) is not None:
                row[name] = _hmac(re.sub(r"[^\d+]", "", row[name]))
        if sms_text == "drop" or row.get("text") is None:
            row["text"] = None
        else:
            row["text"] = _hmac(row["text"])
        expected[sms_id] = row
    return expected


def _raw_values(snapshot: dict[str, dict[str, Any]]) -> set[str]:
    """Every phone number in both forms, and every text long enough not to occur by chance."""
    values = {sms[name] for sms in snapshot.values() for name in PHONE_FIELDS if sms.get(name)}
    values |= {sms["text"] for sms in snapshot.values() if len(sms.get("text") or "") >= 12}
    return values


def _raw_context(emu: Any) -> set[str]:
    """The organization's and contacts' phones, and the names and emails of contacts and leads
    (those that cannot be a user's name, which SMS keep in user_name)."""
    with emu.lock:
        crm = emu.store.crm
        users = {user.name for user in crm.users.values()}
        values = {number.number for number in crm.numbers.values()}
        values |= {
            rendered[name]
            for contact in crm.contacts.values()
            for rendered in crm.render("contact", contact)["phones"]
            for name in ("phone", "phone_formatted")
        }
        values |= {c.email for c in crm.contacts.values() if c.email}
        names = {c.name for c in crm.contacts.values()} | {lead.name for lead in crm.leads.values()}
    return values | {name for name in names - users if len(name) >= 12}


def _table_text(target: Target) -> dict[str, bytes]:
    """Every column of every table and view of the destination, as text, by table."""
    columns: dict[str, list[str]] = {}
    for schema, table, column in target.query(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE table_schema NOT IN ('information_schema', 'pg_catalog', 'pg_toast')"
    ):
        columns.setdefault(f'"{schema}"."{table}"', []).append(column)
    texts = {}
    for table, names in columns.items():
        select = ", ".join(f'CAST("{name}" AS VARCHAR)' for name in names)
        rows = target.query(f"SELECT {select} FROM {table}")
        text = json.dumps(rows, ensure_ascii=False).encode()
        texts[table] = text + decompressed_states(text)
    return texts


def _local_files(folder: Path) -> dict[str, bytes]:
    """Every file in `folder` but the DuckDB files, by path, with what they hide made readable."""
    return {
        str(p): readable_bytes(p)
        for p in folder.rglob("*")
        if p.is_file() and p.suffix != ".duckdb"
    }


def _hashed_phones(target: Target) -> dict[str, str]:
    return dict(target.query("SELECT id, remote_phone FROM close_sms.sms"))


def _make_changes(running: Any) -> None:
    """change_account's edits, plus SMS whose texts and one new number are easy to find."""
    emu = running.emu
    change_account(emu)
    some = sorted(emu.snapshot().values(), key=lambda sms: sms["id"])[3]
    base = {key: some[key] for key in ("lead_id", "contact_id", "remote_phone", "local_phone")}
    emu.create_sms({**base, "status": "inbox", "direction": "inbound", "text": PROBE_TEXTS[0]})
    draft = emu.create_sms({**base, "status": "draft", "text": "to be replaced by the probe"})
    emu.update_sms(draft["id"], {"text": PROBE_TEXTS[1]})
    emu.create_sms(
        {
            **base,
            "remote_phone": NEW_PHONE,
            "status": "inbox",
            "direction": "inbound",
            "text": PROBE_TEXTS[2],
        }
    )
    emu.clock.advance(60)


@pytest.mark.parametrize("sms_text", ["hash", "drop"])
@pytest.mark.slow
def test_no_raw_phone_or_text_reaches_tables_files_or_output(emulator, target, tmp_path, sms_text):
    running = emulator(sms=300, seed=91)
    env = _privacy_env(sms_text)
    before = running.emu.snapshot()

    first = _sync(running, target, **env)
    assert first.returncode == 0, first.stderr
    assert mismatches(target, _expected(before, sms_text)) == []
    phones_after_backfill = _hashed_phones(target)

    _make_changes(running)
    # Killed once its merge of the changed SMS committed: their package waits in dlt's folder.
    killed = run_killed_at_the_sms_merge(
        tmp_path,
        "committed",
        "sync",
        "--base-url",
        running.base_url,
        *target.cli_args,
        api_key=running.api_key,
        **target.env,
        **env,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    pending_files = _local_files(tmp_path)
    # dlt's debug logs as well, so that any echo of a row would be caught in the output.
    second = _sync(running, target, RUNTIME__LOG_LEVEL="DEBUG", **env)
    assert second.returncode == 0, second.stderr
    after = running.emu.snapshot()
    assert mismatches(target, _expected(after, sms_text)) == []

    # Stable: the same phone hashes alike across runs and fields, new SMS included.
    phones = _hashed_phones(target)
    kept = phones_after_backfill.keys() & phones.keys()
    assert len(kept) == len(phones_after_backfill) - 1  # change_account deleted one
    assert {i: phones[i] for i in kept} == {i: phones_after_backfill[i] for i in kept}
    probe = next(s for s in after.values() if s["text"] == PROBE_TEXTS[0])
    sharing = {s["id"] for s in after.values() if s["remote_phone"] == probe["remote_phone"]}
    assert len(sharing & phones_after_backfill.keys()) >= 1
    assert len({phones[i] for i in sharing}) == 1
    assert phones[probe["id"]] == _hmac(probe["remote_phone"])
    texts = dict(target.query("SELECT id, text FROM close_sms.sms"))
    if sms_text == "drop":
        assert set(texts.values()) == {None}
    else:
        assert texts[probe["id"]] == _hmac(PROBE_TEXTS[0])

    # The views work on hashed values: one conversation per lead and hashed phone.
    reached = [s for s in after.values() if s["status"] not in ("draft", "scheduled")]
    pairs = {
        (s["lead_id"], _hmac(s["remote_phone"]) if s["remote_phone"] else None) for s in reached
    }
    assert (
        set(target.query("SELECT lead_id, remote_phone FROM close_sms.sms_conversations")) == pairs
    )
    assert count(target, "SELECT count(*) FROM close_sms.sms_conversations") == len(pairs)

    raw = _raw_values(before) | _raw_values(after) | set(PROBE_TEXTS) | _raw_context(running.emu)
    assert len({v for v in raw if v.startswith("+")}) > 50 and len(raw) > 150
    needles = search_forms(raw)
    tables = _table_text(target)
    assert {
        '"close_sms"."sms"',
        '"close_sms"."sms_events"',
        '"close_sms"."_dlt_pipeline_state"',
        '"close_sms_staging"."sms"',
        '"close_sms"."contacts"',
        '"close_sms"."leads"',
        '"close_sms"."phone_numbers"',
    } <= set(tables)
    assert found_in(tables, needles) == []
    assert not any(KEY.encode() in data for data in tables.values())

    files = _local_files(tmp_path)
    assert target.warehouse.working_dir.is_relative_to(tmp_path)
    assert any(f.endswith("trace.pickle") for f in files)
    assert found_in(files, needles) == []
    # Rows are on disk only while a stopped run's package waits for the next run: searched then.
    assert any("load/normalized" in f and "_jobs" in f for f in pending_files)
    # The search reads what the files hold: hashed phones are there, raw ones are not.
    assert any(phones[probe["id"]].encode() in data for data in pending_files.values())
    assert found_in(pending_files, needles) == []

    output = {
        f"run {i} output": (r.stdout + r.stderr).encode()
        for i, r in enumerate((first, second, killed))
    }
    assert len(output["run 1 output"]) > 1000  # the debug logs were searched
    assert found_in(output, needles) == []
    assert not any(KEY.encode() in data for data in (*files.values(), *output.values()))


@pytest.mark.slow
def test_changed_privacy_settings_are_refused_until_a_full_refresh(emulator, tmp_path):
    running = emulator(sms=200, seed=92)
    target = Target.duckdb(tmp_path / "w.duckdb")
    assert _sync(running, target).returncode == 0
    raw_rows = dict(target.query("SELECT id, remote_phone FROM close_sms.sms"))

    refused = _sync(running, target, **_privacy_env("hash"))
    assert refused.returncode == 2, refused.stderr
    assert "hash_phones=true, sms_text=hash" in refused.stderr
    assert "hash_phones=false, sms_text=keep" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert dict(target.query("SELECT id, remote_phone FROM close_sms.sms")) == raw_rows

    # The hinted command, run as printed: the same warehouse and server, everything reloaded.
    (hinted,) = re.findall(r"`([^`]+--full-refresh)`", refused.stderr)
    env = cli_env(running.api_key, **target.env, **_privacy_env("hash"))
    refreshed = subprocess.run(hinted, shell=True, env=env, capture_output=True, text=True)
    assert refreshed.returncode == 0, (hinted, refreshed.stderr)
    assert mismatches(target, _expected(running.emu.snapshot(), "hash")) == []

    other_key = _sync(running, target, **_privacy_env("hash", key=OTHER_KEY))
    assert other_key.returncode == 2, other_key.stderr
    assert "hash_key is not the key the data was hashed with" in other_key.stderr
    assert OTHER_KEY not in other_key.stdout + other_key.stderr
    back_to_raw = _sync(running, target)
    assert back_to_raw.returncode == 2 and "--full-refresh" in back_to_raw.stderr

    change_account(running.emu)
    same = _sync(running, target, **_privacy_env("hash"))
    assert same.returncode == 0, same.stderr
    assert mismatches(target, _expected(running.emu.snapshot(), "hash")) == []
    # A reconcile rewrites every row through the backfill path: hashed alike.
    reconcile = _sync(running, target, "--reconcile", **_privacy_env("hash"))
    assert reconcile.returncode == 0, reconcile.stderr
    assert mismatches(target, _expected(running.emu.snapshot(), "hash")) == []


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"SOURCES__CLOSE_SMS__HASH_PHONES": "true"},
            "hash_phones = true needs the secret hash_key",
        ),
        ({"SOURCES__CLOSE_SMS__SMS_TEXT": "hash"}, "sms_text = hash needs the secret hash_key"),
        (
            {"SOURCES__CLOSE_SMS__SMS_TEXT": "redact"},
            "sms_text = 'redact' is not one of keep, drop, hash",
        ),
        (
            {
                "SOURCES__CLOSE_SMS__HASH_PHONES": "true",
                "SOURCES__CLOSE_SMS__HASH_KEY": "short-key",
            },
            "hash_key is shorter than 16 characters",
        ),
        ({"SOURCES__CLOSE_SMS__HASH_PHONES": "maybe"}, "hash_phones"),
    ],
)
def test_bad_privacy_settings_exit_2_naming_the_setting(emulator, tmp_path, env, named):
    running = emulator(sms=20, seed=93)
    target = Target.duckdb(tmp_path / "w.duckdb")

    result = _sync(running, target, **env)

    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "short-key" not in result.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_bare_source_honours_the_settings_and_dlt_refresh_changes_them(
    emulator, tmp_path, monkeypatch
):
    running = emulator(sms=150, seed=94)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__API_KEY", running.api_key)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__BASE_URL", running.base_url)
    for name, value in _privacy_env("drop").items():
        monkeypatch.setenv(name, value)
    target = Target.duckdb(tmp_path / "w.duckdb")
    pipeline = dlt.pipeline(
        pipeline_name="plain_private",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.duckdb(str(target.warehouse.database)),
        dataset_name="close_sms",
    )

    pipeline.run(close_sms_source()).raise_on_failed_jobs()
    assert mismatches(target, _expected(running.emu.snapshot(), "drop")) == []

    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(close_sms_source(sms_text="hash"))
    refused = str(config_error_in(failed.value))
    assert "sms_text=drop" in refused
    # The source names dlt's way to load everything again, not the command's flag.
    assert 'refresh="drop_sources"' in refused and "--full-refresh" not in refused

    pipeline.run(close_sms_source(sms_text="hash"), refresh="drop_sources").raise_on_failed_jobs()
    assert mismatches(target, _expected(running.emu.snapshot(), "hash")) == []


def test_a_phone_quoted_in_an_error_message_is_hashed_too():
    privacy = Privacy.configure(True, "keep", KEY)
    sms = {
        "id": "acti_1",
        "remote_phone": NEW_PHONE,
        "remote_phone_formatted": "+1 415-555-0123",
        "error_message": f"Carrier rejected {NEW_PHONE} (+1 415-555-0123), "
        "forwarded to (650) 555-0199; code 30007",
        "text": "kept as it came",
    }

    row = normalize_sms(sms, privacy)

    hashed = _hmac(NEW_PHONE)
    assert row["remote_phone"] == row["remote_phone_formatted"] == hashed
    # Any number quoted, in any format; an error code is too short to be one.
    other = _hmac("6505550199")
    assert row["error_message"] == (
        f"Carrier rejected {hashed} ({hashed}), forwarded to {other}; code 30007"
    )
    assert row["text"] == "kept as it came"
    assert sms["remote_phone"] == NEW_PHONE  # the item Close returned is not changed


def test_data_loaded_before_the_mode_was_recorded_counts_as_raw():
    state: dict[str, Any] = {}
    with pytest.raises(ConfigError, match="hash_phones=false, sms_text=keep"):
        Privacy.configure(True, "keep", KEY).enforce(None, loaded_before=True)

    typed = SourceState.read(state)
    typed.privacy_mode = Privacy.configure(False, "keep", None).enforce(
        typed.privacy_mode, loaded_before=True
    )
    typed.write(state)
    # The key of the state dict is the one earlier versions wrote, so their state is read.
    assert state["privacy"] == {"hash_phones": False, "sms_text": "keep", "key_check": None}
    assert SourceState.read(state).privacy_mode == state["privacy"]
    assert KEY not in json.dumps(state)
