"""The typed state reads what earlier versions wrote, and no object of a run shows a key."""

from __future__ import annotations

from datetime import datetime, timezone

from close_sms.source import close_sms_source
from close_sms.source.privacy import Privacy
from close_sms.source.run import Run
from close_sms.source.state import BackfillPlan, SourceState

API_KEY = "api_secret_key_value_0123456789"
OTHER_KEY = "api_other_secret_key_9876543210"
HASH_KEY = "hash_secret_key_value_0123456789abcdef"


def test_a_plan_written_with_the_old_created_key_is_read():
    written_before = {
        "start": "2024-01-01T00:00:00+00:00",
        "made_at": "2024-06-01T00:00:00+00:00",
        "reconcile": True,
        "created": "1717200000.123456",
        "windows": [[1704067200000, 1717200000000, 0, 0, []]],
        "loaded": 12,
        "complete": False,
    }

    plan = SourceState.read({"backfill": written_before}).backfill

    assert plan is not None
    assert plan.load_id == "1717200000.123456"
    assert plan.made_at == datetime(2024, 6, 1, tzinfo=timezone.utc)
    assert BackfillPlan.from_state(plan.to_state()) == plan


def test_no_object_of_a_run_shows_a_key():
    source = close_sms_source(
        api_key=f"{API_KEY},{OTHER_KEY}",
        base_url="http://127.0.0.1:9/api/v1",
        hash_phones=True,
        sms_text="hash",
        hash_key=HASH_KEY,
    )
    # The resources' closures hold the run: the objects every resource works with.
    run = next(
        cell.cell_contents
        for cell in source.resources["sms_backfill"]._pipe.gen.__closure__
        if isinstance(cell.cell_contents, Run)
    )
    objects = [
        run,
        run.client,
        run.client.keys,
        run.client.config,
        run.reader_settings,
        run.privacy,
        run.progress,
        Privacy.configure(True, "hash", HASH_KEY),
    ]
    assert run.reader_settings.api_keys == (API_KEY, OTHER_KEY)
    assert run.privacy.key == HASH_KEY.encode()
    for shown in [text for thing in objects for text in (repr(thing), str(thing))]:
        for secret in (API_KEY, OTHER_KEY, HASH_KEY):
            assert secret not in shown


def test_the_recorded_privacy_mode_is_kept_under_its_key():
    state = {"privacy": {"hash_phones": True, "sms_text": "drop", "key_check": "0123"}}
    typed = SourceState.read(state)
    assert typed.privacy_mode == state["privacy"]
    written: dict[str, object] = {}
    typed.write(written)
    assert written == state
