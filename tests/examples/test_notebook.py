"""examples/notebooks/sms_analysis.ipynb, run headless on a real kernel against a synced warehouse."""

from __future__ import annotations

from pathlib import Path

import duckdb
import nbformat
import pytest
from nbclient import NotebookClient

from tests.support import sync

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "sms_analysis.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"
CHART_TITLES = [
    "SMS per day by direction",
    "Weekly delivery failure rate",
    "Top delivery errors",
    "Time to reply per rep",
    "Outbound SMS per template",
    "Conversations awaiting a reply, by days waiting",
]


def test_the_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert [(cell.outputs, cell.execution_count) for cell in code] == [([], None)] * len(code)


def test_the_notebook_answers_every_question_from_a_synced_warehouse(
    emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = emulator(sms=1500, seed=17)
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    # The names the sync loaded into the context tables, read without the notebook.
    with duckdb.connect(str(database), read_only=True) as connection:
        reps = {
            name
            for (name,) in connection.execute(
                "SELECT DISTINCT user_name FROM close_sms.sms WHERE user_name IS NOT NULL"
            ).fetchall()
        }
        templates = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM close_sms.sms_templates"
                " WHERE id IN (SELECT template_id FROM close_sms.sms WHERE direction = 'outbound')"
            ).fetchall()
        }
        has_opt_outs = connection.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = 'sms_opt_outs'"
        ).fetchone()[0]
    assert reps and templates
    monkeypatch.setenv("CLOSE_SMS_DATABASE", str(database))
    monkeypatch.delenv("SOURCES__CLOSE_SMS__READER_COPY", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            # Raises CellExecutionError on a failing cell, an empty answer's assertion included.
            client.execute_cell(cell, index)
        # The kernel is still running, and has let go of the file: a writer opens it at once.
        with duckdb.connect(str(database)) as writer:
            writer.execute("CHECKPOINT")

    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    charts = [output.data[PLOTLY] for output in outputs if PLOTLY in output.get("data", {})]
    titles = [chart["layout"]["title"]["text"] for chart in charts]
    assert titles[: len(CHART_TITLES)] == CHART_TITLES
    for chart in charts:
        assert chart["layout"]["xaxis"]["title"]["text"]
        assert chart["layout"]["yaxis"]["title"]["text"]
        assert chart["layout"]["showlegend"] is True
        assert any(trace.get("name") for trace in chart["data"])
    # Reps and templates by name, not by id.
    by_title = {chart["layout"]["title"]["text"]: chart for chart in charts}
    shown_reps = {x for trace in by_title["Time to reply per rep"]["data"] for x in trace["x"]}
    # Medians of minutes beside 90th percentiles of days: both visible only on a log axis.
    assert by_title["Time to reply per rep"]["layout"]["yaxis"]["type"] == "log"
    shown_templates = {
        x for trace in by_title["Outbound SMS per template"]["data"] for x in trace["x"]
    }
    assert shown_reps and shown_reps <= reps
    assert shown_templates == templates
    printed = "".join(output.get("text", "") for output in outputs)
    assert f"Reading {database}" in printed
    assert has_opt_outs
    if "No opt-outs" not in printed:
        assert "Opt-outs per week by keyword" in titles
        sends = by_title["SMS sent after an opt-out per week: delivered, or refused by the carrier"]
        outcomes = {trace["name"] for trace in sends["data"]}
        assert outcomes == {"delivered_after_opt_out", "refused_after_opt_out"}
