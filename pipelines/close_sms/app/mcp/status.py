"""`sync_status` read from the database alone: what `close-sms status --json` reports.

`close-sms status` goes through a dlt pipeline, which reads dlt's settings and writes its
working folder; a read-only server does neither. It reads what the pipeline would restore (the
source's state, the schema's tables, the last load) and the run ledger straight from the
dataset's tables (`statements.status_statements`), and reports them as `read_status` of
`warehouse.status` does. Runs that could not write the ledger wait in the sync's local journal,
which the server does not read: they appear once a later run writes them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from dlt.common.schema import Schema
from dlt.common.versioned_state import decompress_state

from ...source import settings
from ...source.state import SourceState
from ...source.timestamps import from_ms
from ...warehouse.ledger import SyncRun
from . import Unanswerable
from .statements import RUN_COLUMNS

# DuckDB's answer when a table is not there: a dataset without dlt's or the ledger's tables.
MISSING_TABLE = "Catalog Error"


def statement_rows(results: dict[str, Any], name: str) -> list[list[Any]]:
    """The rows of statement `name`; none when its table is missing, else its error raised."""
    result = results[name]
    if "error" not in result:
        return result["rows"]
    if result["error"].startswith(MISSING_TABLE):
        return []
    raise Unanswerable(result["error"])


def data_tables(results: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """The tables of the pipeline's default schema that hold data and exist, as dlt lists them."""
    schemas = dict(statement_rows(results, "schemas"))
    stored = schemas.get(state.get("default_schema_name"))
    if stored is None:
        return []
    present = {name for (name,) in statement_rows(results, "tables")}
    return [t for t in Schema.from_dict(json.loads(stored)).data_table_names() if t in present]


def source_state(results: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's state as the newest completed load stored it; empty before any load."""
    found = statement_rows(results, "state")
    return decompress_state(found[0][0]) if found else {}


def status_report(
    warehouse: str, results: dict[str, Any], counts: dict[str, int]
) -> dict[str, Any]:
    """`close-sms status --json`'s report from the statements' `results` and the row `counts`."""
    state = SourceState.read(source_state(results).get("sources", {}).get(settings.SOURCE_NAME, {}))
    last_run, last_success = (
        SyncRun.from_row(dict(zip(RUN_COLUMNS, found[0], strict=True))) if found else None
        for found in (statement_rows(results, "last_run"), statement_rows(results, "last_success"))
    )
    ((last_load,),) = statement_rows(results, "last_load") or [[None]]
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
        "backfill_start": plan.start.isoformat() if plan else None,
        "backfill_made_at": plan.made_at.isoformat() if plan else None,
        "backfill_sms_loaded": plan.loaded if plan else None,
        "oldest_pending_window": from_ms(min(w.lower for w in plan.windows)).isoformat()
        if plan and plan.windows
        else None,
        "last_run": last_run and last_run.to_json(),
        "last_successful_run": last_success and last_success.to_json(),
        "tables": dict(sorted(counts.items())),
    }
