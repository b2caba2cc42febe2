"""`close-sms status`: what the warehouse holds and where the next sync starts, read through dlt."""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from typing import Any

from dlt.destinations.exceptions import DatabaseUndefinedRelation

from ..errors import ConfigError
from ..source import settings
from ..source.context.schema import CONTACTS, LEADS, SMALL_TABLES
from ..source.state import ContextState, SourceState
from ..source.timestamps import from_ms
from .destination import Warehouse
from .ledger import SyncRun, latest_runs


def require_warehouse(warehouse: Warehouse) -> None:
    """Refuse to read a DuckDB file that does not exist (reading would create it)."""
    if warehouse.database is not None and not warehouse.database.exists():
        raise ConfigError(
            f"--database: {warehouse.database} does not exist; run "
            f"`close-sms sync --database {shlex.quote(str(warehouse.database))}` first"
        )


def read_status(warehouse: Warehouse) -> dict[str, Any]:
    """Last load, feed read and lag, backfill progress, last runs, and the rows of each table.

    The lag counts from the last successful read of the change feed: the ledger's, exact, or
    the check recorded in the source's state (up to 15 minutes older on a quiet account).
    """
    require_warehouse(warehouse)
    pipeline = warehouse.pipeline(read_only=True)
    if not pipeline.state.get("sources"):
        # The local folder is only a cache: the state travels with every load.
        pipeline.sync_destination()
    state = SourceState.of(pipeline)
    tables: dict[str, int] = {}
    last_load = None
    last_run = last_success = None
    with pipeline.sql_client() as sql:
        last_run, last_success = latest_runs(warehouse, sql)
        # A dataset without close-sms's schema (views only, or another pipeline's) has no loads.
        if sql.has_dataset() and pipeline.default_schema_name:
            for name in pipeline.default_schema.data_table_names():
                try:
                    ((rows,),) = sql.execute_sql(
                        f"SELECT count(*) FROM {sql.make_qualified_table_name(name)}"
                    )
                except DatabaseUndefinedRelation:
                    continue
                tables[name] = rows
            loads = sql.make_qualified_table_name(pipeline.default_schema.loads_table_name)
            try:
                ((last_load,),) = sql.execute_sql(
                    f"SELECT max(inserted_at) FROM {loads} WHERE status = 0"
                )
            except DatabaseUndefinedRelation:
                last_load = None
    return compose_status(warehouse.describe(), state, last_run, last_success, last_load, tables)


def compose_status(
    warehouse: str,
    state: SourceState,
    last_run: SyncRun | None,
    last_success: SyncRun | None,
    last_load: Any,
    tables: dict[str, int],
) -> dict[str, Any]:
    """The status report (`close-sms status --json`) from what was read of the warehouse."""
    now = datetime.now(timezone.utc)
    plan = state.backfill
    checked = state.feed_checked_at
    read = max(
        (t for t in (checked, last_success and last_success.feed_checked_at) if t), default=None
    )
    return {
        "warehouse": warehouse,
        "last_successful_load": last_load,
        "events_read_from": state.feed_start(now).isoformat() if plan else None,
        "feed_checked_at": checked.isoformat() if checked else None,
        "feed_read_at": read.isoformat() if read else None,
        "behind_seconds": max(0.0, (now - read).total_seconds()) if read else None,
        "backfill_in_progress": state.backfill_in_progress,
        "backfill_windows_left": len(plan.windows) if plan else 0,
        # Every SMS created from `start` on; `made_at` is where the change feed takes over.
        "backfill_start": plan.start.isoformat() if plan else None,
        "backfill_made_at": plan.made_at.isoformat() if plan else None,
        "backfill_sms_loaded": plan.loaded if plan else None,
        "oldest_pending_window": from_ms(min(w.lower for w in plan.windows)).isoformat()
        if plan and plan.windows
        else None,
        "last_run": last_run and last_run.to_json(),
        "last_successful_run": last_success and last_success.to_json(),
        "context_tables": context_ages(state.context, now),
        "tables": dict(sorted(tables.items())),
    }


def context_ages(context: ContextState, now: datetime) -> dict[str, dict[str, Any]]:
    """Each context table's last complete read (Close's clock), its age, and how old it may be
    by design: a small table is read every `context_refresh_minutes`; on a quiet account the
    leads' and contacts' check is recorded every FEED_CHECKPOINT_SECONDS. Tables never read
    (the context off) are left out."""
    reads = {table: context.refreshed.get(table) for table in SMALL_TABLES}
    reads |= dict.fromkeys((LEADS, CONTACTS), context.checked_at)
    allowed = dict.fromkeys(SMALL_TABLES, context.refresh_seconds or 0.0)
    allowed |= dict.fromkeys((LEADS, CONTACTS), float(settings.FEED_CHECKPOINT_SECONDS))
    return {
        table: {
            "read_at": read.isoformat(),
            "age_seconds": max(0.0, (now - read).total_seconds()),
            "allowed_seconds": allowed[table],
        }
        for table, read in reads.items()
        if read is not None
    }
