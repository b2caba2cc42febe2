"""The backfill: `/activity/sms/` read through half-open `date_created` windows, newest first."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ...errors import ApiContractError, CloseApiError
from .. import settings
from ..api.client import CloseClient, DeletedMidQuery, RequestRejected
from ..timestamps import format_filter, parse_timestamp, to_ms

_MAX_SKIP_MESSAGE = re.compile(r"max_skip\s*=\s*(\d+)")


@dataclass(frozen=True)
class Window:
    """The part of a half-open `date_created` range [lower, upper) not read yet.

    Pages come newest first. `skip` counts the SMS already read in the window's newest slice
    (one second, or one millisecond for a `fine` window), so paging never needs a deep offset;
    `tail` holds the ids of the last of them, in Close's order, which the next page re-reads.
    """

    lower: int
    upper: int
    skip: int = 0
    fine: bool = False
    tail: tuple[str, ...] = ()

    def to_state(self) -> list[Any]:
        # Kept with the windows, so a resumed run still checks (and drops) the re-read overlap.
        return [self.lower, self.upper, self.skip, int(self.fine), list(self.tail)]

    @classmethod
    def from_state(cls, value: Sequence[Any]) -> Window:
        lower, upper, skip, *rest = value
        fine = bool(rest and rest[0])
        tail = tuple(rest[1]) if len(rest) > 1 else ()
        return cls(int(lower), int(upper), int(skip), fine, tail)


@dataclass
class BackfillProgress:
    """What a backfill reader has done so far in this process."""

    windows_done: int = 0
    # Listing positions stepped past because Close answered 404 "Empty query" for them alone.
    skipped_positions: int = 0


@dataclass
class _Page:
    """Consecutive positions of a window's listing from `offset`, each an SMS or a hole."""

    window: Window
    items: list[dict[str, Any]]
    has_more: bool
    offset: int
    # Each item's date_created, in epoch milliseconds.
    created: list[int] = field(default_factory=list)
    # Each item's position (`_skip`) in the window's listing.
    positions: list[int] = field(default_factory=list)
    # Positions stepped past: Close answers 404 "Empty query" for any page that holds them.
    holes: list[int] = field(default_factory=list)

    @property
    def width(self) -> int:
        """How many positions the page covers, holes included."""
        return len(self.items) + len(self.holes)


class _PastMaxSkip(Exception):
    """Stepping past a hole needs an offset beyond `max_skip`: the window must be refined."""


def _created_ms(item: dict[str, Any]) -> int:
    try:
        return to_ms(parse_timestamp(item["date_created"]))
    except (KeyError, TypeError, ValueError):
        raise ApiContractError(
            f"an SMS of {settings.SMS_ENDPOINT} ({item.get('id')!r}) has no valid date_created "
            f"({item.get('date_created')!r}): the backfill cannot place it in a window"
        ) from None


class MaxSkipExceeded(CloseApiError):
    """More SMS share one filterable instant than Close lets a client page through."""

    def __init__(self, window: Window, max_skip: int, millisecond_filters: bool = True) -> None:
        instant = format_filter(window.upper - 1)
        super().__init__(
            f"more than {max_skip} SMS share the instant {instant}; "
            "Close's max_skip does not allow paging through them"
            if millisecond_filters
            else f"more than {max_skip} SMS share the second of {instant}, and Close does not "
            "filter date_created by millisecond, so they cannot all be paged through"
        )
        self.window = window
        self.max_skip = max_skip


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
    overlap: int = settings.PAGE_OVERLAP
    progress: BackfillProgress = field(default_factory=BackfillProgress)

    def __post_init__(self) -> None:
        self._queue: list[Window] = list(self.windows)
        self._active: dict[Future[_Page], Window] = {}
        # Ids already handed out from a window's newest slice, in Close's order: to drop the
        # overlap's repeats and to check that the overlap re-reads what it should.
        self._seen: dict[Window, list[str]] = {}

    @property
    def pending(self) -> list[Window]:
        """Windows (with their progress) still to read, in flight ones included."""
        return list(self._active.values()) + self._queue

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of raw SMS until every window is read (a caller may stop earlier)."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="close-sms-window") as pool:
            self._fill(pool)
            while self._active:
                done, _ = wait(self._active, return_when=FIRST_COMPLETED)
                for future in done:
                    window = self._active.pop(future)
                    try:
                        page = future.result()
                    except MaxSkipExceeded as exc:
                        # Close's limit is lower than configured: remember it, read on.
                        self.max_skip = min(self.max_skip, exc.max_skip)
                        self._queue[:0] = self._past_max_skip(window)
                        continue
                    except _PastMaxSkip:
                        self._queue[:0] = self._refine(window)
                        continue
                    seen = self._seen.pop(window, None) or list(window.tail)
                    self._check(page, seen)
                    successors = self._successors(page, seen)
                    handed = set(seen)
                    page.items = [item for item in page.items if item.get("id") not in handed]
                    self._queue[:0] = successors
                    if not successors:
                        self.progress.windows_done += 1
                    # Holes in the re-read overlap were counted with the page before.
                    self.progress.skipped_positions += sum(
                        1 for hole in page.holes if hole >= window.skip
                    )
                    if page.items:
                        yield page.items
                self._fill(pool)

    def _fill(self, pool: ThreadPoolExecutor) -> None:
        while self._queue and len(self._active) < self.workers:
            if len(self._queue) + len(self._active) < self.workers:
                self._split_for_idle_workers()
            window = self._queue.pop(0)
            self._active[pool.submit(self._fetch, window)] = window

    def _precision(self, window: Window) -> int:
        return 1 if window.fine else self.precision_ms

    def _top_slice(self, window: Window) -> int:
        precision = self._precision(window)
        return max(window.lower, (window.upper - 1) // precision * precision)

    def _split_for_idle_workers(self) -> None:
        # Halve the widest window below its newest slice, so idle workers get their own range;
        # the newest slice stays with the upper half, which keeps the window's skip.
        def room(window: Window) -> int:
            # The open-ended pass holds the few future-dated SMS: halving it up to year 9999
            # would only add empty windows.
            if window.fine or window.upper >= settings.OPEN_END_MS:
                return 0
            return self._top_slice(window) - window.lower

        widest = max(self._queue, key=room, default=None)
        if widest is None or room(widest) < 2 * self.precision_ms:
            return
        middle = widest.lower + room(widest) // 2
        middle -= middle % self.precision_ms
        if not widest.lower < middle <= self._top_slice(widest):
            return
        index = self._queue.index(widest)
        upper_half = Window(middle, widest.upper, widest.skip, tail=widest.tail)
        if widest in self._seen:
            self._seen[upper_half] = self._seen.pop(widest)
        self._queue[index : index + 1] = [upper_half, Window(widest.lower, middle)]

    def _past_max_skip(self, window: Window) -> list[Window]:
        """`window`, whose next offset Close refused: read again, or finer if out of reach."""
        return [window] if self._within_reach(window.skip) else self._refine(window)

    def _within_reach(self, skip: int) -> bool:
        # A page at `max_skip` itself (`_fetch` caps the offset) still reaches SMS not read yet.
        return skip < self.max_skip + self.page_size

    def _refine(self, window: Window) -> list[Window]:
        """Re-read the newest slice of `window` by millisecond; the rest stays by second."""
        if window.fine:
            raise MaxSkipExceeded(window, self.max_skip)
        top = self._top_slice(window)
        finer = Window(top, window.upper, 0, fine=True)
        return [finer, Window(window.lower, top)] if top > window.lower else [finer]

    def _fetch(self, window: Window) -> _Page:
        # Re-read the last few SMS of the slice: an SMS deleted meanwhile among those already
        # read shifts Close's offsets, and without the overlap the next one would be skipped.
        # Close's `max_skip` caps it: a page there re-reads more, and still reaches new SMS.
        offset = min(max(0, window.skip - self.overlap), self.max_skip)
        entries, has_more = self._read(window, offset, self.page_size)
        while entries and entries[-1] is None:
            # A hole ends the page: read on until an SMS, so the page ends on a known date
            # and says truly whether more follow.
            more, has_more = self._read(window, offset + len(entries), 1)
            if not more:
                break
            entries += more
        page = _Page(window, [], has_more, offset)
        for position, item in enumerate(entries, offset):
            if item is None:
                page.holes.append(position)
            else:
                page.items.append(item)
                page.positions.append(position)
        page.created = [_created_ms(item) for item in page.items]
        return page

    def _read(
        self, window: Window, skip: int, limit: int
    ) -> tuple[list[dict[str, Any] | None], bool]:
        """Positions `skip`.. of the window's listing, at most `limit`, and whether more follow.

        Close answers 404 "Empty query" for every page holding an SMS it deleted but still
        lists; such a page is read in halves, down to that one position: a hole (None).
        """
        if skip > self.max_skip:
            raise _PastMaxSkip()
        params: dict[str, Any] = {"date_created__gte": format_filter(window.lower)}
        if window.upper < settings.OPEN_END_MS:
            params["date_created__lt"] = format_filter(window.upper)
        params.update({"_limit": limit, "_skip": skip})
        try:
            body = self.client.get(settings.SMS_ENDPOINT, params)
        except DeletedMidQuery:
            if limit == 1:
                # Whether more follow is learnt from the next position.
                return [None], True
            half = limit // 2
            head, more = self._read(window, skip, half)
            if not more or not head:
                return head, more
            # From where the head ended: Close may answer fewer than asked for.
            rest, more = self._read(window, skip + len(head), limit - len(head))
            return head + rest, more
        except RequestRejected as exc:
            match = _MAX_SKIP_MESSAGE.search(exc.message)
            if not match:
                raise
            raise MaxSkipExceeded(window, int(match[1])) from exc
        items: list[dict[str, Any] | None] = list(body.get("data") or [])
        return items, bool(body.get("has_more"))

    def _check(self, page: _Page, seen: list[str]) -> None:
        """Stop at a page that breaks what the windows rely on, before anything is handed out.

        Only observation says Close lists SMS newest first and applies the date filters; if
        either fails, or SMS sharing a second change order between requests, the windows would
        skip SMS without a sign.
        """
        window = page.window
        precision = self._precision(window)
        # A second-precision server drops a filter's fraction: a window is exact to its slice.
        lower = window.lower // precision * precision
        upper = -(-window.upper // precision) * precision
        for item, moment in zip(page.items, page.created, strict=True):
            if not lower <= moment < upper:
                raise ApiContractError(
                    f"Close answered {settings.SMS_ENDPOINT} with an SMS ({item.get('id')}, "
                    f"date_created {item.get('date_created')}) outside the date_created filter "
                    f"[{format_filter(window.lower)}, {_upper_text(window)}): "
                    "the filter was not applied"
                )
        for newer, older in itertools.pairwise(page.created):
            if older > newer:
                raise ApiContractError(
                    f"Close's {settings.SMS_ENDPOINT} page is not newest first by date_created "
                    f"({format_filter(newer)} came before {format_filter(older)}); the backfill "
                    "relies on that order"
                )
        self._check_overlap(page, seen)

    def _check_overlap(self, page: _Page, seen: list[str]) -> None:
        """The SMS a page re-reads must include some read before, in the order they were read.

        Deletes in between drop some of them and shift later SMS in, and new SMS of the same
        second shift them out towards later pages: either way the ones that remain keep their
        order. Were none left at an offset above 0, more SMS than the overlap were deleted and
        the next unread ones may lie before the offset; a changed order of SMS sharing a
        timestamp shows as SMS read before coming back out of order.
        """
        overlap = [
            item.get("id")
            for item, position in zip(page.items, page.positions, strict=True)
            if position < page.window.skip
        ]
        if not seen or not overlap:
            return
        read_at = {sms_id: index for index, sms_id in enumerate(seen)}
        found = [read_at[sms_id] for sms_id in overlap if sms_id in read_at]
        if found == sorted(found) and (found or page.offset == 0):
            return
        where = f"at offset {page.offset} of the second before {_upper_text(page.window)}"
        raise ApiContractError(
            f"the {len(overlap)} SMS re-read {where} come back in another order: Close's order "
            "of SMS sharing a timestamp changed between requests"
            if found
            else f"none of the {len(overlap)} SMS re-read {where} was read before: more than "
            f"{self.overlap - 1} of them were deleted between two requests, or Close's order of "
            "SMS sharing a timestamp changed"
        )

    def _successors(self, page: _Page, seen: list[str]) -> list[Window]:
        """The windows that replace `page.window` once its page is handed out."""
        window = page.window
        if window.fine and window.skip and not page.width:
            # The page before promised more SMS in this millisecond range: Close ignored the
            # fraction of the filter, and reading on would silently skip SMS.
            raise MaxSkipExceeded(window, self.max_skip, millisecond_filters=False)
        if page.offset and not page.width:
            raise ApiContractError(
                f"the page at offset {page.offset} of the second before {_upper_text(window)} "
                f"came back empty: more than {self.overlap - 1} of the SMS read before it were "
                "deleted between two requests, so SMS not read yet may lie before that offset"
            )
        if not page.has_more:
            return []
        precision = self._precision(window)
        created = page.created
        top = self._top_slice(window)
        # A page of holes alone has no date: it stays in the window's newest slice.
        oldest_slice = max(window.lower, min(created) // precision * precision) if created else top
        in_oldest = [
            (item["id"], position)
            for item, moment, position in zip(page.items, created, page.positions, strict=True)
            if moment < oldest_slice + precision
        ]
        if oldest_slice >= top:
            # The whole page lies in the window's newest slice: page on by offset inside it.
            skip = page.offset + page.width
            handed = set(seen)
            ids = seen + [sms_id for sms_id, _ in in_oldest if sms_id not in handed]
        else:
            # The page ends on an SMS (see `_fetch`). A hole right before the oldest slice's
            # first SMS may lie in either slice: left out, the next page only re-reads it.
            skip = page.offset + page.width - in_oldest[0][1]
            ids = [sms_id for sms_id, _ in in_oldest]
        successor = Window(
            window.lower,
            min(window.upper, oldest_slice + precision),
            skip,
            window.fine,
            tuple(ids[-self.overlap :]),
        )
        if not self._within_reach(skip):
            return self._refine(successor)
        self._seen[successor] = ids
        return [successor]


def _upper_text(window: Window) -> str:
    return "open end" if window.upper >= settings.OPEN_END_MS else format_filter(window.upper)
