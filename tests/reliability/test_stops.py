"""Stopped the way production stops jobs: SIGTERM (timeout, systemd, docker, Kubernetes), a full disk."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import Target, cli_command, cli_env, mismatches, run_cli

# Long enough a backfill (chunks of 400 SMS, 20 ms a page) to stop mid-way.
SLOW = {"sms": 4000, "latency_ms": 20}
CHUNKS = {"SOURCES__CLOSE_SMS__BACKFILL_CHUNK_SIZE": "400"}


def _ledger(target: Target) -> list[tuple[str, int, str | None]]:
    return [
        (outcome, int(exit_status), mode)
        for outcome, exit_status, mode in target.query(
            "SELECT outcome, exit_status, mode FROM close_sms.sync_runs ORDER BY ended_at"
        )
    ]


def test_sigterm_mid_backfill_exits_143_records_the_run_and_the_next_run_resumes(emulator, target):
    running = emulator(seed=101, **SLOW)
    args = ("sync", "--base-url", running.base_url, *target.cli_args)
    env = cli_env(running.api_key, **CHUNKS, **target.env)
    victim = subprocess.Popen(cli_command(*args), env=env, stderr=subprocess.PIPE, text=True)
    assert victim.stderr is not None
    for line in victim.stderr:
        if "chunk 2 loaded" in line:
            victim.send_signal(signal.SIGTERM)
            break
    sent = time.monotonic()
    _, rest = victim.communicate(timeout=10)
    assert time.monotonic() - sent < 10
    assert victim.returncode == 143, rest
    assert rest.strip().splitlines()[-1] == "close-sms: interrupted by SIGTERM"
    assert "Traceback" not in rest
    assert _ledger(target)[-1][:2] == ("interrupted", 143)

    # At once: the lock was released with the stopped run.
    resumed = run_cli(*args, api_key=running.api_key, **CHUNKS, **target.env)

    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming backfill" in resumed.stderr
    assert mismatches(target, running.emu.snapshot()) == []
    assert [row[0] for row in _ledger(target)] == ["interrupted", "success"]


def test_sigterm_before_the_first_load_is_in_the_journal_and_status(emulator, tmp_path):
    running = emulator(seed=102, **SLOW)
    database = tmp_path / "w.duckdb"
    args = ("sync", "--base-url", running.base_url, "--database", str(database))
    victim = subprocess.Popen(
        cli_command(*args),
        env=cli_env(running.api_key, **CHUNKS),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert victim.stderr is not None
    for line in victim.stderr:
        if line.startswith("Backfill"):
            victim.send_signal(signal.SIGTERM)
            break
    _, rest = victim.communicate(timeout=10)
    assert victim.returncode == 143, rest

    status = run_cli("status", "--database", str(database), api_key=None)

    # Nothing was loaded, so the row waits in the journal; status reads it from there.
    assert "interrupted (exit 143" in status.stdout, status.stdout + status.stderr


def _mounted(folder: Path) -> bool:
    return any(
        line.split()[1] == str(folder) for line in Path("/proc/mounts").read_text().splitlines()
    )


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[None]:
    """A tmpfs of `size` at `folder`, unmounted afterwards whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small disk needs root (the CI runs the suite as root)")
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
    assert not _mounted(folder)


def test_full_disk_exits_6_naming_the_path_and_the_next_run_with_room_is_exact(emulator, tmp_path):
    running = emulator(sms=5000, seed=103)
    disk = tmp_path / "disk"
    database = disk / "w.duckdb"
    args = ("sync", "--base-url", running.base_url, "--database", str(database))
    # The whole backfill takes about 7 MB here: the disk fills a few chunks in.
    with small_disk(disk, "1200k"):
        full = run_cli(*args, api_key=running.api_key, **CHUNKS)

        assert full.returncode == 6, full.stderr
        errors = [line for line in full.stderr.splitlines() if "close-sms: error:" in line]
        assert len(errors) == 1, full.stderr
        assert f"{disk}/" in errors[0] and "No space left on device" in errors[0]
        assert "Traceback" not in full.stderr

        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        with_room = run_cli(*args, api_key=running.api_key, **CHUNKS)

        assert with_room.returncode == 0, with_room.stderr
        assert mismatches(database, running.emu.snapshot()) == []
