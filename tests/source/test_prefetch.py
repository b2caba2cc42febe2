"""The backfill reads ahead of dlt: across chunks every page is read once, and state stays exact."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from close_sms import backfill_in_progress, close_sms_source
from close_sms.errors import CloseApiError
from close_sms.source import settings
from close_sms.source.api.client import ClientConfig, CloseClient
from close_sms.source.sms.backfill import BackfillReader, Window
from close_sms.source.sms.prefetch import Prefetcher
from close_sms.source.state import SourceState
from close_sms.source.timestamps import parse_timestamp, to_ms
from tests.source.test_plain_source import bare_pipeline
from tests.support import Target, backfill_pages, mismatches

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


def _first_chunk(emulator, tmp_path, monkeypatch, seed: int):
    """A bare pipeline that has loaded one chunk of a 1,500-SMS account, its reader settled."""
    running = emulator(sms=1500, seed=seed)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__API_KEY", running.api_key)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__BASE_URL", running.base_url)
    target = Target.duckdb(tmp_path / "w.duckdb")
    pipeline = bare_pipeline(target, tmp_path)
    pipeline.run(close_sms_source(max_sms=CHUNK))
    assert SourceState.of(pipeline).backfill.loaded < 2 * CHUNK
    return running, target, pipeline, _settled_page_count(running)


def test_chunks_read_ahead_and_read_every_page_once(emulator, tmp_path, monkeypatch):
    # The reader goes on past the chunk while dlt loads it (the account fits its buffer).
    running, target, pipeline, read_ahead = _first_chunk(emulator, tmp_path, monkeypatch, 51)

    runs = 1
    while backfill_in_progress(pipeline):
        pipeline.run(close_sms_source(max_sms=CHUNK))
        runs += 1

    # A chunk stops once it holds 300 SMS, so at most 399: ~1,470 SMS take 4 or more.
    assert runs >= 4
    # Each chunk adopted the reader the previous one left: no page was fetched twice.
    repeated = {key: n for key, n in _page_keys(backfill_pages(running, 0)).items() if n > 1}
    assert repeated == {}
    assert read_ahead == len(backfill_pages(running, 0))
    assert mismatches(target, running.emu.snapshot()) == []
    assert _wait_for(lambda: not _prefetch_threads())


def test_a_reader_not_adopted_is_closed_and_its_pages_read_again(emulator, tmp_path, monkeypatch):
    running, target, pipeline, _ = _first_chunk(emulator, tmp_path, monkeypatch, 52)
    read_ahead = _page_keys(backfill_pages(running, 0))

    # Another max_skip: the parked reader's pages are not this run's, so it is closed and the
    # state's windows are read again from where dlt was handed pages, as after a kill.
    second = len(running.emu.request_log)
    pipeline.run(close_sms_source(max_skip=200_000))

    assert not backfill_in_progress(pipeline)
    assert _page_keys(backfill_pages(running, second)) & read_ahead
    assert mismatches(target, running.emu.snapshot()) == []
    assert _wait_for(lambda: not _prefetch_threads())


def test_the_reader_ends_with_nothing_left_when_its_last_pages_are_empty(emulator):
    running = emulator(sms=250, seed=53)
    newest = max(to_ms(parse_timestamp(s["date_created"])) for s in running.emu.snapshot().values())
    # One worker reads the windows in order: the SMS first, then a window with none, whose
    # empty page hands nothing out but still ends the window.
    windows = [Window(0, newest + 1000), Window(-2000, -1000)]
    reader = BackfillReader(CloseClient(running.base_url, running.api_key), windows, workers=1)
    prefetcher = Prefetcher(reader, buffer_pages=2)

    pages = list(prefetcher.pages())

    assert sum(len(page.items) for page in pages) == len(running.emu.snapshot())
    assert pages[-1].pending == (windows[1],)
    assert prefetcher.finished
    assert prefetcher.handed == ()


def test_a_reader_failure_is_raised_after_the_pages_before_it(emulator):
    running = emulator(sms=250, seed=54)
    reader = BackfillReader(
        CloseClient(
            running.base_url, running.api_key, ClientConfig(max_retries=1, backoff_max=0.01)
        ),
        [Window(0, settings.OPEN_END_MS - 1)],
        workers=1,
    )
    prefetcher = Prefetcher(reader, buffer_pages=1)
    handed = []
    pages = prefetcher.pages()
    handed.append(next(pages))
    running.emu.faults.add("malformed", 100, "/activity/sms/")

    with pytest.raises(CloseApiError, match="not valid JSON"):
        handed.extend(pages)

    # The buffer held at most one page when the fault began; nothing read after it is handed.
    assert 1 <= len(handed) <= 3
    assert prefetcher.finished
    assert prefetcher.handed == handed[-1].pending
