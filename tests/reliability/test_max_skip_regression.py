"""Regression found by the randomized run (seed 20260501): a second holding more SMS than
the configured max_skip lost the SMS past the limit, silently. Close accepts `_skip` up to
max_skip itself, so a second can hold max_skip + one page before the millisecond path."""

from __future__ import annotations

from tests.reliability.helpers import sync_cli
from tests.sync.support import mismatches


def test_one_second_with_more_sms_than_the_configured_max_skip_is_read_completely(
    emulator, tmp_path
):
    # Generated account seed 4 (856 SMS) holds a same-millisecond burst of more than 300 SMS.
    running = emulator(sms=856, seed=4, max_skip=300)
    database = tmp_path / "w.duckdb"

    result = sync_cli(running, database, SOURCES__CLOSE_SMS__MAX_SKIP="300")

    assert result.returncode == 0, result.stderr
    assert mismatches(database, running.emu.snapshot()) == []
