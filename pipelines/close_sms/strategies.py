"""How SMS are read from Close: backfill windows over date_created, and the event-log change feed."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pendulum

from . import settings
from .client import CloseClient, RequestRejected

_MAX_SKIP_MESSAGE = re.compile(r"max_skip\s*=\s*(\d+)")


def parse_timestamp(value: Any) -> datetime | None:
    """Parse Close's timestamps tolerantly: with or without a fraction, `Z`, offset or naive UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return pendulum.instance(value, tz="UTC").in_timezone("UTC")
    parsed = pendulum.parse(str(value), tz="UTC")
    if not isinstance(parsed, datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed.in_timezone("UTC")


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of a tz-aware datetime."""
    return int(round(moment.timestamp() * 1000))


def from_ms(epoch_ms: int) -> datetime:
    """Tz-aware UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)


def format_filter(epoch_ms: int) -> str:
    """A filter value Close accepts, in UTC with an explicit offset."""
    moment = from_ms(epoch_ms)
    if epoch_ms % 1000:
        return moment.isoformat(timespec="milliseconds")
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Window:
    """The part of a half-open `date_created` range [lower, upper) not read yet.

    Pages come newest first. `skip` counts the SMS already read in the newest
    `precision`-wide slice of the window, so paging never needs a deep offset.
    """

    lower: int
    upper: int
    skip: int = 0

    def to_state(self) -> list[int]:
        return [self.lower, self.upper, self.skip]

    @classmethod
    def from_state(cls, value: Iterable[int]) -> Window:
        lower, upper, skip = value
        return cls(int(lower), int(upper), int(skip))


@dataclass
class BackfillProgress:
    """What a backfill reader has done so far in this process."""

    windows_done: int = 0
    pages: int = 0
    sms: int = 0
    windows_pending: int = 0


@dataclass
class _Page:
    window: Window
    items: list[dict[str, Any]]
    has_more: bool


@dataclass
class BackfillReader:
    """Reads windows of `/activity/sms/` concurrently; windows split so offsets stay shallow.

    All scheduling happens in the consuming thread, so `pending` always describes exactly
    what has not been handed to the caller yet: it is safe to persist after every page.
    """

    client: CloseClient
    windows: list[Window]
    workers: int = settings.BACKFILL_WORKERS
    page_size: int = settings.PAGE_SIZE
    max_skip: int = settings.DEFAULT_MAX_SKIP
    precision_ms: int = settings.FILTER_PRECISION_SECONDS * 1000
    progress: BackfillProgress = field(default_factory=BackfillProgress)

    def __post_init__(self) -> None:
        self._queue: list[Window] = list(self.windows)
        self._active: dict[Future[_Page], Window] = {}

    @property
    def pending(self) -> list[Window]:
        """Windows (with their progress) still to read, in flight ones included."""
        return list(self._active.values()) + self._queue

    def pages(self, max_items: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of raw SMS until every window is read or `max_items` were yielded."""
        yielded = 0
        with ThreadPoolExecutor(self.workers, thread_name_prefix="close-sms-window") as pool:
            self._fill(pool)
            while self._active:
                done, _ = wait(self._active, return_when=FIRST_COMPLETED)
                for future in done:
                    self._active.pop(future)
                    page = future.result()
                    successors = self._successors(page)
                    self._queue[:0] = successors
                    if not successors:
                        self.progress.windows_done += 1
                    self.progress.pages += 1
                    self.progress.sms += len(page.items)
                    self.progress.windows_pending = len(self._active) + len(self._queue)
                    yielded += len(page.items)
                    if page.items:
                        yield page.items
                if max_items is None or yielded < max_items:
                    self._fill(pool)
            self.progress.windows_pending = len(self._queue)

    def _fill(self, pool: ThreadPoolExecutor) -> None:
        while self._queue and len(self._active) < self.workers:
            if len(self._queue) + len(self._active) < self.workers:
                self._split_for_idle_workers()
            window = self._queue.pop(0)
            self._active[pool.submit(self._fetch, window)] = window

    def _split_for_idle_workers(self) -> None:
        # Halve the widest window below its newest slice, so idle workers get their own range;
        # the newest slice stays with the upper half, which keeps the window's skip.
        def room(window: Window) -> int:
            return self._align(window.upper - 1) - window.lower

        widest = max(self._queue, key=room, default=None)
        if widest is None or room(widest) < 2 * self.precision_ms:
            return
        middle = self._align(widest.lower + room(widest) // 2)
        if not widest.lower < middle <= self._align(widest.upper - 1):
            return
        index = self._queue.index(widest)
        self._queue[index : index + 1] = [
            Window(middle, widest.upper, widest.skip),
            Window(widest.lower, middle),
        ]

    def _align(self, epoch_ms: int) -> int:
        return epoch_ms - epoch_ms % self.precision_ms

    def _fetch(self, window: Window) -> _Page:
        params = {
            "date_created__gte": format_filter(window.lower),
            "date_created__lt": format_filter(window.upper),
            "_limit": self.page_size,
            "_skip": window.skip,
        }
        try:
            body = self.client.get(settings.SMS_ENDPOINT, params)
        except RequestRejected as exc:
            match = _MAX_SKIP_MESSAGE.search(exc.message)
            if not match:
                raise
            raise MaxSkipExceeded(window, int(match[1])) from exc
        return _Page(window, list(body.get("data") or []), bool(body.get("has_more")))

    def _successors(self, page: _Page) -> list[Window]:
        """The windows that replace `page.window` once its page is handed out."""
        window = page.window
        if not page.has_more or not page.items:
            return []
        oldest = min(to_ms(parse_timestamp(item["date_created"])) for item in page.items)
        slice_start = self._align(oldest)
        if slice_start < window.lower:
            slice_start = window.lower
        top_slice_start = self._align(window.upper - 1)
        if slice_start >= top_slice_start:
            # The whole page lies in the window's newest slice: page on by offset inside it.
            skip = window.skip + len(page.items)
        else:
            skip = sum(
                1
                for item in page.items
                if to_ms(parse_timestamp(item["date_created"])) < slice_start + self.precision_ms
            )
        next_upper = min(window.upper, slice_start + self.precision_ms)
        if skip + self.page_size > self.max_skip:
            raise MaxSkipExceeded(Window(window.lower, next_upper, skip), self.max_skip)
        return [Window(window.lower, next_upper, skip)]


class MaxSkipExceeded(RuntimeError):
    """More SMS share one filterable instant than Close lets a client page through."""

    def __init__(self, window: Window, max_skip: int) -> None:
        super().__init__(
            f"more than {max_skip} SMS share the second starting {format_filter(window.upper - 1)}; "
            "Close's max_skip does not allow paging through them"
        )
        self.window = window
        self.max_skip = max_skip


def read_events(
    client: CloseClient, since: datetime, actions: Iterable[str] = settings.EVENT_ACTIONS
) -> Iterator[list[dict[str, Any]]]:
    """Yield pages of SMS events with `date_updated >= since`, one query per action."""
    for action in actions:
        params: dict[str, Any] = {
            "object_type": settings.EVENT_OBJECT_TYPE,
            "action": action,
            "date_updated__gte": since.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
            "_limit": settings.EVENT_PAGE_SIZE,
        }
        while True:
            body = client.get(settings.EVENT_ENDPOINT, params)
            page = list(body.get("data") or [])
            if page:
                yield page
            cursor = body.get("cursor_next")
            if not cursor or not page:
                break
            params = {**params, "_cursor": cursor}


def fetch_by_ids(
    client: CloseClient, ids: list[str], batch_size: int = settings.ID_BATCH_SIZE
) -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
    """Fetch SMS by id in batches; yields (found SMS, ids Close no longer returns)."""
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        body = client.get(settings.SMS_ENDPOINT, {"id__in": ",".join(batch), "_limit": len(batch)})
        found = [item for item in body.get("data") or [] if item.get("id") in set(batch)]
        returned = {item["id"] for item in found}
        yield found, [sms_id for sms_id in batch if sms_id not in returned]
