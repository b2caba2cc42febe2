"""The close-sms source as Dagster assets, through the `dagster-dlt` integration.

It is the same dlt source as the `close-sms` command and examples/plain_pipeline.py, loading
the tables `sms` (with its child table `sms__attachments`), `sms_events` and the context tables
(`users`, `lead_statuses`, `sms_templates`, `phone_numbers`, `leads`, `contacts`) into DuckDB:

    pip install -e '.[dagster]'   # dagster, dagster-dlt and dagster-webserver, pinned
    SOURCES__CLOSE_SMS__API_KEY=api_xxx dagster dev -f examples/dagster_definitions.py

`SOURCES__CLOSE_SMS__BASE_URL` points it at another API root; `CLOSE_SMS_DAGSTER_DATABASE`
names the DuckDB file (default: dagster_warehouse.duckdb in the working directory). Give it a
database of its own: its dlt pipeline keeps its own state there. The command's SQL views come
with `close-sms views --database dagster_warehouse.duckdb`.

One materialization is one `close-sms sync`: the first backfills (in chunks of
`max_sms`) and then reads the change feed; later ones read only the feed. The launchpad's
`reconcile: true` backfills again and deletes the rows whose SMS Close no longer returns.

The source has three dlt resources: `sms_backfill` and `sms_changes` both write `sms`, and
`sms_changes` reads the events `sms_events` loads. dagster-dlt would make an asset of each, and
materializing one alone would load events without the SMS they name. So the assets here are
the tables, and they are only materialized together (the context tables are named by the SMS
of the same run).
"""

# No `from __future__ import annotations`: Dagster reads the config class from the annotation.
import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData

from close_sms import SyncProgress, close_sms_source

PIPELINE = dlt.pipeline(
    pipeline_name="close_sms_dagster",
    destination=dlt.destinations.duckdb(
        os.environ.get("CLOSE_SMS_DAGSTER_DATABASE", "dagster_warehouse.duckdb")
    ),
    dataset_name="close_sms",
)

TABLES = {
    "sms": "Close SMS activities, merged on id (attachments in sms__attachments).",
    "sms_events": "Close's event log entries for SMS, merged on id.",
    "users": "Every user of the organization, inactive ones included.",
    "lead_statuses": "The organization's lead statuses.",
    "sms_templates": "The organization's SMS templates.",
    "phone_numbers": "The organization's phone numbers, a user's or a group's.",
    "leads": "The leads the SMS name, kept current from the event log.",
    "contacts": "The contacts the SMS name, kept current from the event log.",
}


class CloseSmsTranslator(DagsterDltTranslator):
    """One asset per table, `close_sms/<table>`, rather than one per dlt resource."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        table = str(data.resource.table_name)
        return (
            super()
            .get_asset_spec(data)
            .replace_attributes(
                key=dg.AssetKey(["close_sms", table]), deps=[], description=TABLES[table]
            )
        )


class CloseSmsConfig(dg.Config):
    """Run settings, editable in the launchpad."""

    reconcile: bool = False
    # The most SMS one dlt run backfills (None: the whole backfill in one run).
    max_sms: int | None = 50_000


@dlt_assets(
    # Only for the asset specs, so no key is needed to load the definitions: one resource per
    # table. Every run makes a new source with the key from SOURCES__CLOSE_SMS__API_KEY.
    dlt_source=close_sms_source(api_key="unused").with_resources(
        "sms_backfill", "sms_events", *TABLES.keys() - {"sms", "sms_events"}
    ),
    dlt_pipeline=PIPELINE,
    name="close_sms",
    group_name="close_sms",
    dagster_dlt_translator=CloseSmsTranslator(),
)
def close_sms_assets(
    context: dg.AssetExecutionContext, dlt_resource: DagsterDltResource, config: CloseSmsConfig
) -> Iterator[Any]:
    if context.is_subset:
        raise dg.Failure("materialize every close_sms asset together")
    reconcile = config.reconcile
    while True:
        progress = SyncProgress()
        source = close_sms_source(reconcile=reconcile, max_sms=config.max_sms, progress=progress)
        # dagster-dlt passes these to pipeline.run(); DuckDB loads parquet fastest.
        results = list(
            dlt_resource.run(context=context, dlt_source=source, loader_file_format="parquet")
        )
        context.log.info(
            f"close-sms {progress.mode}: {progress.backfill_sms} SMS backfilled, "
            f"{progress.events} events, {progress.upserted} SMS updated, {progress.deleted} deleted"
        )
        # A backfill chunk is followed by the next one, and the last by a change-feed read.
        if progress.mode == "incremental":
            break
        reconcile = False
    # Dagster records one materialization per asset: the last dlt run's load info.
    yield from results


defs = dg.Definitions(
    assets=[close_sms_assets],
    resources={"dlt_resource": DagsterDltResource()},
    schedules=[
        dg.ScheduleDefinition(
            name="close_sms_hourly", target=close_sms_assets, cron_schedule="0 * * * *"
        )
    ],
)
