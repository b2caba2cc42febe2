"""Backfill pages read ahead in a thread of their own, so fetching never waits for dlt.

dlt extracts, normalizes and loads one chunk after another; a reader driven by the extract
would stop while each chunk is normalized and loaded, and while the extract writes its files.
A `Prefetcher` runs the `BackfillReader` in its own thread, a bounded buffer ahead of the
consumer. Each buffered page carries the windows left once it is handed out, so the state a
run persists describes only pages dlt has been handed: pages still in the buffer are read
again after a kill.

When a run stops at `max_sms`, its prefetcher is parked and keeps filling its buffer; the next
run in the same process adopts it if its state starts exactly where the parked reader's
consumer stopped (the runner's next chunk does), else the parked one is closed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .. import settings
from ..api.client import CloseClient
from .backfill import BackfillReader, Window


@dataclass(frozen=True)
class PrefetchedPage:
    """One page of raw SMS, with what the backfill has left once it is handed out.

    The `last` one holds no SMS: the reader has ended, and `pending` is what it left unread.
    """

    items: list[dict]
    pending: tuple[Window, ...]
    windows_done: int
    last: bool = False
    # Listing positions the reader stepped past since the entry before.
    skipped_positions: int = 0


class Prefetcher:
    """A `BackfillReader` running ahead of its consumer by at most `buffer_pages` pages."""

    def __init__(self, reader: BackfillReader, buffer_pages: int) -> None:
        self.reader = reader
        # What the consumer has been handed up to: the windows its state should now hold.
        self.handed: tuple[Window, ...] = tuple(reader.windows)
        # Listing positions stepped past up to what the consumer has been handed.
        self.skipped_positions = 0
        self._skipped_queued = 0
        self._buffer: queue.Queue[object] = queue.Queue(maxsize=buffer_pages)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=self._produce, name="close-sms-prefetch", daemon=True
        )
        self._thread.start()

    @property
    def client(self) -> CloseClient:
        return self.reader.client

    @property
    def finished(self) -> bool:
        """Every page was handed out, or the reader failed and its error was raised."""
        return self._finished

    def pages(self, max_items: int | None = None) -> Iterator[PrefetchedPage]:
        """Hand out pages until the reader ends or `max_items` SMS were handed out.

        A failure of the reader is raised here, after the pages read before it.
        """
        handed = 0
        while max_items is None or handed < max_items:
            entry = self._buffer.get()
            if isinstance(entry, BaseException):
                self._finished = True
                raise entry
            assert isinstance(entry, PrefetchedPage)
            # Windows whose last page was empty end without a page: the last entry says so.
            self.handed = entry.pending
            self.skipped_positions += entry.skipped_positions
            if entry.last:
                self._finished = True
                return
            handed += len(entry.items)
            yield entry

    def close(self) -> None:
        """Stop reading; requests in flight end on their own, their pages are dropped."""
        self._stop.set()

    def _produce(self) -> None:
        pages = self.reader.pages()
        try:
            for items in pages:
                if not self._put(self._page(items)):
                    return
            self._put(self._page([], last=True))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(exc)
        finally:
            # Waits for the requests in flight, so none outlives a closed prefetcher's thread.
            pages.close()

    def _page(self, items: list[dict], last: bool = False) -> PrefetchedPage:
        pending = tuple(self.reader.pending)
        progress = self.reader.progress
        skipped = progress.skipped_positions - self._skipped_queued
        self._skipped_queued = progress.skipped_positions
        return PrefetchedPage(items, pending, progress.windows_done, last, skipped)

    def _put(self, entry: object) -> bool:
        """Wait for room in the buffer; False once the prefetcher is closed."""
        while not self._stop.is_set():
            try:
                self._buffer.put(entry, timeout=settings.PREFETCH_STOP_CHECK_SECONDS)
                return True
            except queue.Full:
                continue
        return False


@dataclass(frozen=True)
class ReaderSettings:
    """What makes a parked prefetcher's pages the ones a new run would read itself."""

    base_url: str
    api_keys: tuple[str, ...] = field(repr=False)
    workers: int
    max_skip: int


class _Parking:
    """At most one parked prefetcher per process, closed if not adopted in time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parked: tuple[ReaderSettings, Prefetcher, threading.Timer] | None = None

    def park(self, reader_settings: ReaderSettings, prefetcher: Prefetcher) -> None:
        timer = threading.Timer(settings.PREFETCH_PARK_SECONDS, self._expire, (prefetcher,))
        timer.daemon = True
        with self._lock:
            self._close_parked()
            self._parked = (reader_settings, prefetcher, timer)
        timer.start()

    def adopt(
        self, reader_settings: ReaderSettings, windows: Sequence[Window]
    ) -> Prefetcher | None:
        """The parked prefetcher if it reads `windows` for the same account, else None."""
        with self._lock:
            if self._parked is None:
                return None
            parked_settings, prefetcher, timer = self._parked
            if parked_settings != reader_settings or prefetcher.handed != tuple(windows):
                self._close_parked()
                return None
            timer.cancel()
            self._parked = None
            return prefetcher

    def close(self) -> None:
        with self._lock:
            self._close_parked()

    def _expire(self, prefetcher: Prefetcher) -> None:
        with self._lock:
            if self._parked is not None and self._parked[1] is prefetcher:
                self._close_parked()

    def _close_parked(self) -> None:
        if self._parked is not None:
            _, prefetcher, timer = self._parked
            timer.cancel()
            prefetcher.close()
            self._parked = None


_parking = _Parking()


def open_prefetcher(
    client: CloseClient,
    reader_settings: ReaderSettings,
    windows: Sequence[Window],
    buffer_pages: int,
) -> Prefetcher:
    """A prefetcher for `windows`: the parked one if it stopped exactly there, else a new one.

    An adopted prefetcher counts its requests in `client`'s stats from now on.
    """
    prefetcher = _parking.adopt(reader_settings, windows)
    if prefetcher is not None:
        prefetcher.client.stats = client.stats
        return prefetcher
    reader = BackfillReader(
        client, list(windows), workers=reader_settings.workers, max_skip=reader_settings.max_skip
    )
    return Prefetcher(reader, buffer_pages)


def park(reader_settings: ReaderSettings, prefetcher: Prefetcher) -> None:
    """Keep `prefetcher` reading for the next run of this process (see `open_prefetcher`)."""
    _parking.park(reader_settings, prefetcher)


def close_parked() -> None:
    """Close the parked prefetcher, if any: a run that stopped will not take it over."""
    _parking.close()
