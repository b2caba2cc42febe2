"""Past Close's 30-day event log: the sync falls back to a backfill by itself, deletes caught."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests import cli_process
from tests.reliability.helpers import status, sync_cli
from tests.support import cli_command, cli_env, mismatches


@pytest.mark.slow
def test_resumed_after_45_days_reconciles_and_catches_deletes_the_log_forgot(emulator, tmp_path):
    running = emulator(sms=700, seed=91)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    assert sync_cli(running, database).returncode == 0

    snapshot = emu.snapshot()
    gone = sorted(snapshot)[:6]
    for sms_id in gone:
        emu.delete_sms(sms_id)
    lead = sorted({s["lead_id"] for s in snapshot.values() if s["lead_id"]})[3]
    gone += emu.delete_lead(lead)
    survivor = sorted(emu.snapshot())[10]
    emu.clock.advance(45 * 86400)
    # The proof that only a backfill can catch them: the event log no longer has the deletes.
    assert not {e["object_id"] for e in emu.events() if e["action"] == "deleted"} & set(gone)

    result = sync_cli(running, database)

    assert result.returncode == 0, result.stderr
    assert "beyond the event log" in result.stderr and "Reconcile" in result.stderr
    assert mismatches(database, emu.snapshot()) == []
    assert survivor in emu.snapshot()
    assert not status(database)["backfill_in_progress"]


@pytest.mark.slow
def test_unfinished_backfill_older_than_the_log_starts_over(emulator, tmp_path):
    running = emulator(sms=2000, seed=92, latency_ms=20)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    env = cli_env(running.api_key, SOURCES__CLOSE_SMS__BACKFILL_CHUNK_SIZE="200")
    args = ("sync", "--base-url", running.base_url, "--database", str(database))
    victim = cli_process.popen(cli_command(*args), env=env, stderr=subprocess.PIPE, text=True)
    assert victim.stderr is not None
    for line in victim.stderr:
        if "chunk 2 loaded" in line:
            victim.send_signal(signal.SIGKILL)
            break
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert status(database)["backfill_in_progress"]
    for sms_id in sorted(emu.snapshot())[:5]:
        emu.delete_sms(sms_id)
    emu.clock.advance(35 * 86400)

    result = cli_process.run(
        cli_command(*args), env=env, capture_output=True, text=True, timeout=600
    )

    assert result.returncode == 0, result.stderr
    assert "older than the event log" in result.stderr
    assert mismatches(database, emu.snapshot()) == [], result.stderr
