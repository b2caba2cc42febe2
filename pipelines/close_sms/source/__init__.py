"""The dlt source: Close SMS activities, their attachments and their events, merged on `id`.

`dlt.pipeline(...).run(close_sms_source())` is a complete sync on its own. Each run decides from
the source's state what to do:

- the first run, a `reconcile=True` run, or one whose last change-feed read is past the event
  log's 30 days backfills: it pages `/activity/sms/` through `date_created` windows, saving the
  windows left after every page. `max_sms` bounds the SMS one run reads; the next run resumes.
  A reconcile that has read its whole range then deletes the rows Close did not return.
- any other run reads the change feed: the event log since the last check, and the SMS its
  events name, fetched again; the ones Close no longer returns are deleted.

With `context` on (the default) the same run loads what the SMS point to (source/context/):
`users`, `lead_statuses`, `sms_templates` and `phone_numbers` read whole when due, and the
`leads` and `contacts` the SMS name, kept current from the lead and contact events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dlt
from dlt.sources import DltResource, TDataItems

from . import settings
from .api.client import ClientConfig, CloseClient
from .checks import MISSING_KEY, check_arguments, check_positive, hours, parse_start_date
from .context import schema as context_schema
from .context.sync import ContextRun, ContextSettings, Waits
from .privacy import Privacy
from .progress import RunMode, SyncProgress, measure_pending
from .run import Run
from .sms.prefetch import ReaderSettings
from .sms.schema import declare_attachments, event_columns, sms_hints, without_nul
from .state import SourceState

__all__ = [
    "MISSING_KEY",
    "RunMode",
    "SyncProgress",
    "backfill_in_progress",
    "check_positive",
    "close_sms_source",
    "measure_pending",
]


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
    contact_names: str = settings.DEFAULT_CONTACT_NAMES,
    hash_key: str | None = dlt.secrets.value,
    context: bool = True,
    lead_custom_fields: list[str] | None = None,
    context_refresh_minutes: float = settings.CONTEXT_REFRESH_MINUTES,
    progress: SyncProgress | None = None,
) -> Sequence[DltResource]:
    """Close SMS into the tables `sms`, `sms__attachments` and `sms_events`, and what they
    point to into `users`, `lead_statuses`, `sms_templates`, `phone_numbers`, `leads` and
    `contacts`.

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
        contact_names: `keep`, `drop` or `hash` the names and emails of contacts and leads.
        hash_key: the secret key of the hashes (`SOURCES__CLOSE_SMS__HASH_KEY`).
        context: load the context tables (false: SMS only, and no request for the context).
        lead_custom_fields: names of lead custom fields stored as columns of `leads`.
        context_refresh_minutes: how often users, statuses, templates and numbers are read
            again (0: every run); an SMS naming an unknown user or template reads them sooner.
        progress: an object the run fills in as it goes, for callers that report progress.
    """
    # The arguments by name, taken before the body binds a name of its own.
    run, context_settings = _configure(locals())
    waits = Waits()
    resources = _sms_resources(run, waits)
    if context:
        resources += _context_resources(ContextRun(run, context_settings, waits=waits))
    return without_nul(*resources)


def _configure(arguments: Mapping[str, Any]) -> tuple[Run, ContextSettings]:
    """The run that `close_sms_source`'s arguments describe, and its context's settings.

    Every argument is checked first: the first bad one is refused, naming its setting.
    """
    api_keys = check_arguments(arguments)
    context_settings = ContextSettings.configure(
        arguments["context_refresh_minutes"], arguments["lead_custom_fields"]
    )
    privacy = Privacy.configure(
        arguments["hash_phones"],
        arguments["sms_text"],
        arguments["hash_key"],
        arguments["contact_names"],
    )
    base_url = arguments["base_url"]
    progress = arguments["progress"] or SyncProgress()
    client = CloseClient(
        base_url,
        api_keys,
        ClientConfig(
            read_timeout=float(arguments["read_timeout"]),
            max_retries=int(arguments["max_retries"]),
            backoff_max=float(arguments["backoff_max"]),
            on_wait=progress.on_wait,
            on_warning=progress.on_warning,
        ),
    )
    max_sms = arguments["max_sms"]
    run = Run(
        client=client,
        start_date=parse_start_date(arguments["start_date"]),
        reconcile=arguments["reconcile"],
        max_sms=int(max_sms) if max_sms is not None else None,
        reader_settings=ReaderSettings(
            base_url=base_url,
            api_keys=api_keys,
            workers=int(arguments["backfill_workers"]) * len(api_keys),
            max_skip=int(arguments["max_skip"]),
        ),
        prefetch_pages=-(-int(arguments["prefetch_sms"]) // settings.PAGE_SIZE),
        recent_window=hours(arguments["recent_window_hours"]),
        reconcile_interval=hours(float(arguments["reconcile_interval_days"]) * 24),
        max_delete_share=float(arguments["max_delete_share"]),
        allow_mass_delete=bool(arguments["allow_mass_delete"]),
        progress=progress,
        privacy=privacy,
    )
    return run, context_settings


def _sms_resources(run: Run, waits: Waits) -> list[DltResource]:
    """The SMS's resources: the backfill, the change feed's events, and the SMS they name."""

    @dlt.resource(name="sms_backfill", **sms_hints())
    def sms_backfill() -> Iterator[TDataItems]:
        yield from waits.track("sms_backfill", run.backfill())

    @dlt.resource(
        name="sms_events",
        table_name="sms_events",
        write_disposition="merge",
        primary_key="id",
        columns=event_columns(),
    )
    def sms_events() -> Iterator[TDataItems]:
        yield from waits.track("sms_events", waits.hand_over(run.events()))

    @dlt.transformer(data_from=sms_events, name="sms_changes", **sms_hints())
    def sms_changes(events: list[dict[str, Any]]) -> Iterator[TDataItems]:
        yield from waits.changes_done(run.changes(events))

    declare_attachments(dlt.current.source_schema(), sms_backfill.compute_table_schema())
    return [sms_backfill, sms_events, sms_changes]


def _context_resources(context: ContextRun) -> list[DltResource]:
    """The context's resources; each waits for the SMS of this run, which name what it loads."""
    waits = context.waits

    @dlt.resource(name="sms_merged", **sms_hints())
    def sms_merged() -> Iterator[TDataItems]:
        yield from waits.track("sms_merged", context.merged_sms())

    small = [_small_table(context, table) for table in context_schema.SMALL_TABLES]

    @dlt.resource(name="leads", **context_schema.table_hints(context_schema.LEADS))
    def leads() -> Iterator[TDataItems]:
        yield from waits.track("leads", context.leads())

    @dlt.resource(name="contacts", **context_schema.table_hints(context_schema.CONTACTS))
    def contacts() -> Iterator[TDataItems]:
        yield from context.contacts()

    return [sms_merged, *small, leads, contacts]


def _small_table(context: ContextRun, table: str) -> DltResource:
    """The resource of a table read whole when due (`ContextRun.users` and its siblings)."""
    rows = getattr(context, table)

    def read() -> Iterator[TDataItems]:
        yield from rows()

    return dlt.resource(read, name=table, **context_schema.table_hints(table))
