"""Regression found by the randomized run (seed 20260501): a second holding more SMS than
the configured max_skip lost the SMS past the limit, silently. Close accepts `_skip` up to
max_skip itself, so a second can hold max_skip + one page before the millisecond path."""

from __future__ import annotations

from tests.reliability.helpers import sync_cli
from tests.support import mismatches


def test_one_second_with_more_sms_than_the_configured_max_skip_is_read_completely(
    emulator, tmp_path
):
    # Generated account seed 4 (856 SMS) holds a same-millisecond burst of more than 300 SMS.
    running = emulator(sms=856, seed=4, max_skip=300)
    database = tmp_path / "w.duckdb"

    result = sync_cli(running, database, SOURCES__CLOSE_SMS__MAX_SKIP="300")

    assert result.returncode == 0, result.stderr
    assert mismatches(database, running.emu.snapshot()) == []


def test_a_second_past_close_s_max_skip_is_read_with_a_page_at_max_skip_itself(emulator, tmp_path):
    # Found by the randomized run (seed 20261206, account 5): generated account seed 8432 holds
    # 369 SMS in one second. The next offset after 253 (328) is past Close's 300 and Close
    # filters by the second, so the millisecond path cannot help; a page at 300 reads the rest.
    running = emulator(sms=1125, seed=8432, max_skip=300)
    database = tmp_path / "w.duckdb"

    result = sync_cli(running, database, SOURCES__CLOSE_SMS__BACKFILL_WORKERS="1")

    assert result.returncode == 0, result.stderr
    assert mismatches(database, running.emu.snapshot()) == []
    offsets = {
        int(r.params["_skip"])
        for r in running.emu.request_log
        if r.path.endswith("/activity/sms/") and r.status == 200
    }
    assert 300 in offsets
