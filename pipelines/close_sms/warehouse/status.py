"""`close-sms status`: what the warehouse holds and where the next sync starts, read through dlt."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from dlt.destinations.exceptions import DatabaseUndefinedRelation

from ..errors import ConfigError
from ..source.state import SourceState
from ..source.timestamps import from_ms
from .destination import Warehouse


def require_warehouse(warehouse: Warehouse) -> None:
    """Refuse to read a DuckDB file that does not exist (reading would create it)."""
    if warehouse.database is not None and not warehouse.database.exists():
        raise ConfigError(
            f"--database: {warehouse.database} does not exist; run `close-sms sync` first"
        )


def read_status(warehouse: Warehouse) -> dict[str, Any]:
    """Last load, feed check and lag, backfill progress, and the rows of each table."""
    require_warehouse(warehouse)
    pipeline = warehouse.pipeline(read_only=True)
    if not pipeline.state.get("sources"):
        # The local folder is only a cache: the state travels with every load.
        pipeline.sync_destination()
    state = SourceState.of(pipeline)
    tables: dict[str, int] = {}
    last_load = None
    with pipeline.sql_client() as sql:
        if sql.has_dataset():
            for name in (
                pipeline.default_schema.data_table_names() if pipeline.default_schema_name else []
            ):
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
    now = datetime.now(timezone.utc)
    plan = state.backfill
    checked = state.feed_checked_at
    return {
        "warehouse": warehouse.describe(),
        "last_successful_load": last_load,
        "events_read_from": state.feed_start(now).isoformat() if plan else None,
        "feed_checked_at": checked.isoformat() if checked else None,
        "behind_seconds": (now - checked).total_seconds() if checked else None,
        "backfill_in_progress": state.backfill_in_progress,
        "backfill_windows_left": len(plan.windows) if plan else 0,
        # Every SMS created from `start` on; `made_at` is where the change feed takes over.
        "backfill_start": plan.start.isoformat() if plan else None,
        "backfill_made_at": plan.made_at.isoformat() if plan else None,
        "backfill_sms_loaded": plan.loaded if plan else None,
        "oldest_pending_window": from_ms(min(w.lower for w in plan.windows)).isoformat()
        if plan and plan.windows
        else None,
        "tables": dict(sorted(tables.items())),
    }
