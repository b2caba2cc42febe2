"""SMS endpoints over real HTTP, validated against Close's published OpenAPI spec."""

from __future__ import annotations

import re

import requests

from close_api_emulator import DEMO_API_KEY, OTHER_ORG_API_KEY

from .spec import component_validator, validate_response

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}000)?\+00:00$")
ACTI = re.compile(r"^acti_[A-Za-z0-9_-]{43}$")


def _check_sms_shape(sms: dict) -> None:
    assert ACTI.match(sms["id"]), sms["id"]
    assert sms["_type"] == "SMS"
    for name in ("date_created", "date_updated", "activity_at", "date_sent", "date_scheduled"):
        if sms[name] is not None:
            assert TS.match(sms[name]), (name, sms[name])
            assert not sms[name].endswith(".000000+00:00")
    assert sms["cost"] is None or isinstance(sms["cost"], str)
    assert not list(component_validator("SMSActivity").iter_errors(sms))


def test_list_get_and_spec(emulator):
    run = emulator(sms=300)
    resp = run.get("/activity/sms/", params={"_limit": 50})
    assert resp.status_code == 200
    validate_response(resp)
    body = resp.json()
    assert set(body) == {"data", "has_more"}
    assert len(body["data"]) == 50 and body["has_more"] is True
    for sms in body["data"]:
        _check_sms_shape(sms)
    one = run.get(f"/activity/sms/{body['data'][0]['id']}/")
    assert one.status_code == 200
    validate_response(one)
    assert one.json() == body["data"][0] == run.emu.get_sms(body["data"][0]["id"])


def test_zero_fraction_is_omitted(emulator):
    run = emulator(sms=0)
    sms = run.emu.create_sms(
        {"status": "inbox", "text": "x", "date_created": "2026-01-02T03:04:05+00:00"}
    )
    assert sms["date_created"] == "2026-01-02T03:04:05+00:00"
    sms = run.emu.create_sms(
        {"status": "inbox", "text": "x", "date_created": "2026-01-02T03:04:05.120Z"}
    )
    assert sms["date_created"] == "2026-01-02T03:04:05.120000+00:00"


def test_missing_id_is_404_with_close_body(emulator):
    run = emulator(sms=10)
    resp = run.get("/activity/sms/acti_doesnotexist/")
    assert resp.status_code == 404
    assert resp.json() == {"error": "Empty query: Activity matching query does not exist."}
    validate_response(resp)
    assert run.get("/nope/").status_code == 404


def test_create_update_delete_over_http(emulator):
    run = emulator(sms=20)
    session = run.session()
    url = run.base_url + "/activity/sms/"
    created = session.post(
        url,
        json={
            "status": "draft",
            "text": "hello 👋",
            "local_phone": "+16505551000",
            "remote_phone": "+16505550123",
            "lead_id": run.emu.lead_ids()[0],
        },
        timeout=10,
    )
    assert created.status_code == 200, created.text
    validate_response(created)
    sms = created.json()
    _check_sms_shape(sms)
    assert sms["status"] == "draft" and sms["direction"] == "outbound"
    updated = session.put(f"{url}{sms['id']}/", json={"text": "edited"}, timeout=10)
    assert updated.status_code == 200
    validate_response(updated)
    assert updated.json()["text"] == "edited"
    assert updated.json()["date_updated"] >= sms["date_updated"]
    deleted = session.delete(f"{url}{sms['id']}/", timeout=10)
    assert deleted.status_code == 200 and deleted.json() == {}
    validate_response(deleted)
    assert session.get(f"{url}{sms['id']}/", timeout=10).status_code == 404
    assert run.emu.get_sms(sms["id"]) is None


def test_validation_errors_use_field_errors(emulator):
    run = emulator(sms=0)
    session = run.session()
    url = run.base_url + "/activity/sms/"
    resp = session.post(url, json={"text": "no status"}, timeout=10)
    assert resp.status_code == 400
    assert resp.json() == {"errors": [], "field-errors": {"status": "This field is required."}}
    resp = session.post(url, json={"status": "bogus"}, timeout=10)
    assert resp.status_code == 400 and "status" in resp.json()["field-errors"]
    resp = session.post(url, json={"status": "outbox", "text": "hi"}, timeout=10)
    assert resp.status_code == 400 and "local_phone" in resp.json()["field-errors"]
    resp = session.post(
        url,
        json={
            "status": "inbox",
            "attachments": [{"content_type": "x/y", "filename": "a", "url": "u"}],
        },
        timeout=10,
    )
    assert resp.status_code == 400 and "attachments" in resp.json()["field-errors"]
    resp = session.post(
        url,
        json={"status": "outbox", "text": "hi", "local_phone": "+16505551000", "send_in": 60},
        timeout=10,
    )
    assert resp.status_code == 400 and "send_in" in resp.json()["field-errors"]


def test_direction_defaults(emulator):
    run = emulator(sms=0)
    assert run.emu.create_sms({"status": "inbox", "text": "a"})["direction"] == "inbound"
    assert run.emu.create_sms({"status": "sent", "text": "a"})["direction"] == "outbound"


def test_fields_param_projects(emulator):
    run = emulator(sms=30)
    resp = run.get("/activity/sms/", params={"_fields": "id,date_created", "_limit": 5})
    assert all(set(item) == {"id", "date_created"} for item in resp.json()["data"])
    sms_id = resp.json()["data"][0]["id"]
    assert set(run.get(f"/activity/sms/{sms_id}/", params={"_fields": "id,text"}).json()) == {
        "id",
        "text",
    }


def test_method_override_answers_like_get(emulator):
    run = emulator(sms=200)
    ids = [s["id"] for s in run.get("/activity/sms/", params={"_limit": 30}).json()["data"]]
    get = run.get("/activity/sms/", params={"id__in": ",".join(ids[:20]), "_limit": 100})
    post = requests.post(
        run.base_url + "/activity/sms/",
        auth=(DEMO_API_KEY, ""),
        headers={"x-http-method-override": "GET"},
        json={"_params": {"id__in": ids[:20], "_limit": 100}},
        timeout=10,
    )
    assert post.status_code == 200
    assert post.json() == get.json()
    assert {s["id"] for s in post.json()["data"]} == set(ids[:20])
    assert run.emu.request_log[-1].method == "POST"
    assert run.emu.request_log[-1].params["_limit"] == "100"


def test_me_reports_org_and_admin(emulator):
    run = emulator(sms=0)
    admin = run.get("/me/").json()
    assert admin["is_admin"] is True and admin["organization_id"].startswith("orga_")
    from close_api_emulator import NON_ADMIN_API_KEY

    member = run.get("/me/", api_key=NON_ADMIN_API_KEY).json()
    assert member["is_admin"] is False
    assert member["organization_id"] == admin["organization_id"]
    other = run.get("/me/", api_key=OTHER_ORG_API_KEY).json()
    assert other["organization_id"] != admin["organization_id"]
    assert validate_response(run.get("/me/")) is None


def test_second_organization_is_isolated(emulator):
    run = emulator(sms=50)
    resp = run.get("/activity/sms/", api_key=OTHER_ORG_API_KEY)
    assert resp.json() == {"data": [], "has_more": False}
    sms_id = next(iter(run.emu.snapshot()))
    assert run.get(f"/activity/sms/{sms_id}/", api_key=OTHER_ORG_API_KEY).status_code == 404


def test_trailing_slash_paths(emulator):
    run = emulator(sms=5)
    resp = run.get("/activity/sms", allow_redirects=False)
    assert resp.status_code in (301, 308)
    assert resp.headers["Location"].endswith("/activity/sms/")
