"""Loads hand-made SMS, events and context into DuckDB or PostgreSQL with a real dlt pipeline.

The resources carry the project's table hints (source/sms/schema.py, source/context/schema.py),
so the tables, types and nested attachment table are the ones the sync creates.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination import Destination
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.destinations.sql_client import SqlClientBase

from close_sms.source.context.schema import table_hints
from close_sms.source.settings import DATASET_NAME
from close_sms.source.sms.schema import attachment_columns, event_columns, sms_columns

UTC = dt.timezone.utc
DESTINATIONS = ("duckdb", "postgres")
# As the sync loads: PostgreSQL takes no parquet.
LOADER_FILE_FORMATS = {"duckdb": "parquet", "postgres": "csv"}
_pipeline_numbers = itertools.count()


@dlt.source(name="close_sms", root_key=True)
def test_source(
    sms_rows: list[dict[str, Any]],
    event_rows: list[dict[str, Any]],
    context_rows: dict[str, list[dict[str, Any]]],
):
    @dlt.resource(
        name="sms",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key="id",
        columns=sms_columns(),
        nested_hints={"attachments": dlt.mark.make_nested_hints(columns=attachment_columns())},
    )
    def sms():
        if sms_rows:
            yield sms_rows

    @dlt.resource(
        name="sms_events",
        write_disposition="merge",
        primary_key="id",
        columns=event_columns(),
    )
    def sms_events():
        if event_rows:
            yield event_rows

    context = [
        dlt.resource(rows, name=table, **table_hints(table))
        for table, rows in context_rows.items()
        if rows
    ]
    return sms, sms_events, *context


class Loader:
    """One dlt pipeline writing to one destination; call `load` as often as needed."""

    def __init__(self, workdir: Path, destination: Destination) -> None:
        self.workdir = workdir
        self.destination = destination
        self.pipeline = self._pipeline(destination)

    @classmethod
    def duckdb(cls, workdir: Path, database_name: str = "warehouse.duckdb") -> Loader:
        # Not close_sms.duckdb: that catalog name would shadow the close_sms schema.
        return cls(workdir, dlt.destinations.duckdb(str(workdir / database_name)))

    @classmethod
    def postgres(cls, workdir: Path, credentials: str) -> Loader:
        return cls(workdir, dlt.destinations.postgres(credentials))

    @property
    def kind(self) -> str:
        return self.destination.destination_name

    @property
    def database(self) -> Path:
        """The DuckDB file (DuckDB only)."""
        assert self.kind == "duckdb", self.kind
        return Path(self.destination.config_params["credentials"])

    def _pipeline(self, destination: Destination) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=f"views_test_{next(_pipeline_numbers)}",
            pipelines_dir=str(self.workdir / "pipelines"),
            destination=destination,
            dataset_name=DATASET_NAME,
        )

    def load(
        self,
        sms: Iterable[dict[str, Any]] = (),
        events: Iterable[dict[str, Any]] = (),
        context: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """Load rows; `context` maps a context table (`users`, `leads`, ...) to its rows."""
        info = self.pipeline.run(
            test_source(
                [dict(row) for row in sms],
                [dict(row) for row in events],
                {table: [dict(row) for row in rows] for table, rows in (context or {}).items()},
            ),
            loader_file_format=LOADER_FILE_FORMATS[self.kind],
        )
        info.raise_on_failed_jobs()

    def delete(self, *ids: str) -> None:
        """Hard-delete SMS the way the sync does: a tombstone row per id."""
        self.load(sms=[{"id": sms_id, "_deleted": True} for sms_id in ids])

    @contextmanager
    def sql_client(self, read_only: bool = False) -> Iterator[SqlClientBase[Any]]:
        """An open sql client on the dataset; `read_only` opens DuckDB read-only and runs
        PostgreSQL in a read-only session, so a write would fail."""
        pipeline = self.pipeline
        if read_only and self.kind == "duckdb":
            credentials = DuckDbCredentials(str(self.database), read_only=True)
            pipeline = self._pipeline(dlt.destinations.duckdb(credentials))
        with pipeline.sql_client() as sql:
            if read_only and self.kind == "postgres":
                sql.execute_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            yield sql


def sms_row(
    sms_id: str,
    *,
    lead_id: str | None,
    direction: str,
    status: str,
    date_created: dt.datetime,
    date_sent: dt.datetime | None = None,
    activity_at: dt.datetime | None = None,
    user_id: str | None = "user_1",
    user_name: str | None = None,
    remote_phone: str | None = "+15550000001",
    cost: str | None = None,
    error_message: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An SMS shaped like Close's, with what the views read made explicit."""
    row: dict[str, Any] = {
        "id": sms_id,
        "_type": "SMS",
        "organization_id": "orga_test",
        "lead_id": lead_id,
        "contact_id": f"cont_{lead_id}" if lead_id else None,
        "user_id": user_id,
        "user_name": user_name or (f"Name of {user_id}" if user_id else None),
        "users": [user_id] if user_id else [],
        "date_created": date_created,
        "date_updated": date_created,
        "activity_at": activity_at,
        "date_sent": date_sent,
        "date_scheduled": None,
        "direction": direction,
        "status": status,
        "source": "Close.io",
        "text": f"text of {sms_id}",
        "local_phone": "+15559999999",
        "remote_phone": remote_phone,
        "cost": Decimal(cost) if cost is not None else None,
        "error_message": error_message,
        "attachments": attachments or [],
    }
    row.update(extra)
    return row


def attachment(media_id: str, size: int = 1000, content_type: str = "image/jpeg") -> dict:
    return {
        "media_id": media_id,
        "content_type": content_type,
        "filename": f"{media_id}.jpg",
        "size": size,
        "url": f"https://example.invalid/{media_id}",
        "thumbnail_url": None,
    }


def event_row(
    event_id: str,
    object_id: str,
    action: str,
    date_updated: dt.datetime,
    date_created: dt.datetime | None = None,
    lead_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object_type": "activity.sms",
        "object_id": object_id,
        "action": action,
        "date_created": date_created or date_updated,
        "date_updated": date_updated,
        "changed_fields": ["status"] if action == "updated" else [],
        "user_id": "user_1",
        "request_id": f"req_{event_id}",
        "lead_id": lead_id,
        "organization_id": "orga_test",
        "api_key_id": None,
        "meta": {"request_method": "POST"},
    }


def message_at(row: dict[str, Any]) -> dt.datetime:
    """The views' message time, computed in Python."""
    return row["date_sent"] or row["activity_at"] or row["date_created"]


def rows_as_dicts(sql: SqlClientBase[Any], query: str, *args: Any) -> list[dict[str, Any]]:
    with sql.execute_query(query, *args) as cursor:
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def column_names(sql: SqlClientBase[Any], relation: str) -> list[str]:
    """The columns of a table or view of the dataset, in order."""
    rows = sql.execute_sql(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        DATASET_NAME,
        relation,
    )
    return [name for (name,) in rows]
