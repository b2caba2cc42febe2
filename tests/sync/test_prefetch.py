"""The backfill reads ahead of dlt: across chunks every page is read once, and state stays exact."""

from __future__ import annotations

import threading
import time
from collections import Counter

from close_sms import backfill_in_progress, close_sms_source
from close_sms.source.state import SourceState
from tests.sync.support import Target, backfill_pages, mismatches
from tests.sync.test_plain_source import bare_pipeline

CHUNK = 300


def _page_keys(pages) -> Counter:
    return Counter(tuple(sorted(r.params.items())) for r in pages if r.status == 200)


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "close-sms-prefetch"]


def _settled_page_count(running, quiet: float = 1.0) -> int:
    """The number of backfill pages read so far, once no new one came for `quiet` seconds."""
    count, since = -1, time.monotonic()
    while time.monotonic() - since < quiet:
        now = len(backfill_pages(running, 0))
        if now != count:
            count, since = now, time.monotonic()
        time.sleep(0.05)
    return count


def _wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_chunks_read_ahead_and_read_every_page_once(emulator, tmp_path, monkeypatch):
    running = emulator(sms=1500, seed=51)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__API_KEY", running.api_key)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__BASE_URL", running.base_url)
    target = Target.duckdb(tmp_path / "w.duckdb")
    pipeline = bare_pipeline(target, tmp_path)

    pipeline.run(close_sms_source(max_sms=CHUNK))
    assert SourceState.of(pipeline).backfill.loaded < 2 * CHUNK
    # The reader goes on past the chunk while dlt loads it (the account fits its buffer).
    read_ahead = _settled_page_count(running)

    runs = 1
    while backfill_in_progress(pipeline):
        pipeline.run(close_sms_source(max_sms=CHUNK))
        runs += 1

    assert runs >= 5
    # Each chunk adopted the reader the previous one left: no page was fetched twice.
    repeated = {key: n for key, n in _page_keys(backfill_pages(running, 0)).items() if n > 1}
    assert repeated == {}
    assert read_ahead == len(backfill_pages(running, 0))
    assert mismatches(target, running.emu.snapshot()) == []
    assert _wait_for(lambda: not _prefetch_threads())


def test_a_reader_not_adopted_is_closed_and_its_pages_read_again(emulator, tmp_path, monkeypatch):
    running = emulator(sms=1500, seed=52)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__API_KEY", running.api_key)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__BASE_URL", running.base_url)
    target = Target.duckdb(tmp_path / "w.duckdb")
    pipeline = bare_pipeline(target, tmp_path)
    pipeline.run(close_sms_source(max_sms=CHUNK))
    _settled_page_count(running)
    read_ahead = _page_keys(backfill_pages(running, 0))

    # Another max_skip: the parked reader's pages are not this run's, so it is closed and the
    # state's windows are read again from where dlt was handed pages, as after a kill.
    second = len(running.emu.request_log)
    pipeline.run(close_sms_source(max_skip=200_000))

    assert not backfill_in_progress(pipeline)
    assert _page_keys(backfill_pages(running, second)) & read_ahead
    assert mismatches(target, running.emu.snapshot()) == []
    assert _wait_for(lambda: not _prefetch_threads())
