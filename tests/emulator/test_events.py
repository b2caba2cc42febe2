"""The event log: combinations, cursors, limits, retention, consolidation, privacy."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from close_api_emulator import NON_ADMIN_API_KEY

from .spec import component_validator, validate_response
from .support import all_events

EVENT_KEYS = {
    "id",
    "date_created",
    "date_updated",
    "organization_id",
    "user_id",
    "request_id",
    "api_key_id",
    "object_type",
    "object_id",
    "lead_id",
    "action",
    "changed_fields",
    "data",
    "previous_data",
    "meta",
}


def _recent() -> datetime:
    """A start date that puts most generated SMS inside the 30-day event window."""
    return datetime.now(timezone.utc) - timedelta(days=40)


def test_events_shape_spec_and_order(emulator):
    run = emulator(sms=800, start=_recent())
    resp = run.get("/event/", params={"object_type": "activity.sms", "action": "created"})
    validate_response(resp)
    body = resp.json()
    assert set(body) == {"data", "cursor_next", "cursor_previous"}
    assert len(body["data"]) == 50 and body["cursor_next"] and body["cursor_previous"] is None
    for event in body["data"]:
        assert set(event) == EVENT_KEYS and event["id"].startswith("ev_")
        assert event["action"] == "created" and event["object_type"] == "activity.sms"
        assert not list(component_validator("SMSActivity").iter_errors(event["data"]))
    created = all_events(run, object_type="activity.sms", action="created")
    keys = [e["date_updated"] for e in created]
    assert keys == sorted(keys, reverse=True)
    assert len({e["id"] for e in created}) == len(created)
    one = run.get(f"/event/{created[0]['id']}/")
    assert one.status_code == 200 and one.json() == created[0]
    validate_response(one)
    assert run.get("/event/ev_missing/").status_code == 404


def test_filter_combinations(emulator):
    run = emulator(sms=100)
    ok = [
        {"object_type": "activity.sms", "action": "deleted", "date_updated__gte": "2020-01-01"},
        {"lead_id": "lead_x"},
        {"user_id": "user_x", "object_type": "activity.sms"},
        {"request_id": "req_x"},
        {"object_type": "activity.sms", "object_id": "acti_x"},
    ]
    for params in ok:
        assert run.get("/event/", params=params).status_code == 200, params
    bad = [
        {"object_type": "activity.sms"},
        {"action": "deleted"},
        {"request_id": "r", "lead_id": "l"},
    ]
    for params in bad:
        resp = run.get("/event/", params=params)
        assert resp.status_code == 400 and "combination" in resp.json()["error"], params


def test_limit_cap_skip_rejected_and_bad_cursor(emulator):
    run = emulator(sms=800, start=_recent())
    assert len(run.get("/event/", params={"_limit": 500}).json()["data"]) == 50
    assert len(run.get("/event/", params={"_limit": 7}).json()["data"]) == 7
    resp = run.get("/event/", params={"_skip": 50})
    assert resp.status_code == 400 and "_skip" in resp.json()["error"]
    assert run.get("/event/", params={"_cursor": "not-a-cursor"}).status_code == 400


def test_cursor_next_and_previous_walk_the_log(emulator):
    run = emulator(sms=500, start=_recent())
    everything = all_events(run, _limit=50)
    assert len(everything) > 100
    first = run.get("/event/", params={"_limit": 20}).json()
    second = run.get("/event/", params={"_limit": 20, "_cursor": first["cursor_next"]}).json()
    assert [e["id"] for e in first["data"] + second["data"]] == [e["id"] for e in everything[:40]]
    back = run.get("/event/", params={"_limit": 20, "_cursor": second["cursor_previous"]}).json()
    assert [e["id"] for e in back["data"]] == [e["id"] for e in first["data"]]
    assert back["cursor_previous"] is None


def test_date_updated_filter_carries_in_cursor(emulator):
    run = emulator(sms=800, start=_recent())
    everything = all_events(run)
    pivot = everything[len(everything) // 2]["date_updated"]
    expected = [e["id"] for e in everything if e["date_updated"] >= pivot]
    first = run.get("/event/", params={"date_updated__gte": pivot, "_limit": 10}).json()
    got = [e["id"] for e in first["data"]]
    cursor = first["cursor_next"]
    while cursor:  # filters other than date_updated are resent; date_updated rides in the cursor
        page = run.get("/event/", params={"_cursor": cursor, "_limit": 10}).json()
        got += [e["id"] for e in page["data"]]
        cursor = page["cursor_next"]
    assert got == expected


def test_retention_horizon_follows_the_clock(emulator):
    run = emulator(sms=0)
    sms = run.emu.create_sms({"status": "inbox", "text": "old news"})
    assert all_events(run, object_id=sms["id"], object_type="activity.sms")
    run.emu.clock.advance(29 * 86400)
    assert all_events(run, object_id=sms["id"], object_type="activity.sms")
    run.emu.clock.advance(2 * 86400)
    assert all_events(run, object_id=sms["id"], object_type="activity.sms") == []
    assert run.emu.get_sms(sms["id"]) is not None  # the SMS stays, only its events go


def test_generated_events_only_inside_retention(emulator):
    run = emulator(sms=3000, seed=5)
    events = all_events(run)
    horizon = run.emu.clock.now().timestamp() - 30 * 86400
    assert events and all(
        datetime.fromisoformat(e["date_updated"]).timestamp() >= horizon for e in events
    )
    actions = {e["action"] for e in events}
    assert {"created", "sent", "updated", "deleted"} <= actions


def test_consolidation_within_window(emulator):
    run = emulator(sms=0, consolidation_seconds=60)
    emu = run.emu
    sms = emu.create_sms({"status": "draft", "text": "v1", "local_phone": "+16505551000"})
    emu.clock.advance(5)
    emu.update_sms(sms["id"], {"text": "v2"})
    events = all_events(run, object_type="activity.sms", object_id=sms["id"])
    assert len(events) == 1
    assert events[0]["action"] == "created"
    assert events[0]["date_updated"] > events[0]["date_created"]
    assert events[0]["data"]["text"] == "v2" and "text" in events[0]["changed_fields"]
    emu.clock.advance(120)
    emu.update_sms(sms["id"], {"text": "v3"})
    events = all_events(run, object_type="activity.sms", object_id=sms["id"])
    assert [e["action"] for e in events] == ["updated", "created"]
    assert events[0]["previous_data"]["text"] == "v2"


def test_deleted_event_has_null_data(emulator):
    run = emulator(sms=50)
    sms_id = next(iter(run.emu.snapshot()))
    run.emu.delete_sms(sms_id)
    [event] = all_events(run, action="deleted", object_id=sms_id)
    assert event["data"] is None and event["previous_data"]["id"] == sms_id
    assert event["api_key_id"] and "api_" not in event["api_key_id"][:4]


@pytest.mark.parametrize("age,hidden", [(10, False), (3601, True)])
def test_non_admin_sees_data_for_one_hour(emulator, age, hidden):
    run = emulator(sms=0)
    sms = run.emu.create_sms({"status": "inbox", "text": "secret"})
    run.emu.clock.advance(age)
    [member] = all_events(
        run, api_key=NON_ADMIN_API_KEY, object_type="activity.sms", object_id=sms["id"]
    )
    [admin] = all_events(run, object_type="activity.sms", object_id=sms["id"])
    assert admin["data"]["text"] == "secret"
    assert (member["data"] is None) is hidden
