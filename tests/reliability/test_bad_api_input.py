"""Bad input from the API: loaded faithfully, or a clear stop with the cursor left where it was.

Type-change policy (tested below): a value that does not fit its column's type (e.g. `cost`
"free" in a DECIMAL column) is kept as it came, in a dlt variant column named
`<column>__v_<type>` (here `cost__v_text`); the typed column is NULL for that row. The run
succeeds and nothing is dropped. A field Close adds appears as a new column.
"""

from __future__ import annotations

import copy
from datetime import timedelta

import duckdb
import pytest

from close_api_emulator.hooks import MISSING
from tests.reliability.helpers import FAST_FAIL, fingerprint, one_line_error, status, sync_cli
from tests.support import mismatches


def _template(emu) -> dict:
    some = next(iter(emu.snapshot().values()))
    return {k: some[k] for k in ("lead_id", "contact_id", "remote_phone", "local_phone")}


@pytest.mark.parametrize("kind", ["malformed", "html200"])
@pytest.mark.parametrize("where", ["/event/", "/activity/sms/"])
@pytest.mark.slow
def test_invalid_body_stops_clearly_and_cursor_does_not_advance(emulator, tmp_path, kind, where):
    running = emulator(sms=300, seed=51)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    assert sync_cli(running, database).returncode == 0
    before_status = status(database)
    before_rows = fingerprint(database)
    created = emu.create_sms({**_template(emu), "status": "sent", "text": "after the first run"})
    emu.clock.advance(30)
    emu.faults.add(kind, 100, where)
    # The change feed reads /event/; a reconcile reads /activity/sms/ pages.
    extra = ("--reconcile",) if where == "/activity/sms/" else ()

    failed = sync_cli(running, database, *extra, **FAST_FAIL)

    assert failed.returncode == 4, failed.stderr
    assert "not valid JSON" in one_line_error(failed.stderr)
    after_status = status(database)
    assert after_status["events_read_from"] == before_status["events_read_from"]
    assert after_status["feed_checked_at"] == before_status["feed_checked_at"]
    assert fingerprint(database) == before_rows
    assert emu.stats.faults[kind] >= 3  # first try and two retries

    emu.faults.clear()
    rerun = sync_cli(running, database)
    assert rerun.returncode == 0, rerun.stderr
    assert mismatches(database, emu.snapshot()) == []
    assert created["id"] in {row for row in emu.snapshot()}


def test_invalid_body_during_first_backfill_resumes_exactly(emulator, tmp_path):
    running = emulator(sms=900, seed=52)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    emu.faults.add("html200", 100, "/activity/sms/")
    failed = sync_cli(running, database, SOURCES__CLOSE_SMS__BACKFILL_WORKERS="1", **FAST_FAIL)
    assert failed.returncode == 4
    assert "not valid JSON" in one_line_error(failed.stderr)
    emu.faults.clear()
    rerun = sync_cli(running, database)
    assert rerun.returncode == 0, rerun.stderr
    assert mismatches(database, emu.snapshot()) == []


ODD_VALUES = {
    "cost as a number": {"cost": 1.5},
    "cost as a string": {"cost": "1.5"},
    "timestamps without fraction, with Z": {
        "date_updated": "2026-01-02T03:04:05+00:00",
        "activity_at": "2026-01-02T03:04:05Z",
        "date_sent": "2026-01-02T03:04:05.5Z",
    },
    "null date_updated": {"date_updated": None},
    "missing fields": {"cost": MISSING, "error_message": MISSING, "text": MISSING},
    "1 MB of text": {"text": "x" * 1_000_000},
    "NUL bytes": {"text": "before\x00after\x00"},
    "emoji and scripts": {"text": "🚀👍🏽 Grüße 日本語 \u202eRTL\u202c 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"},
    "extra fields": {"sentiment_score": 0.75, "channel_label": "support"},
}


def test_odd_values_load_faithfully_by_backfill_and_by_change_feed(emulator, tmp_path):
    running = emulator(sms=150, seed=53)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    ids = sorted(emu.snapshot())
    for sms_id, fields in zip(ids, ODD_VALUES.values(), strict=False):
        emu.override_raw(sms_id, fields)

    first = sync_cli(running, database)

    assert first.returncode == 0, first.stderr
    assert mismatches(database, emu.snapshot()) == []

    # The same values arriving through the change feed (new SMS, `created` events).
    fresh = []
    for fields in ODD_VALUES.values():
        sms = emu.create_sms({**_template(emu), "status": "sent", "text": "fresh"})
        emu.override_raw(sms["id"], fields, emit_update=True)
        fresh.append(sms["id"])
    emu.clock.advance(5)

    second = sync_cli(running, database)

    assert second.returncode == 0, second.stderr
    assert mismatches(database, emu.snapshot()) == []
    with duckdb.connect(str(database), read_only=True) as connection:
        extra = connection.execute(
            "SELECT id, sentiment_score, channel_label FROM close_sms.sms "
            "WHERE channel_label IS NOT NULL ORDER BY id"
        ).fetchall()
        text_lengths = dict(
            connection.execute("SELECT id, length(text) FROM close_sms.sms").fetchall()
        )
    extra_ids = {ids[list(ODD_VALUES).index("extra fields")], fresh[-1]}
    assert {row[0] for row in extra} == extra_ids
    assert all(row[1] == pytest.approx(0.75) and row[2] == "support" for row in extra)
    assert text_lengths[fresh[list(ODD_VALUES).index("1 MB of text")]] == 1_000_000


def test_type_change_lands_in_a_variant_column_and_nothing_is_dropped(emulator, tmp_path):
    running = emulator(sms=120, seed=54)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    assert sync_cli(running, database).returncode == 0
    victim = sorted(emu.snapshot())[7]
    emu.override_raw(victim, {"cost": "free", "date_scheduled": "next tuesday"}, emit_update=True)
    emu.clock.advance(timedelta(seconds=5).total_seconds())

    result = sync_cli(running, database)

    assert result.returncode == 0, result.stderr
    connection = duckdb.connect(str(database), read_only=True)
    try:
        row = connection.execute(
            "SELECT cost, cost__v_text, date_scheduled, date_scheduled__v_text "
            "FROM close_sms.sms WHERE id = ?",
            [victim],
        ).fetchone()
        others = connection.execute(
            "SELECT count(*) FROM close_sms.sms WHERE cost__v_text IS NOT NULL AND id <> ?",
            [victim],
        ).fetchone()[0]
    finally:
        connection.close()
    assert row == (None, "free", None, "next tuesday")
    assert others == 0
    # Every other field of every SMS, the victim included, still equals Close.
    expected = copy.deepcopy(emu.snapshot())
    expected[victim]["cost"] = None
    expected[victim]["date_scheduled"] = None
    assert mismatches(database, expected) == []
