"""Fields the schema does not declare: the Arrow fast path gives the warehouse row dicts give.

Close keeps adding SMS fields (`import_id`, `caller_id_*`, `agent_*`). Each test loads the
same account twice, once as Arrow tables where they fit and once as row dicts only, and
compares the two datasets column by column and value by value.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
import pytest

from close_sms import close_sms_source
from close_sms.source import settings
from tests.source.test_columnar import _sms_items_by_format
from tests.support import Target

FAST, DICTS = "close_sms", "close_sms_dicts"


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(settings, "ARROW_BATCH_SMS", 200)


def _pipeline(target: Target, workdir: Path, dataset: str) -> dlt.Pipeline:
    destination = (
        dlt.destinations.duckdb(str(target.warehouse.database))
        if target.name == "duckdb"
        else target.name
    )
    return dlt.pipeline(
        pipeline_name=dataset,
        pipelines_dir=str(workdir / "pipelines"),
        destination=destination,
        dataset_name=dataset,
    )


def _load_both_ways(running, target: Target, workdir: Path, monkeypatch) -> dlt.Pipeline:
    """Backfill the account into `FAST` (Arrow where it fits) and `DICTS` (row dicts only)."""
    # One reader: both loads see the SMS in the same order, so a field's first value agrees.
    source_args = {"api_key": running.api_key, "base_url": running.base_url, "backfill_workers": 1}
    with monkeypatch.context() as only_dicts:
        only_dicts.setattr(settings, "ARROW_DESTINATIONS", ())
        dicts = _pipeline(target, workdir, DICTS)
        dicts.run(close_sms_source(**source_args)).raise_on_failed_jobs()
        assert _sms_items_by_format(dicts)["parquet"] == 0
    fast = _pipeline(target, workdir, FAST)
    fast.run(close_sms_source(**source_args)).raise_on_failed_jobs()
    return fast


def _columns(pipeline: dlt.Pipeline, table: str) -> dict[str, dict[str, Any]]:
    """The table's columns in dlt's schema, with the hints that shape the database column."""
    return {
        name: {
            "data_type": column.get("data_type"),
            # Arrow columns say `nullable: true`; inferred ones leave dlt's default, the same.
            "nullable": column.get("nullable") is not False,
            "precision": column.get("precision"),
            "scale": column.get("scale"),
        }
        for name, column in pipeline.default_schema.get_table_columns(table).items()
    }


def _database_columns(target: Target, dataset: str, table: str) -> dict[str, str]:
    rows = target.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{dataset}' AND table_name = '{table}'"
    )
    return dict(rows)


def _rows(target: Target, dataset: str, columns: list[str]) -> list[tuple[Any, ...]]:
    listed = ", ".join(f'"{name}"' for name in columns)
    rows = target.query(f"SELECT {listed} FROM {dataset}.sms ORDER BY id")
    # JSON comes back as text from one file format and parsed from another.
    return [tuple(_comparable(value) for value in row) for row in rows]


def _comparable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value.normalize()
    return value


def _assert_same_warehouse(target: Target, fast: dlt.Pipeline) -> None:
    dicts = dlt.attach(DICTS, pipelines_dir=fast.pipelines_dir)
    for table in ("sms", "sms__attachments"):
        assert _columns(fast, table) == _columns(dicts, table)
        assert _database_columns(target, FAST, table) == _database_columns(target, DICTS, table)
    own = {"_dlt_id", "_dlt_load_id"}
    columns = sorted(set(_database_columns(target, FAST, "sms")) - own)
    assert _rows(target, FAST, columns) == _rows(target, DICTS, columns)


def test_undeclared_scalar_fields_keep_the_fast_path_and_load_as_row_dicts_would(
    emulator, target, tmp_path, monkeypatch, small_batches
):
    running = emulator(sms=1200, seed=71)
    emu = running.emu
    ids = sorted(emu.snapshot())
    late = set(ids[600:603])
    for index, sms_id in enumerate(ids):
        emu.override_raw(
            sms_id,
            {
                "import_id": f"imp_{index}",
                "agent_score": index,
                "agent_flagged": index % 3 == 0,
                "agent_confidence": index / 7,
                # Null in most batches: a column only from the batch that sets it.
                "agent_late_note": "set later" if sms_id in late else None,
            },
        )
    # One SMS's field is text where every other one's is a number: dlt's variant column.
    emu.override_raw(ids[900], {"agent_score": "n/a"})

    fast = _load_both_ways(running, target, tmp_path, monkeypatch)

    by_format = _sms_items_by_format(fast)
    # Every plain SMS outside the batch (200 to 299 SMS) with the odd `agent_score` came as Arrow.
    plain = sum(1 for sms in emu.snapshot().values() if not sms["attachments"])
    assert by_format["parquet"] >= plain - 299
    _assert_same_warehouse(target, fast)
    columns = _columns(fast, "sms")
    assert {name: columns[name]["data_type"] for name in columns if "agent_" in name} | {
        "import_id": columns["import_id"]["data_type"]
    } == {
        "agent_action_reason": "text",
        "agent_config_id": "text",
        "import_id": "text",
        "agent_score": "bigint",
        "agent_score__v_text": "text",
        "agent_flagged": "bool",
        "agent_confidence": "double",
        "agent_late_note": "text",
    }
    assert target.query(
        f"SELECT id FROM {FAST}.sms WHERE agent_late_note = 'set later' ORDER BY id"
    ) == [(sms_id,) for sms_id in sorted(late)]


def test_undeclared_fields_dlt_would_type_otherwise_leave_the_fast_path(
    emulator, target, tmp_path, monkeypatch, small_batches
):
    running = emulator(sms=600, seed=72)
    emu = running.emu
    for index, (sms_id, sms) in enumerate(sorted(emu.snapshot().items())):
        # Text that dlt detects as a timestamp, and a name dlt normalizes.
        fields: dict[str, Any] = {"import_date": "2024-05-01T10:00:00+00:00", "agentMode": "auto"}
        if sms["attachments"]:
            # A nested object: columns of its own.
            fields["agent_meta"] = {"model": "m1", "turns": index}
        else:
            # A number for one SMS and text for the next in the same batch. Only plain SMS
            # carry it: SMS with attachments go to dlt ahead of the batch they were read with,
            # so which type dlt met first would depend on that.
            fields["agent_level"] = index if index % 2 else str(index)
        emu.override_raw(sms_id, fields)

    fast = _load_both_ways(running, target, tmp_path, monkeypatch)

    _assert_same_warehouse(target, fast)
    columns = _columns(fast, "sms")
    assert columns["import_date"]["data_type"] == "timestamp"
    assert {"agent_meta__model", "agent_meta__turns", "agent_mode"} <= columns.keys()


def test_declared_fields_exist_when_every_value_is_null(emulator, tmp_path, monkeypatch):
    running = emulator(sms=50, seed=73)
    target = Target.duckdb(tmp_path / "w.duckdb")
    fast = _pipeline(target, tmp_path, FAST)
    fast.run(
        close_sms_source(api_key=running.api_key, base_url=running.base_url)
    ).raise_on_failed_jobs()

    columns = _database_columns(target, FAST, "sms")
    assert columns["caller_id_mode"] == columns["caller_id_reason"] == "VARCHAR"
    assert target.query(
        f"SELECT count(*) FROM {FAST}.sms WHERE caller_id_mode IS NOT NULL "
        "OR caller_id_reason IS NOT NULL"
    ) == [(0,)]
