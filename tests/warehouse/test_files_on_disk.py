"""What the sync leaves on disk: no load package once loaded, an empty staging dataset, no
deleted SMS in any file but the database until it is compacted, and files their owner's alone.

Every sync runs the real `close-sms` command against the emulator over HTTP.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock
import pytest

from close_sms.source import settings
from tests.reliability.helpers import fingerprint
from tests.support import (
    Target,
    change_account,
    count,
    found_in,
    mismatches,
    readable_bytes,
    run_cli,
    run_killed_at_the_sms_merge,
    search_forms,
)

# Texts and a number no generated SMS has, so that finding one means finding that SMS.
DELETED_TEXT = "Probe to delete: the safe's code is 90210-quartz"
KEPT_TEXT = "Probe to keep: the spare key is under the blue pot"
DELETED_PHONE = "+14155550177"
REMOTE_PHONE_FIELDS = ("remote_phone", "remote_phone_formatted")
# The umask of a shell that shares new files with everyone: what close-sms must not rely on.
OPEN_UMASK = 0o022


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The test process's umask, which every CLI run inherits, lets anyone read new files."""
    previous = os.umask(OPEN_UMASK)
    yield
    os.umask(previous)


def _sync(running: Any, target: Target, *flags: str, **env: str) -> subprocess.CompletedProcess:
    result = run_cli(
        "sync",
        "--base-url",
        running.base_url,
        *target.cli_args,
        *flags,
        api_key=running.api_key,
        **target.env,
        **env,
    )
    assert result.returncode == 0, result.stderr
    return result


def _create_probes(running: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two SMS easy to find in bytes: (the one to delete, the one to keep)."""
    emu = running.emu
    some = min(emu.snapshot().values(), key=lambda sms: sms["id"])
    base = {key: some[key] for key in ("lead_id", "contact_id", "local_phone")}
    inbound = {"status": "inbox", "direction": "inbound"}
    deleted = emu.create_sms(
        {**base, **inbound, "remote_phone": DELETED_PHONE, "text": DELETED_TEXT}
    )
    kept = emu.create_sms(
        {**base, **inbound, "remote_phone": some["remote_phone"], "text": KEPT_TEXT}
    )
    # Older than the recent re-read's window, so no later sync rewrites them: DuckDB then keeps
    # a deleted one's bytes where the first sync wrote them (a rewrite may reuse those blocks).
    emu.clock.advance((settings.RECENT_WINDOW_HOURS + 1) * 3600)
    return deleted, kept


def _delete(running: Any, sms: dict[str, Any]) -> None:
    running.emu.delete_sms(sms["id"])
    running.emu.clock.advance(120)


def _raw_forms(sms: dict[str, Any]) -> dict[bytes, str]:
    """The SMS's text and its own phone number (the organization's is in other SMS too), in
    every form a file could hold them."""
    values = {sms[name] for name in REMOTE_PHONE_FIELDS} | {sms["text"]}
    assert DELETED_PHONE in values
    return search_forms(values)


def _local_files(target: Target, root: Path) -> dict[str, bytes]:
    """Every file under `root` but the DuckDB files, readable; dlt's working folder is in it."""
    assert target.warehouse.working_dir.is_relative_to(root)
    return {
        str(path): readable_bytes(path)
        for path in root.rglob("*")
        if path.is_file() and path.suffix != ".duckdb"
    }


def _staged_rows(target: Target) -> dict[str, int]:
    """The data tables of the staging dataset that hold rows (dlt's schema versions aside)."""
    tables = [
        name
        for (name,) in target.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'close_sms_staging' AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\'"
        )
    ]
    assert "sms" in tables
    rows = {
        name: count(target, f"SELECT count(*) FROM close_sms_staging.{name}") for name in tables
    }
    return {name: number for name, number in rows.items() if number}


def _packages(target: Target) -> dict[str, list[str]]:
    pipeline = target.warehouse.pipeline()
    return {
        "loaded": list(pipeline.list_completed_load_packages()),
        "pending": list(pipeline.list_normalized_load_packages()),
    }


def test_a_deleted_sms_is_in_no_file_but_the_database_and_staging_is_empty(
    emulator, target, tmp_path
):
    running = emulator(sms=150, seed=131)
    deleted, _ = _create_probes(running)

    _sync(running, target)
    assert _staged_rows(target) == {}
    assert _packages(target) == {"loaded": [], "pending": []}

    _delete(running, deleted)
    _sync(running, target)

    assert mismatches(target, running.emu.snapshot()) == []
    assert count(target, f"SELECT count(*) FROM close_sms.sms WHERE text = '{KEPT_TEXT}'") == 1
    assert _staged_rows(target) == {}
    assert _packages(target) == {"loaded": [], "pending": []}
    files = _local_files(target, tmp_path)
    # The search read dlt's own files, the state among them.
    assert {"state.json", "trace.pickle"} <= {Path(name).name for name in files}
    assert found_in(files, _raw_forms(deleted)) == []


def test_a_killed_runs_package_stays_until_it_loads_then_goes(
    emulator, target, tmp_path, open_umask
):
    running = emulator(sms=150, seed=132)
    _sync(running, target)
    _create_probes(running)

    killed = run_killed_at_the_sms_merge(
        tmp_path,
        "committed",
        "sync",
        "--base-url",
        running.base_url,
        *target.cli_args,
        api_key=running.api_key,
        **target.env,
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    packages = _packages(target)
    assert packages["loaded"] == [] and len(packages["pending"]) == 1
    package = Path(
        target.warehouse.pipeline().get_load_package_info(packages["pending"][0]).package_path
    )
    kept_files = {str(path): readable_bytes(path) for path in package.rglob("*") if path.is_file()}
    # What the resume loads again is there, and as private as every file the command makes.
    assert found_in(kept_files, search_forms({KEPT_TEXT})) != []
    assert _loose_modes(package.parent) == []

    _sync(running, target)

    assert mismatches(target, running.emu.snapshot()) == []
    assert _packages(target) == {"loaded": [], "pending": []}
    assert not package.exists()


def _loose_modes(root: Path) -> list[str]:
    """Files and folders under `root` that others than their owner may open."""
    return [
        f"{path}: {stat.filemode(path.stat().st_mode)}"
        for path in root.rglob("*")
        if stat.S_IMODE(path.stat().st_mode) & 0o077
    ]


def test_files_are_their_owners_alone_and_the_reader_copy_follows_the_database(
    emulator, tmp_path, open_umask
):
    running = emulator(sms=150, seed=133)
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    database, copy = folder / "w.duckdb", folder / "reader.duckdb"
    target = Target.duckdb(database)
    reader_copy = {"SOURCES__CLOSE_SMS__READER_COPY": str(copy)}

    _sync(running, target, **reader_copy)
    made = {path.name for path in folder.iterdir()}
    assert {"w.duckdb", "reader.duckdb", "w.duckdb.lock", ".w.duckdb.dlt"} <= made
    assert (target.warehouse.working_dir / "close_sms" / "state.json").is_file()
    assert _loose_modes(folder) == []

    change_account(running.emu)
    _sync(running, target, **reader_copy)
    assert _loose_modes(folder) == []

    # Shared with a group on purpose: the next sync keeps that, and its copy follows.
    database.chmod(0o640)
    _sync(running, target, **reader_copy)
    assert stat.S_IMODE(database.stat().st_mode) == 0o640
    assert stat.S_IMODE(copy.stat().st_mode) == 0o640
    assert stat.S_IMODE((target.warehouse.working_dir / "close_sms").stat().st_mode) == 0o700


def _bytes_of(path: Path, text: str) -> bool:
    return text.encode() in path.read_bytes()


def test_compact_rewrites_the_database_and_its_copy_without_a_deleted_sms(
    emulator, tmp_path, open_umask
):
    running = emulator(sms=150, seed=134)
    database, copy = tmp_path / "w.duckdb", tmp_path / "reader.duckdb"
    target = Target.duckdb(database)
    reader_copy = {"SOURCES__CLOSE_SMS__READER_COPY": str(copy)}
    deleted, _ = _create_probes(running)
    _sync(running, target, **reader_copy)
    _delete(running, deleted)
    _sync(running, target, **reader_copy)
    assert count(target, f"SELECT count(*) FROM close_sms.sms WHERE id = '{deleted['id']}'") == 0
    # DuckDB keeps the deleted row's bytes in free blocks, and the copy is the file's bytes.
    for path in (database, copy):
        assert _bytes_of(path, DELETED_TEXT) and _bytes_of(path, DELETED_PHONE), path
    rows = fingerprint(database)
    database.chmod(0o640)

    result = run_cli("compact", "--database", str(database), api_key=None, **reader_copy)

    assert result.returncode == 0, result.stderr
    assert f"Compacted {database}" in result.stdout and str(copy) in result.stdout
    for path in (database, copy):
        assert not _bytes_of(path, DELETED_TEXT) and not _bytes_of(path, DELETED_PHONE), path
        # The search sees texts in the rewritten file: a live one is there.
        assert _bytes_of(path, KEPT_TEXT), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    assert fingerprint(database) == rows
    assert fingerprint(copy) == rows
    assert list(tmp_path.glob(".*compact*")) == []
    # dlt's state came along: the next sync reads the change feed, no backfill again.
    change_account(running.emu)
    after = _sync(running, target, **reader_copy)
    assert "Sync done (incremental)" in after.stderr
    assert mismatches(target, running.emu.snapshot()) == []


def test_compact_is_refused_while_a_sync_holds_the_lock(tmp_path):
    database = tmp_path / "w.duckdb"

    with filelock.FileLock(f"{database}.lock"):
        result = run_cli("compact", "--database", str(database), api_key=None)

    assert result.returncode == 5, result.stderr
    assert "another close-sms sync is running" in result.stderr
    assert not database.exists()


def test_a_reconcile_compacts_the_database(emulator, tmp_path):
    running = emulator(sms=150, seed=135)
    database = tmp_path / "w.duckdb"
    target = Target.duckdb(database)
    deleted, _ = _create_probes(running)
    _sync(running, target)
    _delete(running, deleted)
    _sync(running, target)
    assert _bytes_of(database, DELETED_TEXT)

    reconciled = _sync(running, target, "--reconcile")

    assert f"Compacted {database}" in reconciled.stderr
    assert "Sync done (reconcile)" in reconciled.stderr
    assert not _bytes_of(database, DELETED_TEXT) and _bytes_of(database, KEPT_TEXT)
    assert mismatches(target, running.emu.snapshot()) == []
    # The run's ledger row, written after the rewrite, is in the new file.
    assert count(target, "SELECT count(*) FROM close_sms.sync_runs") == 3
