"""Stopped the way production stops jobs: SIGTERM (timeout, systemd, docker, Kubernetes), a full disk."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dlt.common.storages.load_package import PackageStorage, ParsedLoadJobFileName

from close_sms.errors import DatabaseError
from tests import cli_process
from tests.support import (
    Target,
    cli_command,
    cli_env,
    count,
    mismatches,
    run_cli,
    run_killed_at_the_sms_merge,
    sync,
)

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
    victim = cli_process.popen(cli_command(*args), env=env, stderr=subprocess.PIPE, text=True)
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
    victim = cli_process.popen(
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
    running = emulator(sms=2000, seed=103)
    disk = tmp_path / "disk"
    database = disk / "w.duckdb"
    args = ("sync", "--base-url", running.base_url, "--database", str(database))
    # The whole backfill takes about 3 MB here: the disk fills before it ends.
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


# The tables one delete-insert merge writes together: the root and its nested table.
SMS_CHAIN = ("sms", "sms__attachments")
# The format of the job dlt adds to merge a chain's staged rows.
MERGE_JOB_FORMAT = "sql"


def fill_disk(folder: Path) -> None:
    """Write zeros into `folder` until its disk has no room left."""
    with (folder / "filler").open("wb", buffering=0) as filler:
        try:
            while True:
                filler.write(bytes(1 << 16))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


@contextmanager
def disk_full_once_sms_rows_commit(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[threading.Event]:
    """Fill `folder`'s disk between a load job committing `sms` rows and dlt recording that.

    The job is held until the rest of its table chain has loaded, so dlt's next writes (the
    job's completion, then the merge job the chain starts) both hit the full disk: the state a
    disk that fills at the wrong moment leaves. The event is set once the disk was filled.
    """
    record = PackageStorage.save_pending_transition
    once = threading.Lock()
    filled = threading.Event()

    def chain_jobs_in_flight(storage: PackageStorage, load_id: str, file_name: str) -> list[str]:
        files = [*storage.list_new_jobs(load_id), *storage.list_started_jobs(load_id)]
        return [
            name
            for name in map(os.path.basename, files)
            if name != file_name and ParsedLoadJobFileName.parse(name).table_name in SMS_CHAIN
        ]

    def fill_then_record(
        storage: PackageStorage,
        load_id: str,
        file_name: str,
        state: str,
        failed_message: str | None = None,
    ) -> None:
        job = ParsedLoadJobFileName.parse(file_name)
        is_sms_rows = job.table_name == "sms" and job.file_format != MERGE_JOB_FORMAT
        if state == "completed" and is_sms_rows and once.acquire(blocking=False):
            deadline = time.monotonic() + 60
            while chain_jobs_in_flight(storage, load_id, file_name):
                assert time.monotonic() < deadline, "the rest of the sms chain never loaded"
                time.sleep(0.05)
            fill_disk(folder)
            filled.set()
        record(storage, load_id, file_name, state, failed_message)

    with monkeypatch.context() as patch:
        patch.setattr(PackageStorage, "save_pending_transition", fill_then_record)
        yield filled


def test_full_disk_between_a_load_commit_and_its_record_leaves_no_duplicate_sms(
    emulator, target, monkeypatch
):
    running = emulator(sms=400, seed=104)
    # Only dlt's working folder is on the small disk: the destination commits every row.
    working_dir = target.warehouse.working_dir
    working_dir.parent.mkdir(parents=True, exist_ok=True)
    with small_disk(working_dir, "16m"):
        with (
            disk_full_once_sms_rows_commit(working_dir, monkeypatch) as filled,
            pytest.raises(DatabaseError, match="No space left on device"),
        ):
            sync(running, target)
        assert filled.is_set()
        assert _unfinished_jobs(target) == [("sms", "data")]

        (working_dir / "filler").unlink()
        sync(running, target)

        assert mismatches(target, running.emu.snapshot()) == []


def _unfinished_jobs(target: Target) -> list[tuple[str, str]]:
    """The sms chain's jobs in the one pending package not yet recorded as done: (table, data
    or merge), queued ones first. Other tables' jobs may be anywhere: they load in parallel."""
    pipeline = target.warehouse.pipeline()
    (load_id,) = pipeline.list_normalized_load_packages()
    jobs = pipeline.get_load_package_info(load_id).jobs
    return [
        (job.table_name, "merge" if job.file_format == MERGE_JOB_FORMAT else "data")
        for job in (info.job_file_info for info in jobs["new_jobs"] + jobs["started_jobs"])
        if job.table_name in SMS_CHAIN
    ]


@pytest.mark.parametrize("kill_at", ["queued", "committed"])
def test_killed_at_the_merge_the_next_run_merges_again_exactly(emulator, target, tmp_path, kill_at):
    running = emulator(sms=400, seed=105)
    args = ("sync", "--base-url", running.base_url, *target.cli_args)
    killed = run_killed_at_the_sms_merge(
        tmp_path, kill_at, *args, api_key=running.api_key, **target.env
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    unfinished = _unfinished_jobs(target)
    assert unfinished[0] == ("sms", "merge")
    # Killed once queued, dlt has not recorded the data job whose completion queued the merge.
    assert [kind for _, kind in unfinished[1:]] == (["data"] if kill_at == "queued" else [])

    resumed = run_cli(*args, api_key=running.api_key, **target.env)

    assert resumed.returncode == 0, resumed.stderr
    assert mismatches(target, running.emu.snapshot()) == []


def test_killed_once_the_state_row_committed_the_next_run_appends_it_once(
    emulator, target, tmp_path
):
    # dlt appends its state row without a merge: committed but not recorded, the next run
    # loaded it again, and PostgreSQL's unique _dlt_id refused that run and every one after.
    running = emulator(sms=200, seed=106)
    args = ("sync", "--base-url", running.base_url, *target.cli_args)
    killed = run_killed_at_the_sms_merge(
        tmp_path, "state committed", *args, api_key=running.api_key, **target.env
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    resumed = run_cli(*args, api_key=running.api_key, **target.env)

    assert resumed.returncode == 0, resumed.stderr
    assert mismatches(target, running.emu.snapshot()) == []
    duplicates = "SELECT count(*) - count(DISTINCT _dlt_id) FROM close_sms._dlt_pipeline_state"
    assert count(target, duplicates) == 0
    assert run_cli(*args, api_key=running.api_key, **target.env).returncode == 0


# `close-sms ARGS`, killed once normalize put the second chunk's package in place, before it
# deleted the extracted package it came from: a stop there leaves both. (A stop in the first
# chunk leaves no state in the destination, so the next run starts over.)
KILLED_BETWEEN_NORMALIZE_COMMIT_AND_DELETE = """
import os, runpy, signal, sys
from dlt.common.storages.load_package import PackageStorage

delete = PackageStorage.delete_package
committed = []

def kill_before_deleting_a_normalized_extract(storage, load_id, not_exists_ok=False):
    package = storage.storage.make_full_path(storage.get_package_path(load_id))
    working_dir = os.path.dirname(os.path.dirname(os.path.dirname(package)))
    if os.path.isdir(os.path.join(working_dir, "load", "normalized", load_id)):
        committed.append(load_id)
        if len(committed) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    delete(storage, load_id, not_exists_ok)

PackageStorage.delete_package = kill_before_deleting_a_normalized_extract
sys.argv[0] = "close-sms"
runpy.run_module("close_sms.app.cli", run_name="__main__")
"""


def test_killed_between_normalize_placing_a_package_and_deleting_its_extract_the_next_run_is_exact(
    emulator, tmp_path
):
    running = emulator(sms=1000, seed=106)
    database = tmp_path / "w.duckdb"
    args = ("sync", "--base-url", running.base_url, "--database", str(database))
    script = tmp_path / "killed_in_normalize.py"
    script.write_text(KILLED_BETWEEN_NORMALIZE_COMMIT_AND_DELETE)
    killed = subprocess.run(
        [sys.executable, str(script), *args],
        env=cli_env(running.api_key, **CHUNKS),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    pipeline = Target.duckdb(database).warehouse.pipeline()
    (load_id,) = pipeline.list_normalized_load_packages()
    assert pipeline.list_extracted_load_packages() == [load_id]

    resumed = run_cli(*args, api_key=running.api_key, **CHUNKS)

    assert resumed.returncode == 0, resumed.stderr
    assert "Finishing the load that an interrupted run left pending" in resumed.stderr
    assert mismatches(database, running.emu.snapshot()) == []
