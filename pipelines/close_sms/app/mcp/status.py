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
from typing import Any

from dlt.common.schema import Schema
from dlt.common.versioned_state import decompress_state

from ...source import settings
from ...source.state import SourceState
from ...warehouse.ledger import SyncRun
from ...warehouse.status import compose_status
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
    return compose_status(warehouse, state, last_run, last_success, last_load, counts)
