"""One run of the source: decides once whether it backfills or reads the change feed, then does it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dlt
from dlt.sources import TDataItems

from ..errors import ConfigError, where_to_set
from . import settings
from .api.client import CloseClient, RequestRejected
from .loaded import LoadedTable, refuse_mass_delete
from .privacy import Privacy
from .progress import RunMode, SyncProgress, measure_pending
from .sms.backfill import BackfillReader, Window
from .sms.columnar import ArrowBatcher
from .sms.feed import FetchedBatch, fetch_by_ids, read_events
from .sms.prefetch import PrefetchedPage, ReaderSettings, open_prefetcher, park
from .sms.schema import normalize_event, normalize_sms, tombstone
from .state import BackfillPlan, SourceState
from .timestamps import parse_timestamp, to_ms


@dataclass
class Run:
    """One extraction: decides once, at its first resource, whether it backfills or reads the feed."""

    client: CloseClient
    start_date: datetime | None
    reconcile: bool
    max_sms: int | None
    reader_settings: ReaderSettings
    prefetch_pages: int
    recent_window: timedelta | None
    reconcile_interval: timedelta | None
    max_delete_share: float
    allow_mass_delete: bool
    progress: SyncProgress
    privacy: Privacy
    # Called with every batch of raw SMS the run loads (the context fetches what they name).
    on_sms: Callable[[list[dict[str, Any]]], None] | None = None
    _state: SourceState | None = None
    _now: datetime | None = None
    _unproven_removals: int = 0

    def __post_init__(self) -> None:
        self.progress.requests = self.client.stats

    def decide(self) -> SourceState:
        """Check the keys, then read the state and pick this run's work (in a resource only)."""
        if self._state is not None:
            return self._state
        try:
            self.client.check_keys()
        except RequestRejected as exc:
            if exc.status != 404:
                raise
            # The key check is the first request: a 404 there means the URL, not the data.
            raise ConfigError(
                f"base_url {self.client.base_url}: {settings.ME_ENDPOINT} is not found there "
                f"(Close's API is at {settings.DEFAULT_BASE_URL}; {where_to_set('base_url')})"
            ) from None
        now = self._now = self.client.now()
        if self.start_date and self.start_date > now:
            raise ConfigError(
                f"start_date {self.start_date.date()} is in the future "
                f"(Close's clock: {now:%Y-%m-%d})"
            )
        state = SourceState.read(dlt.current.source_state())
        state.privacy_mode = self.privacy.enforce(
            state.privacy_mode, loaded_before=state.backfill is not None
        )
        plan, reason = state.next_backfill(
            now, self.start_date, self.reconcile, self.reconcile_interval
        )
        if plan is not None:
            state.backfill = plan
        state.write(dlt.current.source_state())
        if plan is not None:
            self.progress.mode = RunMode.RECONCILE if plan.reconcile else RunMode.BACKFILL
        elif state.backfill_in_progress:
            self.progress.mode = RunMode.RESUMED
        else:
            self.progress.mode = RunMode.INCREMENTAL
        self.progress.reason = reason
        if state.backfill is not None:
            self.progress.backfill_range = (state.backfill.start, state.backfill.made_at)
            self.progress.windows_left = len(state.backfill.windows)
        self._state = state
        if self.progress.on_start:
            self.progress.on_start(self.progress)
        return state

    def backfill(self) -> Iterator[TDataItems]:
        """The backfill's rows, when this run backfills (see the package's docstring)."""
        state = self.decide()
        plan = state.backfill
        if plan is None or not plan.in_progress:
            return
        self.progress.backfill_loaded = plan.loaded
        seen: set[str] = set()
        if plan.windows:
            prefetcher = open_prefetcher(
                self.client, self.reader_settings, plan.windows, self.prefetch_pages
            )
            skipped_before = prefetcher.skipped_positions
            batcher = ArrowBatcher(settings.ARROW_BATCH_SMS)
            # Pages whose rows are not all with dlt yet, so not in the state either.
            unrecorded: list[PrefetchedPage] = []
            chunk_done = False
            try:
                for page in prefetcher.pages(max_items=self.max_sms):
                    self._show_page(plan, page)
                    unrecorded.append(page)
                    self._saw(page.items)
                    if plan.reconcile:
                        seen.update(item["id"] for item in page.items)
                    items = batcher.add([normalize_sms(item, self.privacy) for item in page.items])
                    if batcher.holding:
                        yield from items
                    else:
                        yield from self._hand_over(state, plan, unrecorded, items)
                yield from self._hand_over(state, plan, unrecorded, batcher.flush())
                chunk_done = True
            finally:
                self.progress.skipped_positions += prefetcher.skipped_positions - skipped_before
                if chunk_done and not prefetcher.finished and prefetcher.handed:
                    # Reads on while dlt loads this chunk; the runner's next chunk adopts it.
                    park(self.reader_settings, prefetcher)
                else:
                    prefetcher.close()
            plan.windows = list(prefetcher.handed)
            self.progress.windows_left = len(plan.windows)
        if not plan.windows:
            if plan.reconcile:
                # Every SMS the reconcile read in an earlier run was rewritten by a newer load;
                # what this run read is not loaded yet, so `seen` is left out.
                table = LoadedTable.of_current_resource()
                loaded_before = table.ids_loaded_before(plan.load_id, plan.start)
                yield from self._prove_removals([i for i in loaded_before if i not in seen], table)
            plan.complete = True
        state.write(dlt.current.source_state())

    def _prove_removals(self, missing: list[str], table: LoadedTable) -> Iterator[TDataItems]:
        """Remove the SMS the reconcile's listing did not return that Close answers 404 for.

        A listing that stepped past a position it could not read proves nothing about which
        SMS was there, and a 403 hides an SMS from lists: so each one is asked for by id (100
        per request), and only its own 404 removes it; one Close still returns is loaded again.
        """
        self._guard_removals(len(missing), table)
        for batch in fetch_by_ids(self.client, missing, deleted_events=set()):
            self.progress.removed += len(batch.gone)
            self.progress.upserted += len(batch.found)
            rows = self._rows(batch)
            if rows:
                yield rows

    def _rows(self, batch: FetchedBatch) -> list[dict[str, Any]]:
        """The rows of SMS fetched again by id: those found, and tombstones of those gone."""
        self.progress.unreadable += len(batch.unreadable)
        self._saw(batch.found)
        rows = [normalize_sms(item, self.privacy) for item in batch.found]
        return rows + [tombstone(i) for i in batch.deleted_by_event + batch.gone]

    def _hand_over(
        self,
        state: SourceState,
        plan: BackfillPlan,
        pages: list[PrefetchedPage],
        items: list[TDataItems],
    ) -> Iterator[TDataItems]:
        """Yield `items`, which hold the last rows of `pages`, and record `pages` in the state.

        The state is written just before the last item: dlt's `add_limit` passes an item on and
        then closes this generator, so the state never counts rows dlt did not get. A close at
        an earlier item leaves the pages to be read again, and the merge on `id` absorbs that.
        """
        yield from items[:-1]
        if pages:
            plan.windows = list(pages[-1].pending)
            plan.loaded += sum(len(page.items) for page in pages)
            pages.clear()
            state.write(dlt.current.source_state())
        yield from items[-1:]

    def _show_page(self, plan: BackfillPlan, page: PrefetchedPage) -> None:
        self.progress.backfill_sms += len(page.items)
        self.progress.backfill_loaded += len(page.items)
        self.progress.windows_left = len(page.pending)
        self.progress.windows_done = page.windows_done
        measure_pending(self.progress, page.pending, plan.made_at)
        if self.progress.on_page:
            self.progress.on_page(self.progress)

    def events(self) -> Iterator[TDataItems]:
        """The change feed's events since the last check, when this run reads the feed."""
        if "sms_changes" not in dlt.current.source().selected_resources:
            # The feed's check would move on while the SMS its events name are never fetched.
            raise ConfigError("sms_events is selected without sms_changes: select both, or neither")
        state = self.decide()
        if self.progress.mode is not RunMode.INCREMENTAL:
            # Not the live plan: with dlt's `fifo` item mode the backfill has finished by now,
            # and a feed read into its package could lose a delete to a row read before it.
            return
        started = self.client.now()
        since = self.progress.feed_since = state.feed_start(started)
        events = [normalize_event(e) for page in read_events(self.client, since) for e in page]
        self.progress.events += len(events)
        self.progress.feed_read_at = started
        # Yielded even when empty: sms_changes then runs the recent re-read.
        yield events
        if events or state.feed_check_due(started):
            state.feed_checked_at = started
            state.write(dlt.current.source_state())

    def changes(self, events: list[dict[str, Any]]) -> Iterator[TDataItems]:
        """The SMS `events` name, fetched again, then those the recent re-read finds changed."""
        table = LoadedTable.of_current_resource()
        ids = list(dict.fromkeys(e["object_id"] for e in events if e.get("object_id")))
        deleted = {e["object_id"] for e in events if e.get("action") == "deleted"}
        for batch in fetch_by_ids(self.client, ids, deleted):
            self._guard_removals(len(batch.gone), table)
            self.progress.upserted += len(batch.found)
            self.progress.deleted += len(batch.deleted_by_event) + len(batch.gone)
            yield self._rows(batch)
        yield from self._recent(table, exclude=set(ids))

    def _recent(self, table: LoadedTable, exclude: set[str]) -> Iterator[TDataItems]:
        """SMS created within the recent window that differ from the warehouse's copy.

        Close changes some SMS without an event (delivery outcomes set a status); they all
        change `date_updated` or `status`, so SMS equal in both are not loaded again.
        """
        if (
            self.recent_window is None
            or self._now is None
            or self.progress.mode is not RunMode.INCREMENTAL
        ):
            # A backfill that ended in this run has just read everything.
            return
        now = self._now.replace(microsecond=0)
        lower = now - self.recent_window
        stored = {
            sms_id: _version(date_updated, status)
            for sms_id, date_updated, status in table.versions_since(lower)
        }
        # One reader, newest first, open-ended: the fewest requests (one per 100 SMS), since
        # every cron run pays them; splitting for idle workers would cost empty pages.
        reader = BackfillReader(
            self.client,
            [Window(to_ms(lower), settings.OPEN_END_MS)],
            workers=1,
            max_skip=self.reader_settings.max_skip,
        )
        for page in reader.pages():
            changed = [
                item
                for item in page
                if item["id"] not in exclude
                and stored.get(item["id"]) != _version(item.get("date_updated"), item.get("status"))
            ]
            self.progress.recent_changed += len(changed)
            self.progress.upserted += len(changed)
            if changed:
                self._saw(changed)
                yield [normalize_sms(item, self.privacy) for item in changed]
        self.progress.skipped_positions += reader.progress.skipped_positions

    def _saw(self, items: list[dict[str, Any]]) -> None:
        if self.on_sms is not None:
            self.on_sms(items)

    def _guard_removals(self, count: int, table: LoadedTable) -> None:
        """Stop before this run removes too much of `table` without `deleted` events."""
        if not count:
            return
        self._unproven_removals += count
        if self.allow_mass_delete:
            return
        refuse_mass_delete(self._unproven_removals, table, "SMS", self.max_delete_share)


def _version(date_updated: Any, status: Any) -> tuple[Any, Any]:
    """What tells two copies of an SMS apart cheaply: its date_updated and status."""
    try:
        return parse_timestamp(date_updated), status
    except (TypeError, ValueError):
        # Never equal to a stored copy, so an odd value is loaded again rather than missed.
        return object(), status
