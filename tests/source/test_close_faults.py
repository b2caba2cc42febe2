"""Faults of Close's that must not stop the sync: an SMS Close deleted but still lists (every
page holding it answers 404 "Empty query"), and one SMS the key may not read (403).

Each runs the real sync against the emulator over HTTP, into a DuckDB file.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tests.reliability.helpers import sync_cli
from tests.support import count, mismatches, sync, warehouse_rows


def _template(emu: Any) -> dict[str, Any]:
    some = next(iter(emu.snapshot().values()))
    return {key: some[key] for key in ("lead_id", "contact_id", "remote_phone", "local_phone")}


def _create_recent(emu: Any, how_many: int, status: str = "sent") -> list[str]:
    """New SMS, created now: the recent re-read lists them first. Only drafts can be edited."""
    base = _template(emu)
    return [
        emu.create_sms({**base, "status": status, "text": f"recent {n}"})["id"]
        for n in range(how_many)
    ]


def test_a_backfill_steps_past_an_sms_close_deleted_but_still_lists(emulator, tmp_path: Path):
    running = emulator(sms=900, seed=31)
    emu = running.emu
    # Months old: the backfill meets it, the recent re-read never does.
    ghost = list(emu.snapshot())[450]
    emu.delete_sms(ghost, keep_in_index=True)
    database = tmp_path / "warehouse.duckdb"

    first = sync(running, database)
    second = sync(running, database)

    assert first.mode == "backfill" and second.mode == "incremental"
    assert first.skipped_positions == 1 and second.skipped_positions == 0
    assert first.backfill_sms == len(emu.snapshot())
    assert ghost not in emu.snapshot()
    assert mismatches(database, emu.snapshot()) == []


def test_a_reconcile_removes_a_still_listed_deleted_sms_on_its_own_404_only(
    emulator, tmp_path: Path
):
    running = emulator(sms=700, seed=32)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    newest = list(emu.snapshot())
    ghost, hidden = newest[300], newest[400]
    emu.delete_sms(ghost, keep_in_index=True)
    # Lists leave it out, as they would an SMS deleted without an event: yet it exists.
    emu.forbid_sms(hidden)
    emu.clock.advance(31 * 86400)  # past the event log's horizon: only a reconcile sees the delete

    report = sync(running, database)

    assert report.mode == "reconcile"
    assert report.skipped_positions == 1
    # The ghost's own GET answers 404: proof. The hidden one answers 403: kept, counted.
    assert report.removed == 1
    assert report.unreadable == 1
    rows = warehouse_rows(database)
    assert ghost not in rows and hidden in rows
    assert mismatches(database, emu.snapshot()) == []


def test_the_recent_re_read_steps_past_a_still_listed_deleted_sms(emulator, tmp_path: Path):
    running = emulator(sms=300, seed=33)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    fresh = _create_recent(emu, 30)
    sync(running, database)
    emu.delete_sms(fresh[10], keep_in_index=True)

    report = sync(running, database)

    assert report.mode == "incremental"
    assert report.skipped_positions == 1
    assert report.deleted == 1
    assert mismatches(database, emu.snapshot()) == []


def test_a_feed_batch_naming_a_still_listed_deleted_sms_is_split_until_it_is_alone(
    emulator, tmp_path: Path
):
    running = emulator(sms=500, seed=34)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    # The feed alone: the recent re-read would read the edited SMS too.
    feed_only = functools.partial(sync, recent_window_hours=0)
    edited = _create_recent(emu, 10, status="draft")
    feed_only(running, database)
    for sms_id in edited:
        emu.update_sms(sms_id, {"text": "edited"})
    ghost = edited[5]
    emu.delete_sms(ghost, keep_in_index=True)
    since = len(emu.request_log)

    report = feed_only(running, database)

    assert report.mode == "incremental"
    assert report.upserted == len(edited) - 1
    assert report.deleted == 1
    assert ghost not in warehouse_rows(database)
    assert mismatches(database, emu.snapshot()) == []
    # The batch was halved around the ghost: the id__in query naming it alone answered 404.
    alone = [
        r for r in emu.request_log[since:] if r.params.get("id__in") == ghost and r.status == 404
    ]
    assert alone


def test_a_403_on_one_sms_and_a_stepped_past_position_are_counted_and_the_run_goes_on(
    emulator, tmp_path: Path
):
    running = emulator(sms=300, seed=35)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    fast = {"SOURCES__CLOSE_SMS__BACKOFF_MAX": "0.05"}
    hidden = _create_recent(emu, 1, status="draft")[0]
    assert sync_cli(running, database, **fast).returncode == 0
    old_text = warehouse_rows(database)[hidden]["text"]
    emu.update_sms(hidden, {"text": "edited, then hidden"})
    emu.forbid_sms(hidden)
    fresh = _create_recent(emu, 5)
    emu.delete_sms(fresh[2], keep_in_index=True)

    result = sync_cli(running, database, **fast)

    assert result.returncode == 0, result.stderr
    assert "1 unlistable positions stepped past" in result.stderr
    assert "1 SMS unreadable (HTTP 403)" in result.stderr
    # Neither removed nor updated: the key may not read it.
    assert warehouse_rows(database)[hidden]["text"] == old_text
    last_run = (
        "SELECT {} FROM close_sms.sync_runs WHERE outcome = 'success' "
        "ORDER BY started_at DESC LIMIT 1"
    )
    assert count(database, last_run.format("skipped_positions")) == 1
    assert count(database, last_run.format("sms_unreadable")) == 1


def test_a_403_on_one_sms_of_the_feed_is_no_rejected_key(emulator, tmp_path: Path):
    running = emulator(sms=200, seed=36)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    drafts = _create_recent(emu, 3, status="draft")
    sync(running, database)
    for sms_id in drafts:
        emu.update_sms(sms_id, {"text": "edited"})
    emu.forbid_sms(drafts[1])

    report = sync(running, database)

    assert report.unreadable == 1
    assert report.upserted == 2 and report.deleted == 0
    rows = warehouse_rows(database)
    assert rows[drafts[1]]["text"] == "recent 1"
    assert [rows[drafts[0]]["text"], rows[drafts[2]]["text"]] == ["edited", "edited"]


def test_a_403_is_a_rejected_key_on_lists_and_one_object_s_problem_on_items(emulator):
    # Lists whose names hold an underscore (`/phone_number/`, `/sms_template/`) once looked
    # like an object's request: a 403 there was taken for one object's, not for the key's.
    import pytest

    from close_sms.errors import AuthError
    from close_sms.source.api.client import ClientConfig, CloseClient, RequestRejected

    running = emulator(sms=10)
    client = CloseClient(running.base_url, running.api_key, ClientConfig(backoff_max=0.05))
    number = client.get("/phone_number/")["data"][0]["id"]
    for path in ("/phone_number/", "/sms_template/"):
        running.emu.faults.add("403", 1, path)
        with pytest.raises(AuthError):
            client.get(path)
    running.emu.faults.add("403", 1, "/phone_number/")
    with pytest.raises(RequestRejected) as rejected:
        client.get_item("/phone_number/", number)
    assert rejected.value.status == 403
