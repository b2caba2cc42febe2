"""A notebook holding a read-only DuckDB connection while cron syncs.

DuckDB allows one writing process, or any number of read-only ones, never both. Documented
behaviour, tested here:

- a reader open when the sync needs the file: the sync says it waits, and goes on once the
  reader closes; it exits 0 and the warehouse is exact;
- a reader that stays open past `lock_wait`: the sync exits 6 with a message naming the cause
  and the fix ("open in another process ... reader_copy"); the database is unchanged, and the
  next run (reader closed) is exact;
- a reader that opens between two of the sync's steps: the sync's next step waits for it;
  nothing is lost;
- `reader_copy`: notebooks keep the copy open across syncs; each sync that wrote publishes a
  new copy, equal to Close, views included; a sync that wrote nothing leaves it alone.

(Two syncs at once are covered by tests/app/test_cli.py: one exits 5, the data is intact.)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from close_sms.source import settings
from close_sms.warehouse.destination import Warehouse
from close_sms.warehouse.duckdb_wait import LOCK_WAIT_SECONDS
from close_sms.warehouse.reader_copy import COPY_CPU_SHARE, CopyPacer, publish_reader_copy
from tests import cli_process
from tests.reliability.helpers import file_digest, fingerprint, one_line_error, sync_cli
from tests.support import (
    change_account,
    cli_command,
    cli_env,
    count,
    mismatches,
    run_cli,
    sync,
)


def _synced_with_a_change(emulator, tmp_path: Path, seed: int):
    running = emulator(sms=300, seed=seed)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    assert sync_cli(running, database).returncode == 0
    emu.create_sms(
        {"status": "sent", "text": "new", "lead_id": next(iter(emu.snapshot().values()))["lead_id"]}
    )
    return running, database


def _start_sync(running, database: Path, **env: str) -> subprocess.Popen[str]:
    return cli_process.popen(
        cli_command("sync", "--base-url", running.base_url, "--database", str(database)),
        env=cli_env(running.api_key, **env),
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(process: subprocess.Popen[str], text: str) -> str:
    """The sync's stderr up to and including the first line holding `text`."""
    assert process.stderr is not None
    seen = ""
    for line in process.stderr:
        seen += line
        if text in line:
            break
    return seen


def test_sync_waits_for_a_reader_and_goes_on_when_it_closes(emulator, tmp_path):
    running, database = _synced_with_a_change(emulator, tmp_path, seed=71)
    before = file_digest(database)

    notebook = duckdb.connect(str(database), read_only=True)
    try:
        process = _start_sync(running, database)
        waiting = _read_until(process, "Waiting up to")
        # The sync is blocked on the file: nothing was written, the reader still reads.
        still_readable = notebook.execute("SELECT count(*) FROM close_sms.sms").fetchone()[0]
        unchanged = file_digest(database) == before
    finally:
        notebook.close()
    assert process.stderr is not None
    rest = process.stderr.read()
    process.wait(timeout=300)

    assert f"Waiting up to {LOCK_WAIT_SECONDS:g} s for another process" in waiting
    assert str(database) in waiting
    assert still_readable == len(running.emu.snapshot()) - 1
    assert unchanged
    assert process.returncode == 0, waiting + rest
    assert mismatches(database, running.emu.snapshot()) == []


def test_reader_open_past_lock_wait_makes_the_sync_exit_6_and_change_nothing(emulator, tmp_path):
    running, database = _synced_with_a_change(emulator, tmp_path, seed=72)
    before = (file_digest(database), fingerprint(database))

    notebook = duckdb.connect(str(database), read_only=True)
    try:
        blocked = sync_cli(running, database, SOURCES__CLOSE_SMS__LOCK_WAIT="1")
        still_readable = notebook.execute("SELECT count(*) FROM close_sms.sms").fetchone()[0]
    finally:
        notebook.close()

    assert blocked.returncode == 6
    assert "Waiting up to 1 s" in blocked.stderr
    error = one_line_error(blocked.stderr)
    assert "open in another process" in error and "reader_copy" in error
    assert still_readable == len(running.emu.snapshot()) - 1
    assert (file_digest(database), fingerprint(database)) == before

    after = sync_cli(running, database)
    assert after.returncode == 0, after.stderr
    assert mismatches(database, running.emu.snapshot()) == []


@pytest.mark.slow
def test_reader_opened_during_a_backfill_loses_nothing(emulator, tmp_path):
    running = emulator(sms=3000, seed=73, latency_ms=20)
    database = tmp_path / "w.duckdb"
    process = _start_sync(running, database, SOURCES__CLOSE_SMS__BACKFILL_CHUNK_SIZE="300")
    notebook = None
    _read_until(process, "chunk 1 loaded")
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
    assert process.stderr is not None
    err = process.stderr.read()
    process.wait(timeout=300)

    assert notebook is not None and seen is not None and seen > 0
    assert process.returncode == 0, err
    assert mismatches(database, running.emu.snapshot()) == []


# A notebook in its own process: it opens the file read-only once and answers each line on
# its stdin with a count from a view, through the connection it keeps.
NOTEBOOK = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=True)
for _ in sys.stdin:
    print(connection.execute("SELECT count(*) FROM close_sms.sms_messages").fetchone()[0], flush=True)
"""


def _ask(notebook: subprocess.Popen[str]) -> int:
    assert notebook.stdin is not None and notebook.stdout is not None
    notebook.stdin.write("count\n")
    notebook.stdin.flush()
    return int(notebook.stdout.readline())


@pytest.mark.slow
def test_notebook_keeps_the_reader_copy_open_across_syncs(emulator, tmp_path):
    running = emulator(sms=400, seed=74)
    emu = running.emu
    database, copy = tmp_path / "w.duckdb", tmp_path / "readers" / "w_copy.duckdb"
    copy.parent.mkdir()
    reader_copy = {"SOURCES__CLOSE_SMS__READER_COPY": str(copy)}
    first = sync_cli(running, database, **reader_copy)
    assert first.returncode == 0, first.stderr
    assert f"Reader copy published: {copy}" in first.stderr
    assert mismatches(copy, emu.snapshot()) == []

    notebook = subprocess.Popen(
        [sys.executable, "-c", NOTEBOOK, str(copy)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first_count = _ask(notebook)
        for _ in range(3):
            change_account(emu)
            result = sync_cli(running, database, **reader_copy)
            assert result.returncode == 0, result.stderr
            assert "Waiting" not in result.stderr
            assert "Reader copy published" in result.stderr
            # The notebook still reads the copy it opened; a new connection sees this sync.
            assert _ask(notebook) == first_count
            assert mismatches(copy, emu.snapshot()) == []
            assert count(copy, "SELECT count(*) FROM close_sms.sms_messages") == len(emu.snapshot())
    finally:
        assert notebook.stdin is not None
        notebook.stdin.close()
        notebook.wait(timeout=30)
    assert notebook.returncode == 0
    assert sorted(path.name for path in copy.parent.iterdir() if path.is_file()) == [copy.name]


def test_reader_copy_is_republished_only_after_a_write_or_when_missing(emulator, tmp_path):
    running = emulator(sms=200, seed=75)
    database, copy = tmp_path / "w.duckdb", tmp_path / "w_copy.duckdb"
    reader_copy = {"SOURCES__CLOSE_SMS__READER_COPY": str(copy)}
    assert sync_cli(running, database, **reader_copy).returncode == 0
    running.emu.clock.advance(settings.EVENT_LOOKBACK_SECONDS + 60)
    assert sync_cli(running, database, **reader_copy).returncode == 0  # reads the last events
    published = copy.stat()

    quiet = sync_cli(running, database, **reader_copy)
    assert quiet.returncode == 0, quiet.stderr
    assert "nothing new to write" in quiet.stderr
    assert "Reader copy published" not in quiet.stderr
    assert (copy.stat().st_ino, copy.stat().st_mtime_ns) == (
        published.st_ino,
        published.st_mtime_ns,
    )

    copy.unlink()
    restored = sync_cli(running, database, **reader_copy)
    assert restored.returncode == 0, restored.stderr
    assert "nothing new to write" in restored.stderr
    assert "Reader copy published" in restored.stderr
    assert mismatches(copy, running.emu.snapshot()) == []


def test_reader_copy_settings_that_cannot_work_exit_2(tmp_path):
    elsewhere = run_cli(
        "sync",
        "--destination",
        "postgres",
        api_key="some_key_1",
        DESTINATION__POSTGRES__CREDENTIALS="postgresql://u:p@127.0.0.1:9/db",
        SOURCES__CLOSE_SMS__READER_COPY=str(tmp_path / "copy.duckdb"),
    )
    missing_folder = run_cli(
        "sync",
        "--database",
        str(tmp_path / "w.duckdb"),
        api_key="some_key_1",
        SOURCES__CLOSE_SMS__READER_COPY=str(tmp_path / "nowhere" / "copy.duckdb"),
    )
    itself = run_cli(
        "sync",
        "--database",
        str(tmp_path / "w.duckdb"),
        api_key="some_key_1",
        SOURCES__CLOSE_SMS__READER_COPY=str(tmp_path / "w.duckdb"),
    )

    assert elsewhere.returncode == 2, elsewhere.stderr
    assert "reader_copy is for the duckdb destination only" in one_line_error(elsewhere.stderr)
    assert missing_folder.returncode == 2, missing_folder.stderr
    assert "nowhere does not exist" in one_line_error(missing_folder.stderr)
    assert itself.returncode == 2, itself.stderr
    assert "is the database itself" in one_line_error(itself.stderr)
    assert list(tmp_path.iterdir()) == []


def test_a_follower_spaces_its_reader_copies_to_a_quarter_of_a_core(emulator, tmp_path):
    """A copy that cost T seconds of CPU is followed by the next no sooner than 4 T after it
    began, so copying a large file after every change takes at most a quarter of one core."""
    running = emulator(sms=300, seed=76)
    database, copy = tmp_path / "w.duckdb", tmp_path / "w_copy.duckdb"
    warehouse = Warehouse.configure("duckdb", database, reader_copy=copy)
    sync(running, database)
    pacer = CopyPacer()
    began = time.monotonic()
    starts, costs = [], []
    for _ in range(4):
        cpu = pacer.cpu_seconds
        assert publish_reader_copy(warehouse, changed=True, pacer=pacer)
        costs.append(pacer.cpu_seconds - cpu)
        starts.append(pacer.not_before - costs[-1] / COPY_CPU_SHARE)
    assert pacer.copies == 4 and all(cost > 0 for cost in costs)
    for before, after, cost in zip(starts, starts[1:], costs, strict=False):
        assert after - before >= cost / COPY_CPU_SHARE - 0.001
    # Over the span up to when a fifth copy could start, copying took a quarter of a core.
    assert pacer.cpu_seconds / (pacer.not_before - began) <= COPY_CPU_SHARE + 0.01
    assert mismatches(copy, running.emu.snapshot()) == []
