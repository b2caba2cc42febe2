"""dlt's loaded packages, removed once their rows are in the destination.

A package holds every row it loaded, raw unless the privacy settings hash or drop them, so the
local disk would keep SMS that Close and the warehouse have since deleted. dlt's
`load.delete_completed_jobs` (set by `Warehouse.pipeline`) removes a loaded package's job files;
dlt has no setting that removes the package itself (its failed jobs, schema and state snapshot),
which it keeps in `load/loaded/` forever. Pending packages, which a stopped run resumes from,
are never touched here.
"""

from __future__ import annotations

import shutil

import dlt


def remove_loaded_packages(pipeline: dlt.Pipeline) -> None:
    """Delete every package `pipeline` has completely loaded (or aborted)."""
    for load_id in pipeline.list_completed_load_packages():
        shutil.rmtree(pipeline.get_load_package_info(load_id).package_path)
