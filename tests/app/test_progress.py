"""Backfill progress: the estimate of what is left, log lines, `--quiet`, the terminal bar."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
from datetime import datetime, timezone

from close_sms.app.progress import BackfillEstimate, LogProgress
from close_sms.app.runner import stderr_printer
from close_sms.source import SyncProgress, measure_pending, settings
from close_sms.source.sms.backfill import Window
from tests import cli_process
from tests.reliability.helpers import sync_cli
from tests.support import cli_command, cli_env, mismatches

DAY_MS = 86_400_000
PAGE = 100
# "  backfill: 37% (12,300 of ~33,000 SMS), about 00:01:05 left; 8 windows pending, ..."
PROGRESS_LINE = re.compile(
    r"^  backfill: (\d+)% \(([\d,]+) of ~([\d,]+) SMS\), about (\d\d:\d\d:\d\d) left; "
    r"\d+ windows pending, \d+ rate-limit waits \([\d.]+ s summed over the workers\)$"
)


def _ms(year: int) -> int:
    return int(datetime(year, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)


def _simulated_backfill(windows: list[Window], lower: int, upper: int, density: float):
    """Read `windows` like BackfillReader: newest first, in turns, pages of 100 SMS.

    SMS exist only in [lower, upper), `density` per ms. Yields (SMS read, windows left) after
    each page that held SMS; an empty window is done in one request and yields nothing.
    """
    read = 0
    while windows:
        window = windows.pop(0)
        top = min(window.upper, upper)
        inside = max(0.0, (top - max(window.lower, lower)) * density)
        if inside <= PAGE:
            read += round(inside)
            if inside:
                yield read, windows
            continue
        read += PAGE
        # The rest of the window goes back at the end of the queue: workers take turns.
        windows.append(Window(window.lower, int(top - PAGE / density)))
        yield read, windows


def test_estimate_follows_the_sms_not_the_empty_decades():
    # A backfill's plan: from 1970 to now, and an open-ended pass after now. The account's
    # 60,000 SMS are all in the six years before now.
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    lower, upper = _ms(2020), _ms(2026)
    total = 60_000
    density = total / (upper - lower)
    span = _ms(2026) - _ms(1970)
    windows = [Window(upper, settings.OPEN_END_MS)] + [
        Window(_ms(1970) + i * span // 8, _ms(1970) + (i + 1) * span // 8) for i in range(8)
    ]
    estimate = BackfillEstimate(clock=lambda: 0.0)
    progress = SyncProgress()
    checked = False
    for read, left in _simulated_backfill(windows, lower, upper, density):
        measure_pending(progress, left, now)
        estimate.observe(read, progress.backfill_pending_ms)
        if not checked and read >= total // 2:
            # Half the SMS are read, while a sliver of the range is left: the share of the
            # range read (what a naive estimate reports) is over 90%.
            assert 1 - progress.backfill_pending_ms / span > 0.9
            assert 0.4 <= estimate.fraction_done() <= 0.6
            assert 0.8 * total <= read + estimate.sms_left() <= 1.25 * total
            checked = True
    assert checked
    assert estimate.sms_left() == 0 and estimate.fraction_done() == 1.0


def test_estimate_time_left_comes_from_the_rate_so_far():
    now = [100.0]
    estimate = BackfillEstimate(clock=lambda: now[0])
    # 1,000 SMS per day of range, read at 100 SMS per second.
    estimate.observe(0, 10 * DAY_MS)
    assert estimate.sms_left() is None and estimate.seconds_left() is None
    for page in range(1, 11):
        now[0] += 1
        estimate.observe(page * PAGE, 10 * DAY_MS - page * DAY_MS // 10)
    assert estimate.sms_left() == 9_000
    assert estimate.fraction_done() == 0.1
    assert estimate.seconds_left() == 90.0


def test_estimate_keeps_the_sms_of_one_crowded_second_for_the_next_range_it_reads():
    estimate = BackfillEstimate(clock=lambda: 0.0)
    estimate.observe(0, 1000)
    estimate.observe(100, 1000)  # 250 SMS share one second: pages take no range off
    estimate.observe(200, 1000)
    assert estimate.sms_left() is None
    estimate.observe(250, 500)  # the second is done: 250 SMS took 500 ms off
    assert estimate.sms_left() == 250


def test_log_lines_come_every_interval_not_every_page():
    now = [0.0]
    out = io.StringIO()
    lines = LogProgress(out, interval=5, clock=lambda: now[0])
    progress = SyncProgress(windows_left=3)
    for page in range(1, 13):  # one page a second, from 1 s to 12 s
        now[0] += 1
        progress.backfill_loaded = page * PAGE
        measure_pending(progress, [Window(0, (100 - page) * 1000)], datetime.now(timezone.utc))
        lines.on_page(progress)
    printed = out.getvalue().splitlines()
    # The first page starts the clock; lines at 6 s and 11 s.
    assert len(printed) == 2
    assert all(PROGRESS_LINE.match(line) for line in printed), printed
    assert printed[0].startswith("  backfill: 6% (600 of ~10,000 SMS), about 00:01:34 left;")


def test_backfill_in_a_log_prints_percent_counts_and_time_left(emulator, tmp_path):
    running = emulator(sms=4000, seed=81, latency_ms=15)
    database = tmp_path / "w.duckdb"
    # A range from 1970: decades without SMS before the account (the unit tests above check
    # the estimate itself).
    result = sync_cli(
        running,
        database,
        "--start-date",
        "1970-01-01",
        # Shorter than the backfill's 40 pages take to extract even when all are read ahead.
        SOURCES__CLOSE_SMS__PROGRESS_INTERVAL="0.05",
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("  backfill:")]
    assert lines, result.stderr
    for line in lines:
        match = PROGRESS_LINE.match(line)
        assert match, line
        percent, read, total = (int(group.replace(",", "")) for group in match.groups()[:3])
        assert 0 <= percent <= 100 and read <= total
    assert mismatches(database, running.emu.snapshot()) == []


def test_backfill_on_a_terminal_draws_a_bar(emulator, tmp_path):
    running = emulator(sms=3000, seed=83, latency_ms=10)
    primary, secondary = pty.openpty()
    process = cli_process.popen(
        cli_command(
            "sync", "--base-url", running.base_url, "--database", str(tmp_path / "w.duckdb")
        ),
        env=cli_env(running.api_key, TERM="xterm", COLUMNS="120"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    screen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 60)
        try:
            chunk = os.read(primary, 65536) if ready else b""
        except OSError:  # the terminal closes with the process
            chunk = b""
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    assert process.wait(timeout=60) == 0, screen.decode(errors="replace")
    text = screen.decode(errors="replace")
    assert "backfill" in text and "━" in text and "%" in text, text
    assert "Sync done" in text


def test_a_progress_line_and_its_end_are_one_write(monkeypatch):
    # A SIGTERM raised between print's write of the text and its write of the newline glued
    # the run's last line, "close-sms: interrupted by SIGTERM", to the line before.
    writes: list[str] = []

    class Stream:
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stderr", Stream())
    stderr_printer(quiet=False)("Backfill (first run): SMS created from 2024-01-01 on")

    assert writes == ["Backfill (first run): SMS created from 2024-01-01 on\n"]
