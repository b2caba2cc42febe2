"""The source on its own: a bare `dlt.pipeline(...).run(close_sms_source())`, no runner, no CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources import DltSource

from close_sms import backfill_in_progress, close_sms_source
from close_sms.errors import ConfigError, SyncError, UnreachableError
from close_sms.source import RunMode, SyncProgress
from close_sms.source.state import SourceState
from tests.support import (
    Target,
    backfill_pages,
    change_account,
    cli_env,
    config_error_in,
    count,
    mismatches,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plain_pipeline.py"


@pytest.fixture
def close_settings(monkeypatch):
    """Points the source at an emulator through dlt's own environment variables."""

    def point_at(running) -> None:
        monkeypatch.setenv("SOURCES__CLOSE_SMS__API_KEY", running.api_key)
        monkeypatch.setenv("SOURCES__CLOSE_SMS__BASE_URL", running.base_url)

    return point_at


def bare_pipeline(target: Target, workdir: Path) -> dlt.Pipeline:
    destination = (
        dlt.destinations.duckdb(str(target.warehouse.database))
        if target.name == "duckdb"
        else target.name
    )
    return dlt.pipeline(
        pipeline_name="plain",
        pipelines_dir=str(workdir / "pipelines"),
        destination=destination,
        dataset_name="close_sms",
    )


@pytest.mark.parametrize("item_mode", ["round_robin", "fifo"])
def test_bare_pipeline_backfills_then_reads_the_feed(
    emulator, target, tmp_path, close_settings, monkeypatch, item_mode
):
    # In `fifo` mode dlt runs the backfill to its end before the feed's resource starts.
    monkeypatch.setenv("EXTRACT__NEXT_ITEM_MODE", item_mode)
    running = emulator(sms=900, seed=41)
    close_settings(running)
    pipeline = bare_pipeline(target, tmp_path)

    pipeline.run(close_sms_source()).raise_on_failed_jobs()

    assert not backfill_in_progress(pipeline)
    assert mismatches(target, running.emu.snapshot()) == []
    # A feed read into the backfill's package could lose a delete to the row read before it.
    assert not [r.path for r in running.emu.request_log if r.path.endswith("/event/")]

    change_account(running.emu)
    pipeline.run(close_sms_source()).raise_on_failed_jobs()

    assert mismatches(target, running.emu.snapshot()) == []
    assert count(target, "SELECT count(*) FROM close_sms.sms_events") > 0


def test_chunked_loop_until_the_backfill_is_done(emulator, target, tmp_path, close_settings):
    # A run stops once it holds 300 SMS, so at most 399: ~1,470 SMS take 4 runs or more.
    running = emulator(sms=1500, seed=42)
    close_settings(running)
    pipeline = bare_pipeline(target, tmp_path)

    runs = 1
    pipeline.run(close_sms_source(max_sms=300))
    while backfill_in_progress(pipeline):
        partial = count(target, "SELECT count(*) FROM close_sms.sms")
        assert 0 < partial < len(running.emu.snapshot())
        pipeline.run(close_sms_source(max_sms=300))
        runs += 1

    assert runs >= 4
    assert mismatches(target, running.emu.snapshot()) == []


def test_reconcile_argument_removes_what_close_no_longer_returns(
    emulator, target, tmp_path, close_settings
):
    running = emulator(sms=500, seed=43)
    close_settings(running)
    pipeline = bare_pipeline(target, tmp_path)
    pipeline.run(close_sms_source())
    # A row Close does not return, and no event says so (deleted beyond the log's 30 days).
    created = next(iter(running.emu.snapshot().values()))["date_created"]
    target.execute(
        "INSERT INTO close_sms.sms (id, date_created, _dlt_load_id, _dlt_id) "
        f"VALUES ('acti_gone', '{created}', '1', 'gone')"
    )
    assert "extra acti_gone" in mismatches(target, running.emu.snapshot())

    pipeline.run(close_sms_source(reconcile=True))

    assert not backfill_in_progress(pipeline)
    assert mismatches(target, running.emu.snapshot()) == []


def test_lost_working_folder_is_restored_from_the_destination(
    emulator, target, tmp_path, close_settings
):
    import shutil

    running = emulator(sms=300, seed=44)
    close_settings(running)
    bare_pipeline(target, tmp_path).run(close_sms_source())
    shutil.rmtree(tmp_path / "pipelines")
    change_account(running.emu)
    requests_before = len(running.emu.request_log)

    pipeline = bare_pipeline(target, tmp_path)
    pipeline.run(close_sms_source())

    assert (
        backfill_pages(running, requests_before) == []
    )  # the state came back: no new backfill, only the change feed
    assert mismatches(target, running.emu.snapshot()) == []


def test_the_example_script_runs_as_documented(emulator, target, tmp_path):
    running = emulator(sms=400, seed=45)
    env = cli_env(running.api_key, SOURCES__CLOSE_SMS__BASE_URL=running.base_url, **target.env)
    # dlt's own folder (pipelines, global config): the user's, here one per test.
    env["HOME"] = env["DLT_DATA_DIR"] = str(tmp_path)
    arguments = [] if target.name == "duckdb" else [target.name]
    database = tmp_path / "close_sms_example.duckdb"
    where = Target.duckdb(database) if target.name == "duckdb" else target

    def run_example() -> None:
        result = subprocess.run(
            [sys.executable, str(EXAMPLE), *arguments],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    run_example()
    assert mismatches(where, running.emu.snapshot()) == []
    change_account(running.emu)
    run_example()
    assert mismatches(where, running.emu.snapshot()) == []


def test_events_without_the_sms_they_name_are_refused(emulator, target, tmp_path, close_settings):
    running = emulator(sms=100, seed=49)
    close_settings(running)
    pipeline = bare_pipeline(target, tmp_path)
    pipeline.run(close_sms_source())
    checked = SourceState.of(pipeline).feed_checked_at
    running.emu.clear_request_log()

    with pytest.raises(PipelineStepFailed, match="sms_events is selected without sms_changes"):
        pipeline.run(close_sms_source().with_resources("sms_events"))

    assert running.emu.request_log == []
    assert SourceState.of(pipeline).feed_checked_at == checked


def test_a_renamed_sms_table_is_the_one_read_back(emulator, tmp_path, close_settings):
    """`apply_hints(table_name=...)` on the SMS resources: the recent re-read, the reconcile and
    the mass-delete guard read the renamed table, not `sms`."""
    now = datetime.now(timezone.utc)
    running = emulator(sms=300, seed=45, start=now - timedelta(hours=12), end=now)
    close_settings(running)
    pipeline = dlt.pipeline(
        pipeline_name="renamed",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.duckdb(str(tmp_path / "renamed.duckdb")),
        dataset_name="close_sms",
    )
    target = Target.duckdb(tmp_path / "renamed.duckdb")

    def renamed(**args: Any) -> DltSource:
        source = close_sms_source(**args)
        for name in ("sms_backfill", "sms_changes"):
            source.resources[name].apply_hints(table_name="texts")
        return source

    pipeline.run(renamed()).raise_on_failed_jobs()
    assert count(target, "SELECT count(*) FROM close_sms.texts") == 300

    progress = SyncProgress()
    pipeline.run(renamed(progress=progress)).raise_on_failed_jobs()
    assert progress.mode is RunMode.INCREMENTAL
    # Read against the stored copies, every recent SMS is unchanged.
    assert progress.recent_changed == 0

    # More rows Close does not return than the guard's minimum: only a guard that counts the
    # table's 450 rows lets the reconcile remove them (max_delete_share = 0.9).
    created = next(iter(running.emu.snapshot().values()))["date_created"]
    target.execute(
        "INSERT INTO close_sms.texts (id, date_created, _dlt_load_id, _dlt_id) "
        f"SELECT 'acti_gone_' || i, TIMESTAMPTZ '{created}', '1', 'gone_' || i FROM range(150) t(i)"
    )
    progress = SyncProgress()
    pipeline.run(renamed(reconcile=True, max_delete_share=0.9, progress=progress))

    assert progress.removed == 150
    assert count(target, "SELECT count(*) FROM close_sms.texts WHERE id LIKE 'acti_gone%'") == 0


def _names_the_command(message: str) -> bool:
    """Whether `message` names what only the `close-sms` command has: its name, its flags, or
    its CLOSE_API_KEY."""
    return re.search(r"close-sms|--[a-z]|\bCLOSE_API_KEY\b", message) is not None


@pytest.mark.parametrize(
    ("arguments", "setting"),
    [
        ({"api_key": ""}, "api_key"),
        ({"api_key": "some_key", "base_url": "not a url"}, "base_url"),
        ({"api_key": "some_key", "start_date": "yesterday-ish"}, "start_date"),
    ],
)
def test_a_bad_argument_names_its_setting_not_a_flag(arguments, setting):
    with pytest.raises(ConfigError) as raised:
        close_sms_source(**arguments)

    message = str(raised.value)
    assert (
        f"SOURCES__CLOSE_SMS__{setting.upper()} or {setting} under [sources.close_sms]" in message
    )
    assert not _names_the_command(message), message


def test_a_base_url_without_closes_api_names_the_setting_in_a_bare_run(emulator, tmp_path):
    running = emulator(sms=10, seed=47)
    pipeline = bare_pipeline(Target.duckdb(tmp_path / "w.duckdb"), tmp_path)
    source = close_sms_source(
        api_key=running.api_key, base_url=running.base_url.replace("/api/v1", "/api/v2")
    )

    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(source)

    message = str(config_error_in(failed.value))
    assert "/me/ is not found there" in message
    assert "SOURCES__CLOSE_SMS__BASE_URL" in message
    assert not _names_the_command(message), message


def _failures(kind: type[SyncError]) -> list[type[SyncError]]:
    return [kind, *(each for sub in kind.__subclasses__() for each in _failures(sub))]


def test_the_failures_hints_name_settings_not_flags():
    assert [f.__name__ for f in _failures(SyncError) if _names_the_command(f.hint)] == []
    assert "SOURCES__CLOSE_SMS__BASE_URL" in UnreachableError.hint
