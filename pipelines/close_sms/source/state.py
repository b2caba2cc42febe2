"""The source's state, typed: the backfill plan, the change feed's last check, the privacy mode,
and what the context tables (users, leads, ...) last read.

dlt keeps it in the pipeline state, in the destination with every load; this module is the
only one that reads or writes it, and the only one that decides from it what a run does.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dlt

from . import settings
from .sms.backfill import Window
from .timestamps import parse_timestamp, to_ms

_PRIVACY_KEY = "privacy"
_CONTEXT_KEY = "context"


@dataclass
class BackfillPlan:
    """A backfill of every SMS with `date_created >= start`: what is left to read.

    `made_at` is Close's clock when the plan was made. It splits the range into a bounded pass
    [start, made_at) and an open-ended one for SMS dated later (future-dated imports), and it
    is where the change feed takes over once the plan is done; it bounds nothing else.
    """

    start: datetime
    made_at: datetime
    reconcile: bool
    # The load id of the package the plan was made in: every load of this plan has this one or
    # a newer one, so rows in its range with an older one were not returned by Close again.
    load_id: str
    windows: list[Window] = field(default_factory=list)
    loaded: int = 0
    complete: bool = False

    @classmethod
    def new(cls, start: datetime, now: datetime, reconcile: bool) -> BackfillPlan:
        """A plan made while dlt extracts a load package (its load id dates the plan)."""
        now = now.replace(microsecond=0)
        windows = [Window(to_ms(now), settings.OPEN_END_MS)]
        if start < now:
            windows.append(Window(to_ms(start), to_ms(now)))
        return cls(start, now, reconcile, dlt.current.load_package_state()["load_id"], windows)

    @property
    def removals_due(self) -> bool:
        """A reconcile has read its whole range and not yet removed what Close did not return."""
        return self.reconcile and not self.windows and not self.complete

    @property
    def in_progress(self) -> bool:
        return bool(self.windows) or self.removals_due

    def to_state(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "made_at": self.made_at.isoformat(),
            "reconcile": self.reconcile,
            "load_id": self.load_id,
            "windows": [window.to_state() for window in self.windows],
            "loaded": self.loaded,
            "complete": self.complete,
        }

    @classmethod
    def from_state(cls, value: Mapping[str, Any]) -> BackfillPlan:
        return cls(
            start=parse_timestamp(value["start"]),
            # Plans of earlier versions ended their range at the time they were made.
            made_at=parse_timestamp(value.get("made_at") or value["end"]),
            reconcile=bool(value["reconcile"]),
            # Earlier versions kept it as `created`, some as time.time(): it compares the same way.
            load_id=str(value["load_id"] if "load_id" in value else value["created"]),
            windows=[Window.from_state(window) for window in value["windows"]],
            loaded=int(value["loaded"]),
            complete=bool(value["complete"]),
        )


@dataclass(frozen=True)
class CustomField:
    """A lead custom field a setting names, as Close defines it: its id, type and column."""

    name: str
    id: str
    type: str
    multiple: bool
    column: str


@dataclass
class ContextState:
    """What the context tables remember: when each small table was read, the lead and contact
    events' last check, and the lead custom fields resolved to Close's ids."""

    # Table name -> Close's clock when its full list was last read.
    refreshed: dict[str, datetime] = field(default_factory=dict)
    # When the leads and contacts were last made current with the lead and contact events.
    checked_at: datetime | None = None
    custom_fields: list[CustomField] = field(default_factory=list)
    # The `context_refresh_minutes` (in seconds) of the last read of a small table, so that a
    # reader of the state knows how old a small table may be by design.
    refresh_seconds: float | None = None

    def refresh_due(self, table: str, now: datetime, interval: timedelta) -> bool:
        """Whether `table` is read again: never read, or read `interval` ago or longer."""
        last = self.refreshed.get(table)
        return last is None or now - last >= interval

    def follows_events(self, now: datetime) -> bool:
        """Whether the lead and contact events since the last check still cover every change."""
        horizon = now - timedelta(days=settings.EVENT_RETENTION_DAYS - settings.HORIZON_SAFETY_DAYS)
        return self.checked_at is not None and self.checked_at >= horizon

    def events_since(self) -> datetime:
        """Where the next read of lead and contact events starts (see `feed_start`)."""
        assert self.checked_at is not None, "follows_events() comes first"
        return self.checked_at - timedelta(seconds=settings.EVENT_LOOKBACK_SECONDS)

    def check_due(self, now: datetime) -> bool:
        """Whether a read that found no events records its check (see FEED_CHECKPOINT_SECONDS)."""
        return self.checked_at is None or now - self.checked_at >= timedelta(
            seconds=settings.FEED_CHECKPOINT_SECONDS
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "refreshed": {name: at.isoformat() for name, at in self.refreshed.items()},
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "custom_fields": [
                [cf.name, cf.id, cf.type, cf.multiple, cf.column] for cf in self.custom_fields
            ],
            "refresh_seconds": self.refresh_seconds,
        }

    @classmethod
    def from_state(cls, value: Mapping[str, Any]) -> ContextState:
        checked = value.get("checked_at")
        return cls(
            refreshed={
                name: parse_timestamp(at) for name, at in (value.get("refreshed") or {}).items()
            },
            checked_at=parse_timestamp(checked) if checked else None,
            custom_fields=[
                CustomField(str(n), str(i), str(t), bool(m), str(c))
                for n, i, t, m, c in value.get("custom_fields") or []
            ],
            refresh_seconds=value.get("refresh_seconds"),
        )


@dataclass
class SourceState:
    """Everything the source remembers between runs."""

    backfill: BackfillPlan | None = None
    feed_checked_at: datetime | None = None
    # The privacy mode the data was loaded with (see `Privacy.enforce`); None: not recorded.
    privacy_mode: dict[str, Any] | None = None
    context: ContextState = field(default_factory=ContextState)

    @classmethod
    def read(cls, state: Mapping[str, Any]) -> SourceState:
        plan = state.get("backfill")
        checked = state.get("feed_checked_at")
        privacy_mode = state.get(_PRIVACY_KEY)
        context = state.get(_CONTEXT_KEY)
        return cls(
            backfill=BackfillPlan.from_state(plan) if plan else None,
            feed_checked_at=parse_timestamp(checked) if checked else None,
            privacy_mode=dict(privacy_mode) if privacy_mode else None,
            context=ContextState.from_state(context) if context else ContextState(),
        )

    @classmethod
    def of(cls, pipeline: dlt.Pipeline) -> SourceState:
        """The state as a pipeline holds it after its last extract (or restore)."""
        return cls.read(pipeline.state.get("sources", {}).get(settings.SOURCE_NAME, {}))

    def write(self, state: MutableMapping[str, Any]) -> None:
        if self.backfill is not None:
            state["backfill"] = self.backfill.to_state()
        if self.feed_checked_at is not None:
            state["feed_checked_at"] = self.feed_checked_at.isoformat()
        if self.privacy_mode is not None:
            state[_PRIVACY_KEY] = dict(self.privacy_mode)
        if self.context != ContextState():
            state[_CONTEXT_KEY] = self.context.to_state()

    @property
    def backfill_in_progress(self) -> bool:
        return self.backfill is not None and self.backfill.in_progress

    def next_backfill(
        self,
        now: datetime,
        start_date: datetime | None,
        reconcile: bool,
        reconcile_interval: timedelta | None = None,
    ) -> tuple[BackfillPlan | None, str]:
        """The backfill this run must start, if any, and why, in words for a person.

        `reconcile_interval` (None: never) starts a reconcile when the last full read is older.
        """
        plan = self.backfill
        start = start_date or (plan.start if plan else parse_timestamp(settings.DEFAULT_START_DATE))
        horizon = now - timedelta(days=settings.EVENT_RETENTION_DAYS - settings.HORIZON_SAFETY_DAYS)
        if plan is None:
            return BackfillPlan.new(start, now, reconcile=False), "first run"
        if reconcile and not (plan.reconcile and plan.in_progress):
            return BackfillPlan.new(start, now, reconcile=True), "reconcile requested"
        if plan.in_progress:
            if plan.made_at < horizon:
                return (
                    BackfillPlan.new(start, now, reconcile=True),
                    "the unfinished backfill is older than the event log's history",
                )
            return None, ""
        # A completed backfill is as good as a feed read at the time it was made.
        checked = max(self.feed_checked_at or plan.made_at, plan.made_at)
        if checked < horizon:
            return (
                BackfillPlan.new(start, now, reconcile=True),
                f"the last change-feed read {checked.isoformat()} is beyond the event log's "
                f"{settings.EVENT_RETENTION_DAYS} days",
            )
        if reconcile_interval is not None and now - plan.made_at >= reconcile_interval:
            return (
                BackfillPlan.new(start, now, reconcile=True),
                f"the last full read began {plan.made_at:%Y-%m-%d %H:%M} UTC, more than "
                f"{reconcile_interval.total_seconds() / 86400:g} days ago (reconcile_interval_days)",
            )
        return None, ""

    def feed_start(self, now: datetime) -> datetime:
        """Where the change feed starts: the last check (else the backfill's end) minus the lookback.

        Not the newest event seen, as `dlt.sources.incremental` would keep: the actions are read
        one after another, so a later action's newer events say nothing of the changes an earlier
        action's query ran too soon to see.
        """
        marks = [self.backfill.made_at if self.backfill else now]
        if self.feed_checked_at:
            marks.append(self.feed_checked_at)
        return max(marks) - timedelta(seconds=settings.EVENT_LOOKBACK_SECONDS)

    def feed_check_due(self, now: datetime) -> bool:
        """Whether a run that found no events records its check (see FEED_CHECKPOINT_SECONDS)."""
        if self.feed_checked_at is None:
            return True
        return now - self.feed_checked_at >= timedelta(seconds=settings.FEED_CHECKPOINT_SECONDS)
