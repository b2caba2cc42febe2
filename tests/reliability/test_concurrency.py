"""A notebook holding a read-only DuckDB connection while cron syncs.

DuckDB allows one writing process, or any number of read-only ones, never both. Documented
behaviour, tested here:

- a reader open when the sync starts: the sync exits 6 at once, with a message naming the
  cause and the fix ("open in another process ... close that connection or read from a
  copy"); the database is unchanged;
- a reader that opens between two of the sync's steps: the sync's next write fails, it exits 6
  with the same message; what it had loaded stays, and the next run (reader closed) resumes,
  so nothing is lost.

(Two syncs at once are covered by tests/sync/test_cli.py: one exits 5, the data is intact.)
"""

from __future__ import annotations

import subprocess
import time

import duckdb

from tests.reliability.helpers import file_digest, fingerprint, one_line_error, sync_cli
from tests.sync.support import cli_command, cli_env, mismatches


def test_reader_open_before_the_sync_makes_it_exit_6_and_change_nothing(emulator, tmp_path):
    running = emulator(sms=300, seed=71)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    assert sync_cli(running, database).returncode == 0
    emu.create_sms(
        {"status": "sent", "text": "new", "lead_id": next(iter(emu.snapshot().values()))["lead_id"]}
    )
    before = (file_digest(database), fingerprint(database))

    notebook = duckdb.connect(str(database), read_only=True)
    try:
        notebook.execute("SELECT count(*) FROM close_sms.sms").fetchone()
        blocked = sync_cli(running, database)
        still_readable = notebook.execute("SELECT count(*) FROM close_sms.sms").fetchone()[0]
    finally:
        notebook.close()

    assert blocked.returncode == 6
    assert "open in another process" in one_line_error(blocked.stderr)
    assert still_readable == len(emu.snapshot()) - 1
    assert (file_digest(database), fingerprint(database)) == before

    after = sync_cli(running, database)
    assert after.returncode == 0, after.stderr
    assert mismatches(database, emu.snapshot()) == []


def test_reader_opened_during_a_backfill_loses_nothing(emulator, tmp_path):
    running = emulator(sms=3000, seed=72, latency_ms=20)
    database = tmp_path / "w.duckdb"
    process = subprocess.Popen(
        cli_command("sync", "--base-url", running.base_url, "--database", str(database)),
        env=cli_env(running.api_key, SOURCES__CLOSE_SMS__BACKFILL_CHUNK_SIZE="300"),
        stderr=subprocess.PIPE,
        text=True,
    )
    notebook = None
    assert process.stderr is not None
    for line in process.stderr:
        if "chunk 1 loaded" in line:
            break
    # The sync holds the file only while a step writes: retry until we slip in between.
    deadline = time.monotonic() + 60
    while notebook is None and time.monotonic() < deadline and process.poll() is None:
        try:
            notebook = duckdb.connect(str(database), read_only=True)
        except duckdb.IOException:
            time.sleep(0.01)
    seen = None
    try:
        if notebook is not None:
            seen = notebook.execute("SELECT count(*) FROM close_sms.sms").fetchone()[0]
            time.sleep(1.5)  # the notebook keeps it open while the sync wants to write
    finally:
        if notebook is not None:
            notebook.close()
    err = process.stderr.read()
    process.wait(timeout=300)

    assert notebook is not None and seen is not None and seen > 0
    print(
        f"sync with a reader opened mid-backfill: exit {process.returncode}: {err.strip().splitlines()[-1][:200]}"
    )
    if process.returncode != 0:
        assert process.returncode == 6, err
        assert "open in another process" in one_line_error(err)
    rerun = sync_cli(running, database)
    assert rerun.returncode == 0, rerun.stderr
    assert mismatches(database, running.emu.snapshot()) == []
