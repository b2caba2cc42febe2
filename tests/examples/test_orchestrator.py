"""examples/dagster_definitions.py, materialized for real in-process against the emulator."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
import duckdb
import pytest

from tests.support import backfill_pages, mismatches

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dagster_definitions.py"
ASSETS = {
    dg.AssetKey(["close_sms", table])
    for table in ("sms", "sms_events", "users", "lead_statuses", "sms_templates")
    + ("phone_numbers", "leads", "contacts")
}


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the example loads; dlt's and Dagster's own folders go under tmp_path too."""
    path = tmp_path / "dagster_warehouse.duckdb"
    for name, value in {
        "CLOSE_SMS_DAGSTER_DATABASE": str(path),
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster").mkdir()
    for name in ("SOURCES__CLOSE_SMS__API_KEY", "SOURCES__CLOSE_SMS__BASE_URL", "CLOSE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return path


def load_example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import the example by path (examples/ is no package), fresh for each test."""
    spec = importlib.util.spec_from_file_location("close_sms_dagster_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def sms_ids(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return {row[0] for row in connection.execute("SELECT id FROM close_sms.sms").fetchall()}


def messages(instance, result) -> list[str]:
    """What the run logged of its dlt runs (the example logs one line per dlt run)."""
    return [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.user_message.startswith("close-sms ")
    ]


def example_on(running: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ModuleType]:
    """The example, loaded with its source pointed at `running` the dlt way."""
    monkeypatch.setenv("SOURCES__CLOSE_SMS__API_KEY", running.api_key)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__BASE_URL", running.base_url)
    return running, load_example(monkeypatch)


def test_definitions_load_without_a_key(database: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_example(monkeypatch)

    dg.Definitions.validate_loadable(example.defs)
    assert set(example.close_sms_assets.keys) == ASSETS
    assert [schedule.name for schedule in example.defs.schedules] == ["close_sms_hourly"]


def test_materialize_backfills_then_reads_the_change_feed(
    emulator, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, example = example_on(emulator(sms=300, seed=5), monkeypatch)
    instance = dg.DagsterInstance.ephemeral()

    def materialize() -> None:
        result = dg.materialize(
            [example.close_sms_assets], resources=example.defs.resources, instance=instance
        )
        assert result.success
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        assert materialized == ASSETS

    materialize()

    snapshot = running.emu.snapshot()
    assert sms_ids(database) == set(snapshot)
    assert mismatches(database, snapshot) == []

    gone = sorted(snapshot)[7]
    running.emu.delete_sms(gone)
    running.emu.clock.advance(120)
    requests_before = len(running.emu.request_log)

    materialize()

    assert backfill_pages(running, requests_before) == []  # the change feed, no new backfill
    assert gone not in sms_ids(database)
    assert sms_ids(database) == set(running.emu.snapshot()) == set(snapshot) - {gone}
    assert mismatches(database, running.emu.snapshot()) == []


def test_a_chunked_backfill_finishes_in_one_materialization(
    emulator, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A chunk stops once it holds 100 SMS, so it holds at most 199: ~490 SMS take 3 or more.
    running, example = example_on(emulator(sms=500, seed=7), monkeypatch)
    instance = dg.DagsterInstance.ephemeral()

    result = dg.materialize(
        [example.close_sms_assets],
        resources=example.defs.resources,
        instance=instance,
        run_config={"ops": {"close_sms": {"config": {"max_sms": 100}}}},
    )

    assert result.success
    logged = messages(instance, result)
    assert len([m for m in logged if m.startswith("close-sms backfill")]) >= 3
    assert logged[-1].startswith("close-sms incremental")
    assert sms_ids(database) == set(running.emu.snapshot())


def test_one_table_alone_is_refused(
    emulator, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, example = example_on(emulator(sms=50, seed=6), monkeypatch)

    result = dg.materialize(
        [example.close_sms_assets],
        resources=example.defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection=[dg.AssetKey(["close_sms", "sms_events"])],
        raise_on_error=False,
    )

    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "together" in failure.step_failure_data.error.message
    assert not database.exists()
    assert running.emu.request_log == []
