"""The dlt source: Close SMS activities, their attachments and their events, merged on `id`.

`dlt.pipeline(...).run(close_sms_source())` is a complete sync on its own. Each run decides from
the source's state what to do:

- the first run, a `reconcile=True` run, or one whose last change-feed read is past the event
  log's 30 days backfills: it pages `/activity/sms/` through `date_created` windows, saving the
  windows left after every page. `max_sms` bounds the SMS one run reads; the next run resumes.
  A reconcile that has read its whole range then deletes the rows Close did not return.
- any other run reads the change feed: the event log since the last check, and the SMS its
  events name, fetched again; the ones Close no longer returns are deleted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import dlt
from dlt.common.typing import TDataItems
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.extract.resource import DltResource

from .. import settings
from ..errors import ConfigError, MassDeleteRefused
from .api.client import ClientConfig, CloseClient, RequestRejected
from .api.keys import parse_api_keys
from .privacy import Privacy
from .progress import RunMode, SyncProgress, measure_pending
from .sms.backfill import BackfillReader, Window
from .sms.columnar import ArrowBatcher
from .sms.feed import fetch_by_ids, read_events
from .sms.prefetch import PrefetchedPage, ReaderSettings, open_prefetcher, park
from .sms.schema import (
    declare_attachments,
    event_columns,
    normalize_event,
    normalize_sms,
    sms_hints,
    tombstone,
    without_nul,
)
from .state import BackfillPlan, SourceState
from .timestamps import parse_timestamp, to_ms

__all__ = [
    "RunMode",
    "SyncProgress",
    "backfill_in_progress",
    "check_positive",
    "close_sms_source",
    "measure_pending",
]


MISSING_KEY = (
    "no Close API key: set SOURCES__CLOSE_SMS__API_KEY or CLOSE_API_KEY, "
    "or api_key under [sources.close_sms] in .dlt/secrets.toml"
)


def backfill_in_progress(pipeline: dlt.Pipeline) -> bool:
    """Whether the pipeline's last run of the source left a backfill to continue.

    A caller loading a large backfill in chunks runs the source again while this holds.
    """
    return SourceState.of(pipeline).backfill_in_progress


@dlt.source(name=settings.SOURCE_NAME, section=settings.SOURCE_NAME, root_key=True)
def close_sms_source(
    # `str`, not a union with a list: dlt 1.31 leaves a union-typed secret unresolved, and hands a
    # TOML list to a `str` setting as its JSON text (parse_api_keys reads both).
    api_key: str = dlt.secrets.value,
    base_url: str = settings.DEFAULT_BASE_URL,
    start_date: str | None = None,
    reconcile: bool = False,
    max_sms: int | None = None,
    max_skip: int = settings.DEFAULT_MAX_SKIP,
    backfill_workers: int = settings.BACKFILL_WORKERS,
    prefetch_sms: int = settings.PREFETCH_SMS,
    read_timeout: float = settings.READ_TIMEOUT,
    max_retries: int = settings.MAX_RETRIES,
    backoff_max: float = settings.BACKOFF_MAX_SECONDS,
    recent_window_hours: float = settings.RECENT_WINDOW_HOURS,
    reconcile_interval_days: float = settings.RECONCILE_INTERVAL_DAYS,
    max_delete_share: float = settings.MAX_DELETE_SHARE,
    allow_mass_delete: bool = False,
    hash_phones: bool = False,
    sms_text: str = settings.DEFAULT_SMS_TEXT,
    hash_key: str | None = dlt.secrets.value,
    progress: SyncProgress | None = None,
) -> Sequence[DltResource]:
    """Close SMS into the tables `sms`, `sms__attachments` and `sms_events`.

    Args:
        api_key: Close API key (`SOURCES__CLOSE_SMS__API_KEY` or `.dlt/secrets.toml`), or
            several, separated by commas or as a list: requests are spread over all of them.
        base_url: Close's API root.
        start_date: lower bound (YYYY-MM-DD or ISO time) of `date_created` for a new backfill.
        reconcile: start a reconcile backfill, unless one is already in progress, and delete
            the rows whose SMS Close no longer returns once it has read everything.
        max_sms: the most SMS one run backfills (None: the whole backfill in one run); see
            `backfill_in_progress`.
        max_skip: Close's deepest `_skip` for SMS lists.
        backfill_workers: date windows read concurrently per API key.
        prefetch_sms: SMS the backfill reads ahead while dlt writes, normalizes and loads.
        read_timeout, max_retries, backoff_max: HTTP read timeout, retries, longest backoff.
        recent_window_hours: every incremental run re-reads the SMS created this recently and
            loads those that differ from the warehouse (0: off).
        reconcile_interval_days: a reconcile starts by itself when the last full read is this
            old (0: never).
        max_delete_share: the largest share of the `sms` table (at least 100 rows) one run
            removes without `deleted` events behind the removals; more stops the run.
        allow_mass_delete: lift that guard for this run.
        hash_phones: store phone numbers as HMAC-SHA256 hashes (see `source/privacy.py`).
        sms_text: `keep`, `drop` (null) or `hash` the text of every SMS.
        hash_key: the secret key of the hashes (`SOURCES__CLOSE_SMS__HASH_KEY`).
        progress: an object the run fills in as it goes, for callers that report progress.
    """
    api_keys = parse_api_keys(api_key)
    if not api_keys:
        raise ConfigError(MISSING_KEY)
    _check_url(base_url)
    for name, value in (
        ("max_sms", max_sms),
        ("max_skip", max_skip),
        ("backfill_workers", backfill_workers),
        ("prefetch_sms", prefetch_sms),
        ("max_retries", max_retries),
    ):
        check_positive(name, value, optional=name == "max_sms", whole=True)
    for name, value in (("read_timeout", read_timeout), ("backoff_max", backoff_max)):
        check_positive(name, value)
    for name, value in (
        ("recent_window_hours", recent_window_hours),
        ("reconcile_interval_days", reconcile_interval_days),
    ):
        check_positive(name, value, allow_zero=True)
    check_positive("max_delete_share", max_delete_share, at_most=1)
    privacy = Privacy.configure(hash_phones, sms_text, hash_key)
    run = _Run(
        client=CloseClient(
            base_url,
            api_keys,
            ClientConfig(
                read_timeout=float(read_timeout),
                max_retries=int(max_retries),
                backoff_max=float(backoff_max),
                on_wait=progress.on_wait if progress else None,
            ),
        ),
        start_date=_parse_start_date(start_date),
        reconcile=reconcile,
        max_sms=int(max_sms) if max_sms is not None else None,
        reader_settings=ReaderSettings(
            base_url=base_url,
            api_keys=api_keys,
            workers=int(backfill_workers) * len(api_keys),
            max_skip=int(max_skip),
        ),
        prefetch_pages=-(-int(prefetch_sms) // settings.PAGE_SIZE),
        recent_window=_hours(recent_window_hours),
        reconcile_interval=_hours(float(reconcile_interval_days) * 24),
        max_delete_share=float(max_delete_share),
        allow_mass_delete=bool(allow_mass_delete),
        progress=progress or SyncProgress(),
        privacy=privacy,
    )

    @dlt.resource(name="sms_backfill", **sms_hints())
    def sms_backfill() -> Iterator[TDataItems]:
        yield from run.backfill()

    @dlt.resource(
        name="sms_events",
        table_name="sms_events",
        write_disposition="merge",
        primary_key="id",
        columns=event_columns(),
    )
    def sms_events() -> Iterator[TDataItems]:
        yield from run.events()

    @dlt.transformer(data_from=sms_events, name="sms_changes", **sms_hints())
    def sms_changes(events: list[dict[str, Any]]) -> Iterator[TDataItems]:
        yield from run.changes(events)

    declare_attachments(dlt.current.source_schema(), sms_backfill.compute_table_schema())
    return without_nul(sms_backfill, sms_events, sms_changes)


@dataclass
class _Run:
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
                f"(set --base-url or SOURCES__CLOSE_SMS__BASE_URL; Close's API is at "
                f"{settings.DEFAULT_BASE_URL})"
            ) from None
        now = self._now = self.client.now()
        if self.start_date and self.start_date > now:
            raise ConfigError(
                f"start_date {self.start_date.date()} is in the future "
                f"(Close's clock: {now:%Y-%m-%d})"
            )
        state = SourceState.read(dlt.current.source_state())
        self.privacy.enforce(dlt.current.source_state(), loaded_before=state.backfill is not None)
        plan, reason = state.next_backfill(
            now, self.start_date, self.reconcile, self.reconcile_interval
        )
        if plan is not None:
            state.backfill = plan
            state.write(dlt.current.source_state())
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
            batcher = ArrowBatcher(settings.ARROW_BATCH_SMS)
            # Pages whose rows are not all with dlt yet, so not in the state either.
            unrecorded: list[PrefetchedPage] = []
            chunk_done = False
            try:
                for page in prefetcher.pages(max_items=self.max_sms):
                    self._show_page(plan, page)
                    unrecorded.append(page)
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
                if chunk_done and not prefetcher.finished and prefetcher.handed:
                    # Reads on while dlt loads this chunk; the runner's next chunk adopts it.
                    park(self.reader_settings, prefetcher)
                else:
                    prefetcher.close()
            plan.windows = list(prefetcher.handed)
            self.progress.windows_left = len(plan.windows)
        if not plan.windows:
            if plan.reconcile:
                removed = [i for i in _ids_loaded_before(plan) if i not in seen]
                self._guard_removals(len(removed))
                self.progress.removed = len(removed)
                if removed:
                    yield [tombstone(sms_id) for sms_id in removed]
            plan.complete = True
        state.write(dlt.current.source_state())

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
        ids = list(dict.fromkeys(e["object_id"] for e in events if e.get("object_id")))
        deleted = {e["object_id"] for e in events if e.get("action") == "deleted"}
        for batch in fetch_by_ids(self.client, ids, deleted):
            self._guard_removals(len(batch.gone))
            removed = batch.deleted_by_event + batch.gone
            self.progress.upserted += len(batch.found)
            self.progress.deleted += len(removed)
            rows = [normalize_sms(item, self.privacy) for item in batch.found]
            yield rows + [tombstone(i) for i in removed]
        yield from self._recent(exclude=set(ids))

    def _recent(self, exclude: set[str]) -> Iterator[TDataItems]:
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
            for sms_id, date_updated, status in _warehouse_rows(
                "SELECT id, date_updated, status FROM {sms} WHERE date_created >= %s", lower
            )
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
                yield [normalize_sms(item, self.privacy) for item in changed]

    def _guard_removals(self, count: int) -> None:
        """Stop before this run removes too much of the table without `deleted` events."""
        if not count:
            return
        self._unproven_removals += count
        if self.allow_mass_delete:
            return
        ((rows,),) = _warehouse_rows("SELECT count(*) FROM {sms}") or [(0,)]
        allowed = max(settings.DELETE_GUARD_MIN_ROWS, self.max_delete_share * rows)
        if self._unproven_removals > allowed:
            raise MassDeleteRefused(
                f"this run would remove {self._unproven_removals:,} of the {rows:,} SMS in the "
                f"warehouse without `deleted` events behind them, more than max_delete_share = "
                f"{self.max_delete_share:g} (and {settings.DELETE_GUARD_MIN_ROWS} rows) allows; "
                "nothing was removed"
            )


def _version(date_updated: Any, status: Any) -> tuple[Any, Any]:
    """What tells two copies of an SMS apart cheaply: its date_updated and status."""
    try:
        return parse_timestamp(date_updated), status
    except (TypeError, ValueError):
        # Never equal to a stored copy, so an odd value is loaded again rather than missed.
        return object(), status


def _warehouse_rows(query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of `query` over the `sms` table (`{sms}` in it); none before the table exists."""
    with dlt.current.pipeline().sql_client() as sql:
        if not sql.has_dataset():
            return []
        try:
            rows = sql.execute_sql(query.format(sms=sql.make_qualified_table_name("sms")), *args)
        except DatabaseUndefinedRelation:
            return []
    return [tuple(row) for row in rows or []]


def _ids_loaded_before(plan: BackfillPlan) -> list[str]:
    """Ids in the plan's range whose rows were last written before the plan was made.

    Every SMS the reconcile read in an earlier run was rewritten by a newer load; what this run
    read is not loaded yet, so the caller leaves those ids out.
    """
    rows = _warehouse_rows(
        "SELECT id FROM {sms} "
        # Load ids are epoch seconds as text; compared as numbers, since a database's text
        # collation may not order them by time.
        "WHERE CAST(_dlt_load_id AS DECIMAL(24, 9)) < CAST(%s AS DECIMAL(24, 9)) "
        "AND date_created >= %s",
        plan.created,
        plan.start,
    )
    return [row[0] for row in rows]


def _hours(hours: Any) -> timedelta | None:
    """A setting in hours as a duration; 0 turns the feature off (None)."""
    return timedelta(hours=float(hours)) if float(hours) > 0 else None


def _check_url(base_url: str) -> None:
    parsed = urlparse(str(base_url).strip())
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or any(c.isspace() for c in str(base_url).strip())
    ):
        raise ConfigError(
            f"base_url {base_url!r} is not an http(s) URL (set --base-url or "
            f"SOURCES__CLOSE_SMS__BASE_URL, e.g. {settings.DEFAULT_BASE_URL})"
        )


def check_positive(
    name: str,
    value: Any,
    optional: bool = False,
    allow_zero: bool = False,
    at_most: float | None = None,
    whole: bool = False,
) -> None:
    """Refuse a numeric setting out of its range (or, with `whole`, not a count), naming it."""
    if value is None and optional:
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    out_of_range = not (number >= 0 if allow_zero else number > 0) or (
        at_most is not None and number > at_most
    )
    if out_of_range or isinstance(value, bool) or (whole and not number.is_integer()):
        kind = "whole number" if whole else "number"
        wanted = f"a {kind} >= 0" if allow_zero else f"a positive {kind}"
        if at_most is not None:
            wanted += f" no larger than {at_most:g}"
        raise ConfigError(
            f"setting {name} = {value!r} is not {wanted} "
            f"(SOURCES__CLOSE_SMS__{name.upper()} or [sources.close_sms] in .dlt/config.toml)"
        )


def _parse_start_date(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(
            f"start_date {value!r} is not a date (use YYYY-MM-DD; --start-date or "
            "SOURCES__CLOSE_SMS__START_DATE)"
        ) from None
