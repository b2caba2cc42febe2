"""Render models/sources.yml, close-sms's dataset as dbt sources, from the data dictionary.

Descriptions come from sql/dictionary.yml; the tests and the freshness check are declared here.
Regenerate after changing either: `python examples/dbt/generate_sources.py`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from close_sms.warehouse.dictionary import Relation, load_dictionary
from close_sms.warehouse.ledger import LEDGER_TABLE, SUCCESS

HERE = Path(__file__).resolve().parent
DICTIONARY = HERE.parents[1] / "sql" / "dictionary.yml"
SOURCES = HERE / "models" / "sources.yml"
SOURCE_NAME = "close_sms"
# On DuckDB the dataset is the attached file (profiles.yml), on PostgreSQL the target database.
DATABASE = "{{ 'close_sms_warehouse' if target.type == 'duckdb' else target.database }}"
HEADER = (
    "# Generated from sql/dictionary.yml by `python examples/dbt/generate_sources.py`:\n"
    "# change the dictionary or that script, not this file.\n"
)
# The tag of tests on the context tables, which only a sync with context loads:
# `dbt build --exclude tag:context` leaves them out.
CONTEXT_TAG = "context"
# The sms columns that point at a context table's id.
CONTEXT_REFERENCES = {
    "user_id": "users",
    "lead_id": "leads",
    "contact_id": "contacts",
    "template_id": "sms_templates",
}
KEY = ["unique", "not_null"]


def references(table: str, column: str, tags: list[str] | None = None) -> dict[str, Any]:
    """dbt's relationships test: every non-null value is a `column` of `table`."""
    test: dict[str, Any] = {
        "arguments": {"to": f"source('{SOURCE_NAME}', '{table}')", "field": column}
    }
    if tags:
        test["config"] = {"tags": tags}
    return {"relationships": test}


# dbt's built-in tests only: the project needs no packages, so no network.
COLUMN_TESTS: dict[str, dict[str, list[Any]]] = {
    "sms": {
        "id": KEY,
        "_dlt_id": KEY,
        **{
            column: [references(table, "id", [CONTEXT_TAG])]
            for column, table in CONTEXT_REFERENCES.items()
        },
    },
    # dlt links a child row to its parent row and to the root row (the same here: one level).
    "sms__attachments": {
        "_dlt_id": KEY,
        "_dlt_parent_id": ["not_null", references("sms", "_dlt_id")],
        "_dlt_root_id": ["not_null", references("sms", "_dlt_id")],
    },
    "sms_events": {"id": KEY},
    LEDGER_TABLE: {"run_id": KEY},
    **{table: {"id": KEY} for table in CONTEXT_REFERENCES.values()},
}
# The last successful sync: cron runs it every few minutes (docs/operations.md).
TABLE_CONFIG: dict[str, dict[str, Any]] = {
    LEDGER_TABLE: {
        "loaded_at_field": "ended_at",
        "freshness": {
            "warn_after": {"count": 30, "period": "minute"},
            "error_after": {"count": 2, "period": "hour"},
            "filter": f"outcome = '{SUCCESS}'",
        },
    },
    **{table: {"tags": [CONTEXT_TAG]} for table in CONTEXT_REFERENCES.values()},
}


def source_table(name: str, relation: Relation | None) -> dict[str, Any]:
    """One table of the source: its description, config and columns with their tests."""
    table: dict[str, Any] = {"name": name}
    if relation is not None:
        table["description"] = relation.description
    config = dict(TABLE_CONFIG.get(name, {}))
    if relation is not None and relation.kind == "VIEW":
        config["meta"] = {"relation": "view"}
    if config:
        table["config"] = config
    tests = COLUMN_TESTS.get(name, {})
    described = relation.columns if relation is not None else {}
    columns = []
    # Tested columns the dictionary does not describe yet (a context table) come last.
    for column in [*described, *(c for c in tests if c not in described)]:
        entry: dict[str, Any] = {"name": column}
        if described.get(column):
            entry["description"] = described[column]
        if column in tests:
            # A fresh list each time: YAML would write a shared one as an anchor and aliases.
            entry["data_tests"] = list(tests[column])
        columns.append(entry)
    if columns:
        table["columns"] = columns
    return table


def render_sources(dictionary: Mapping[str, Relation]) -> str:
    """models/sources.yml: every described table and view, and the context tables."""
    names = [*dictionary, *(t for t in CONTEXT_REFERENCES.values() if t not in dictionary)]
    document = {
        "version": 2,
        "sources": [
            {
                "name": SOURCE_NAME,
                "description": (
                    "The dataset close-sms syncs from Close: SMS, their events, the run "
                    "ledger, dlt's bookkeeping and the views (see docs/tables-and-views.md)."
                ),
                "database": DATABASE,
                "schema": SOURCE_NAME,
                "tables": [source_table(name, dictionary.get(name)) for name in names],
            }
        ],
    }
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)


def main() -> int:
    """Write models/sources.yml from the dictionary."""
    try:
        SOURCES.write_text(render_sources(load_dictionary(DICTIONARY)), encoding="utf-8")
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
