"""A sync applies the views again only when what they are made of changed (`refresh_views`)."""

from __future__ import annotations

import shutil

from close_sms.warehouse import views
from tests.support import as_target, count, sync
from tests.warehouse.views.dataset import column_names


def _edit(running, sms_id: str, **fields) -> None:
    running.emu.override_raw(sms_id, fields, emit_update=True)


def test_views_are_applied_again_only_when_a_column_or_a_view_changed(emulator, target):
    running = emulator(sms=100, seed=31)
    some = sorted(running.emu.snapshot())[0]
    assert "sms_messages" in sync(running, target).views

    _edit(running, some, text="edited")
    rows_only = sync(running, target)

    assert rows_only.wrote is True
    assert rows_only.views == []
    assert count(target, "SELECT count(*) FROM close_sms.sms_messages WHERE text = 'edited'") == 1

    # A field Close added is a new column; PostgreSQL binds `s.*` when a view is made, so
    # sms_messages shows it only once applied again.
    _edit(running, some, agent_new_field="added")
    new_column = sync(running, target)

    assert "sms_messages" in new_column.views
    query = "SELECT count(*) FROM close_sms.sms_messages WHERE agent_new_field = 'added'"
    assert count(target, query) == 1

    # Another version's view (its columns differ) is replaced by the next run that writes.
    target.execute("DROP VIEW close_sms.sms_daily")
    target.execute("CREATE VIEW close_sms.sms_daily AS SELECT 1 AS other")
    _edit(running, some, text="edited again")
    replaced = sync(running, target)

    assert "sms_daily" in replaced.views
    with target.warehouse.sql_client() as sql:
        assert "other" not in column_names(sql, "sms_daily")


def test_changed_view_files_are_applied_by_the_next_run_that_writes(
    emulator, tmp_path, monkeypatch
):
    running = emulator(sms=60, seed=32)
    database = tmp_path / "w.duckdb"
    some = sorted(running.emu.snapshot())[0]
    sync(running, database)
    changed = tmp_path / "sql"
    shutil.copytree(views.sql_dir(), changed)
    daily = next(changed.glob("*sms_daily.sql"))
    daily.write_text(daily.read_text() + "\n-- a new version of the view\n")
    monkeypatch.setattr(views, "sql_dir", lambda package_dir=None: changed)

    _edit(running, some, text="edited")

    assert "sms_daily" in sync(running, database).views


def test_a_stamp_that_cannot_be_written_fails_no_run_and_the_views_are_applied_each_time(
    emulator, tmp_path
):
    running = emulator(sms=60, seed=33)
    database = tmp_path / "w.duckdb"
    some = sorted(running.emu.snapshot())[0]
    sync(running, database)
    stamp = as_target(database).warehouse.views_stamp
    assert stamp.is_file()
    stamp.unlink()
    stamp.mkdir()

    for text in ("one", "two"):
        _edit(running, some, text=text)
        report = sync(running, database)
        assert report.wrote is True
        assert "sms_messages" in report.views

    assert stamp.is_dir()
    assert not stamp.with_name("views.sha256.partial").exists()
    assert count(database, "SELECT count(*) FROM close_sms.sms_messages WHERE text = 'two'") == 1
