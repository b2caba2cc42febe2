"""SMS lifecycle: statuses, sending, cancelling, deleting leads, and the events they emit."""

from __future__ import annotations

from datetime import timedelta

from close_api_emulator import NON_ADMIN_API_KEY

OUT = {"local_phone": "+16505551000", "remote_phone": "+16505550123", "text": "hi"}


def _object_events(run, sms_id):
    return run.get("/event/", params={"object_type": "activity.sms", "object_id": sms_id}).json()[
        "data"
    ]


def test_create_sent_emits_created_and_sent(emulator):
    run = emulator(sms=0)
    sms = run.emu.create_sms({"status": "sent", **OUT})
    assert sms["date_sent"] == sms["date_created"]
    assert sorted(e["action"] for e in _object_events(run, sms["id"])) == ["created", "sent"]


def test_outbox_with_send_in_is_sent_after_the_clock_passes(emulator):
    run = emulator(sms=0, consolidation_seconds=1)
    sms = run.emu.create_sms({"status": "outbox", "send_in": 30, **OUT})
    assert sms["status"] == "outbox"
    run.emu.clock.advance(10)
    assert run.get(f"/activity/sms/{sms['id']}/").json()["status"] == "outbox"
    run.emu.clock.advance(25)
    now_sent = run.get(f"/activity/sms/{sms['id']}/").json()
    assert now_sent["status"] == "sent" and now_sent["date_sent"] is not None
    assert now_sent["date_updated"] > sms["date_updated"]
    actions = [e["action"] for e in _object_events(run, sms["id"])]
    assert actions == ["sent", "created"]


def test_outbox_to_failing_number_becomes_error_with_message(emulator):
    run = emulator(sms=0, consolidation_seconds=1)
    sms = run.emu.create_sms(
        {"status": "outbox", "send_in": 5, **OUT, "remote_phone": "+16505550000"}
    )
    run.emu.clock.advance(6)
    failed = run.emu.get_sms(sms["id"])
    assert failed["status"] == "error" and failed["error_message"]
    [updated] = [e for e in _object_events(run, sms["id"]) if e["action"] == "updated"]
    assert {"status", "error_message"} <= set(updated["changed_fields"])
    assert updated["previous_data"]["status"] == "outbox"


def test_only_drafts_can_be_edited_but_scheduled_can_be_cancelled(emulator):
    run = emulator(sms=0)
    session = run.session()
    url = run.base_url + "/activity/sms/"
    sent = run.emu.create_sms({"status": "sent", **OUT})
    resp = session.put(f"{url}{sent['id']}/", json={"text": "nope"}, timeout=10)
    assert resp.status_code == 400 and resp.json()["errors"] == []
    assert "status" in resp.json()["field-errors"]
    when = (run.emu.clock.now() + timedelta(hours=2)).isoformat()
    scheduled = run.emu.create_sms({"status": "scheduled", "date_scheduled": when, **OUT})
    assert scheduled["date_scheduled"] is not None
    resp = session.put(f"{url}{scheduled['id']}/", json={"status": "draft"}, timeout=10)
    assert resp.status_code == 200 and resp.json()["status"] == "draft"
    assert resp.json()["date_scheduled"] is None
    run.emu.clock.advance(3 * 3600)
    assert run.emu.get_sms(scheduled["id"])["status"] == "draft"  # cancelled: never sent


def test_draft_to_scheduled_then_sent(emulator):
    run = emulator(sms=0)
    draft = run.emu.create_sms({"status": "draft", **OUT})
    when = (run.emu.clock.now() + timedelta(minutes=5)).isoformat()
    scheduled = run.emu.update_sms(draft["id"], {"status": "scheduled", "date_scheduled": when})
    assert scheduled["status"] == "scheduled"
    run.emu.clock.advance(301)
    assert run.emu.get_sms(draft["id"])["status"] == "sent"


def test_every_mutation_bumps_date_updated(emulator):
    run = emulator(sms=0)
    sms = run.emu.create_sms({"status": "draft", **OUT})
    run.emu.clock.advance(2)
    edited = run.emu.update_sms(sms["id"], {"text": "again"})
    assert edited["date_updated"] > sms["date_updated"]
    assert edited["date_created"] == sms["date_created"]


def test_backdated_create_is_listed_by_its_date_created(emulator):
    run = emulator(sms=0)
    sms = run.emu.create_sms(
        {"status": "inbox", "text": "late", "date_created": "2024-01-01T00:00:00Z"}
    )
    assert sms["date_created"] == "2024-01-01T00:00:00+00:00"
    assert sms["date_updated"] > sms["date_created"]


def test_delete_lead_deletes_its_sms_with_events(emulator):
    run = emulator(sms=300)
    snap = run.emu.snapshot()
    lead = next(s["lead_id"] for s in snap.values() if s["lead_id"])
    expected = {i for i, s in snap.items() if s["lead_id"] == lead}
    resp = run.session().delete(f"{run.base_url}/lead/{lead}/", timeout=10)
    assert resp.status_code == 200
    assert not expected & set(run.emu.snapshot())
    events = run.get(
        "/event/", params={"lead_id": lead, "object_type": "activity.sms", "action": "deleted"}
    ).json()["data"]
    assert {e["object_id"] for e in events} >= expected
    assert all(e["data"] is None for e in events)


def test_non_admin_cannot_delete_others_sms(emulator):
    run = emulator(sms=0)
    sms = run.emu.create_sms({"status": "inbox", "text": "mine"})
    resp = run.session(NON_ADMIN_API_KEY).delete(
        f"{run.base_url}/activity/sms/{sms['id']}/", timeout=10
    )
    assert resp.status_code == 403 and resp.json() == {"error": "Forbidden"}


def test_the_carrier_refuses_sends_to_a_phone_that_texted_stop_until_it_texts_start(emulator):
    run = emulator(sms=0, consolidation_seconds=1)
    inbound = {**OUT, "status": "inbox", "direction": "inbound"}

    def send() -> dict:
        sms = run.emu.create_sms({"status": "outbox", "send_in": 1, **OUT})
        run.emu.clock.advance(2)
        return run.emu.get_sms(sms["id"])

    run.emu.create_sms({**inbound, "text": "Please stop texting me"})  # not a keyword
    assert send()["status"] == "sent"
    run.emu.create_sms({**inbound, "text": " Opt-Out! "})
    refused = send()
    assert refused["status"] == "error" and refused["date_sent"] is None
    assert refused["error_message"] == "Attempt to send to unsubscribed recipient"
    other_phone = run.emu.create_sms(
        {"status": "outbox", "send_in": 1, **OUT, "remote_phone": "+16505550124"}
    )
    run.emu.clock.advance(2)
    assert run.emu.get_sms(other_phone["id"])["status"] == "sent"
    run.emu.create_sms({**inbound, "text": "start"})
    assert send()["status"] == "sent"
