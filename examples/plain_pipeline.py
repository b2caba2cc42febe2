"""The close-sms source in a plain dlt pipeline, without the `close-sms` command.

Copy this into your own project or orchestrator. Each run is a complete sync: the first one
backfills, later ones read Close's change feed (and reconcile by themselves when their last
read is older than the event log's 30 days).

    # DuckDB: writes close_sms_example.duckdb in the working directory
    SOURCES__CLOSE_SMS__API_KEY=api_xxx python examples/plain_pipeline.py

    # PostgreSQL
    DESTINATION__POSTGRES__CREDENTIALS=postgresql://loader:secret@db.internal:5432/analytics \\
    SOURCES__CLOSE_SMS__API_KEY=api_xxx python examples/plain_pipeline.py postgres

`python examples/plain_pipeline.py postgres --reconcile` backfills again and deletes the rows
whose SMS Close no longer returns.
"""

from __future__ import annotations

import sys

import dlt

from close_sms import backfill_in_progress, close_sms_source

# A backfill reads at most this many SMS per load: memory stays bounded, and a run that is
# killed resumes after its last loaded chunk.
CHUNK = 50_000

# DuckDB loads parquet in a third of the time of dlt's default insert statements.
LOADER_FILE_FORMATS = {"duckdb": "parquet"}


def main(destination: str = "duckdb", reconcile: bool = False) -> None:
    pipeline = dlt.pipeline(
        pipeline_name="close_sms_example", destination=destination, dataset_name="close_sms"
    )
    while True:
        info = pipeline.run(
            close_sms_source(max_sms=CHUNK, reconcile=reconcile),
            loader_file_format=LOADER_FILE_FORMATS.get(destination),
        )
        print(info)
        # A reconcile is asked for once; the runs that follow continue it.
        reconcile = False
        if not backfill_in_progress(pipeline):
            break


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(
        destination=next((a for a in arguments if not a.startswith("--")), "duckdb"),
        reconcile="--reconcile" in arguments,
    )
