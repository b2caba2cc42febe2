"""A load package that a stopped run left partly loaded loads its staged tables again from empty.

dlt writes down that a load job finished in its working folder after the destination committed
the job. A run stopped in between (a full disk, a kill) leaves the job "started", and the next
run loads its file again. For a merge table that is harmless only if the staging table forgets
the first copy, and dlt 1.31 empties staging tables only when a package is first loaded: its
delete-insert merge of a root table with nested tables (`sms`) then inserts both copies of a
row into DuckDB, and on PostgreSQL the second copy breaks staging's unique `_dlt_id` on every
later run. Staging is private to its package until the merge job reads it, so emptying it and
queuing the package's staging jobs again (merge jobs dropped, dlt makes them anew) is always
exact, however far the stopped run got.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination.client import WithStagingDataset
from dlt.common.schema.typing import PIPELINE_STATE_TABLE_NAME
from dlt.common.storages import (
    LoadJobInfo,
    LoadPackageInfo,
    NormalizeStorage,
    NormalizeStorageConfiguration,
    PackageStorage,
)
from dlt.destinations.exceptions import DatabaseUndefinedRelation

# The file format of the jobs dlt's loader adds (merges of staged tables), as against the
# data files normalize wrote.
FOLLOWUP_FORMAT = "sql"


def drop_normalized_extracts(pipeline: dlt.Pipeline) -> list[str]:
    """Delete the extracted packages that dlt normalized already; their load ids.

    Normalize renames the package it made into place, atomically, then deletes the extracted
    one. A run stopped in between leaves both, and every later run would normalize the extract
    again and fail on the package in place ("Directory not empty"). Call it before
    `pipeline.normalize()` resumes pending packages.
    """
    done = {*pipeline.list_normalized_load_packages(), *pipeline.list_completed_load_packages()}
    leftovers = [load_id for load_id in pipeline.list_extracted_load_packages() if load_id in done]
    if leftovers:
        # The folder dlt's pipeline normalizes in.
        volume = os.path.join(pipeline.working_dir, "normalize")
        storage = NormalizeStorage(False, NormalizeStorageConfiguration(volume))
        for load_id in leftovers:
            storage.extracted_packages.delete_package(load_id)
    return leftovers


def restage_partly_loaded_packages(pipeline: dlt.Pipeline) -> None:
    """Empty the staging tables of each partly loaded package and queue its staging jobs again.

    Call it before `pipeline.load()` resumes pending packages.
    """
    for load_id in pipeline.list_normalized_load_packages():
        package = pipeline.get_load_package_info(load_id)
        with pipeline.destination_client(package.schema_name) as client:
            _forget_started_state_rows(package, client)
            if not isinstance(client, WithStagingDataset):
                continue
            staged = list(_staged_jobs(package, client))
            if not any(_has_run(job) for job in staged):
                # Staging holds nothing of this package yet; dlt empties it before the first job.
                continue
            tables = {
                job.job_file_info.table_name
                for job in staged
                if job.job_file_info.file_format != FOLLOWUP_FORMAT
            }
            with client.with_staging_dataset():
                client.initialize_storage(truncate_tables=sorted(tables))
        # Only after staging is empty: a stop in between finds the package partly loaded again.
        _queue_again(Path(package.package_path), staged)


def _forget_started_state_rows(package: LoadPackageInfo, client: Any) -> None:
    """Delete the package's row of dlt's state when its job may have committed unrecorded.

    dlt appends that row with no merge: loaded again, DuckDB kept two copies, and PostgreSQL's
    unique `_dlt_id` refused the run and every later one. The row is the package's alone.
    """
    started = [
        job
        for job in package.jobs.get("started_jobs", [])
        if job.job_file_info.table_name == PIPELINE_STATE_TABLE_NAME
    ]
    if not started:
        return
    sql = client.sql_client
    table = sql.make_qualified_table_name(PIPELINE_STATE_TABLE_NAME)
    with suppress(DatabaseUndefinedRelation):
        sql.execute_sql(f"DELETE FROM {table} WHERE _dlt_load_id = %s", package.load_id)


def _staged_jobs(package: LoadPackageInfo, client: WithStagingDataset) -> Iterator[LoadJobInfo]:
    for jobs in package.jobs.values():
        for job in jobs:
            if job.state != "failed_jobs" and client.should_load_data_to_staging_dataset(
                job.job_file_info.table_name
            ):
                yield job


def _has_run(job: LoadJobInfo) -> bool:
    """Whether the job may have written to staging, or merged it."""
    return (
        job.state != "new_jobs"
        or job.job_file_info.retry_count > 0
        or job.job_file_info.file_format == FOLLOWUP_FORMAT
    )


def _queue_again(package_path: Path, jobs: list[LoadJobInfo]) -> None:
    """Data jobs back to new, merge jobs gone, and dlt's notes of their outcomes with them."""
    new_jobs = package_path / PackageStorage.NEW_JOBS_FOLDER
    outcomes = package_path / PackageStorage.PENDING_TRANSITIONS_FOLDER
    for job in jobs:
        name = os.path.basename(job.file_path)
        if job.job_file_info.file_format == FOLLOWUP_FORMAT:
            os.remove(job.file_path)
        elif job.state != "new_jobs":
            os.replace(job.file_path, new_jobs / name)
        (outcomes / name).unlink(missing_ok=True)
