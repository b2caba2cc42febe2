"""The backfill's two ways into dlt: Arrow tables for plain SMS, row dicts for the rest.

Both must give the same warehouse, so each test mixes them in one load and compares with Close.
"""

from __future__ import annotations

from collections import Counter

import dlt
import pytest
from dlt.extract.resource import DltResource

from close_sms import backfill_in_progress, close_sms_source
from close_sms.source import settings
from tests.source.test_plain_source import bare_pipeline
from tests.support import Target, count, mismatches


@pytest.fixture
def small_batches(monkeypatch):
    # Several Arrow tables from an account small enough for a test.
    monkeypatch.setattr(settings, "ARROW_BATCH_SMS", 200)


def _point_at(monkeypatch, running) -> None:
    monkeypatch.setenv("SOURCES__CLOSE_SMS__API_KEY", running.api_key)
    monkeypatch.setenv("SOURCES__CLOSE_SMS__BASE_URL", running.base_url)


def _sms_items_by_format(pipeline: dlt.Pipeline) -> Counter:
    """SMS rows the last extract wrote, by file format: parquet from Arrow, jsonl from dicts."""
    items: Counter = Counter()
    for metrics in pipeline.last_trace.last_extract_info.metrics.values():
        for metric in metrics:
            for job_id, job in metric["job_metrics"].items():
                table, _, file_format = job_id.split(".", 2)
                if table == "sms":
                    items["parquet" if file_format == "parquet" else "dicts"] += job.items_count
    return items


def test_backfill_mixes_arrow_tables_and_row_dicts_and_equals_close(
    emulator, target, tmp_path, monkeypatch, small_batches
):
    running = emulator(sms=1500, seed=61)
    emu = running.emu
    plain = sorted(i for i, sms in emu.snapshot().items() if not sms["attachments"])
    # A field Close added, a value dlt keeps in a variant column, and a number where text
    # belongs: Arrow refuses that one, so its whole batch goes to dlt as row dicts.
    emu.override_raw(plain[10], {"channel_label": "support"})
    emu.override_raw(plain[20], {"cost": "free"})
    emu.override_raw(plain[30], {"text": 42})
    _point_at(monkeypatch, running)
    pipeline = bare_pipeline(target, tmp_path)

    pipeline.extract(close_sms_source())
    by_format = _sms_items_by_format(pipeline)
    pipeline.normalize()
    pipeline.load().raise_on_failed_jobs()

    snapshot = emu.snapshot()
    with_attachments = sum(1 for sms in snapshot.values() if sms["attachments"])
    assert by_format["parquet"] + by_format["dicts"] == len(snapshot)
    # The SMS with attachments, the two odd ones, and the batch Arrow refused (up to 299).
    assert with_attachments + 2 < by_format["dicts"] <= with_attachments + 2 + 299
    assert by_format["parquet"] >= len(snapshot) - by_format["dicts"] > 0
    # dlt writes a number in a text column as its text, and a non-number `cost` beside it.
    snapshot[plain[30]]["text"] = "42"
    snapshot[plain[20]]["cost"] = None
    assert mismatches(target, snapshot) == []
    odd = target.query(
        "SELECT id, cost__v_text, channel_label FROM close_sms.sms "
        "WHERE cost__v_text IS NOT NULL OR channel_label IS NOT NULL"
    )
    assert sorted(odd) == sorted([(plain[20], "free", None), (plain[10], None, "support")])


def test_attachments_go_when_their_sms_comes_back_as_an_arrow_row(
    emulator, target, tmp_path, monkeypatch, small_batches
):
    running = emulator(sms=800, seed=62)
    emu = running.emu
    _point_at(monkeypatch, running)
    pipeline = bare_pipeline(target, tmp_path)
    pipeline.run(close_sms_source()).raise_on_failed_jobs()
    victim = sorted(i for i, sms in emu.snapshot().items() if len(sms["attachments"]) >= 2)[0]
    attachments_of_victim = (
        "SELECT count(*) FROM close_sms.sms__attachments a JOIN close_sms.sms s "
        f"ON a._dlt_parent_id = s._dlt_id WHERE s.id = '{victim}'"
    )
    assert count(target, attachments_of_victim) >= 2
    # Close drops them without an event: only the reconcile's backfill reads the SMS again.
    emu.override_raw(victim, {"attachments": []})

    pipeline.run(close_sms_source(reconcile=True)).raise_on_failed_jobs()

    assert _sms_items_by_format(pipeline)["parquet"] > 0
    assert count(target, attachments_of_victim) == 0
    assert count(target, "SELECT count(*) FROM close_sms.sms__attachments") == sum(
        len(sms["attachments"]) for sms in emu.snapshot().values()
    )
    assert mismatches(target, emu.snapshot()) == []


def _limited_backfill(limit: int):
    source = close_sms_source()
    # dlt closes the backfill's generator right after the item that reaches the limit.
    source.resources["sms_backfill"].add_limit(limit)
    return source


@pytest.mark.slow
def test_a_backfill_cut_short_by_add_limit_goes_on_and_loses_no_sms(
    emulator, target, tmp_path, monkeypatch, small_batches
):
    running = emulator(sms=700, seed=65)
    _point_at(monkeypatch, running)
    pipeline = bare_pipeline(target, tmp_path)
    runs = 0
    while runs == 0 or backfill_in_progress(pipeline):
        pipeline.run(_limited_backfill(3)).raise_on_failed_jobs()
        runs += 1
        assert runs < 40

    assert runs > 2
    assert mismatches(target, running.emu.snapshot()) == []


def test_rows_held_for_a_table_stay_out_of_the_state_until_dlt_has_them(
    emulator, target, tmp_path, monkeypatch, small_batches
):
    # Without the row-dict path for limited resources, the state alone must keep every SMS:
    # the limit closes the generator while rows wait for their table.
    monkeypatch.setattr(DltResource, "limit", property(lambda resource: None))
    running = emulator(sms=1500, seed=66)
    _point_at(monkeypatch, running)
    pipeline = bare_pipeline(target, tmp_path)
    pipeline.run(_limited_backfill(3)).raise_on_failed_jobs()
    assert backfill_in_progress(pipeline)
    assert 0 < _sms_items_by_format(pipeline)["dicts"] < len(running.emu.snapshot())

    pipeline.run(close_sms_source()).raise_on_failed_jobs()

    assert not backfill_in_progress(pipeline)
    assert mismatches(target, running.emu.snapshot()) == []


def test_arrow_rows_carry_their_load_id_and_unique_row_keys(
    emulator, tmp_path, monkeypatch, small_batches
):
    running = emulator(sms=600, seed=63)
    plain = sorted(i for i, sms in running.emu.snapshot().items() if not sms["attachments"])
    # Empty, but text: dlt makes it a column of its own, so this SMS must stay a row dict.
    running.emu.override_raw(plain[5], {"attachments": ""})
    _point_at(monkeypatch, running)
    target = Target.duckdb(tmp_path / "w.duckdb")
    pipeline = bare_pipeline(target, tmp_path)

    info = pipeline.run(close_sms_source())

    (load_id,) = info.loads_ids
    assert _sms_items_by_format(pipeline)["parquet"] > 0
    assert count(target, "SELECT count(DISTINCT _dlt_id) FROM close_sms.sms") == len(
        running.emu.snapshot()
    )
    assert target.query("SELECT DISTINCT _dlt_load_id FROM close_sms.sms") == [(load_id,)]
    assert target.query(
        "SELECT id, attachments FROM close_sms.sms WHERE attachments IS NOT NULL"
    ) == [(plain[5], "")]


@pytest.mark.parametrize("scope", ["", "PLAIN__"])
def test_dlt_adding_row_keys_to_arrow_tables_changes_nothing(
    emulator, tmp_path, monkeypatch, small_batches, scope
):
    # Set for every pipeline, or for the pipeline `bare_pipeline` names.
    monkeypatch.setenv(f"{scope}NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_ID", "true")
    running = emulator(sms=600, seed=67)
    _point_at(monkeypatch, running)
    target = Target.duckdb(tmp_path / "w.duckdb")
    pipeline = bare_pipeline(target, tmp_path)

    pipeline.run(close_sms_source()).raise_on_failed_jobs()

    assert count(target, "SELECT count(DISTINCT _dlt_id) FROM close_sms.sms") == len(
        running.emu.snapshot()
    )
    assert mismatches(target, running.emu.snapshot()) == []


def test_other_destinations_get_row_dicts(emulator, tmp_path, monkeypatch, small_batches):
    running = emulator(sms=300, seed=64)
    _point_at(monkeypatch, running)
    pipeline = dlt.pipeline(
        pipeline_name="files",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.filesystem(str(tmp_path / "bucket")),
        dataset_name="close_sms",
    )

    pipeline.extract(close_sms_source())

    assert _sms_items_by_format(pipeline) == Counter(dicts=len(running.emu.snapshot()))
