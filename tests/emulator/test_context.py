"""The objects SMS point to (users, statuses, fields, templates, numbers, leads, contacts,
lead merges) over real HTTP: Close's spec, paging, filters, merges and their events."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from close_api_emulator import DEMO_API_KEY, OTHER_ORG_API_KEY, EmulatorConfig

from .spec import component_validator, validate_response
from .support import all_events

# path -> the spec component of its items (None: the spec publishes no item schema).
LISTS = {
    "/user/": None,
    "/status/lead/": None,
    "/custom_field/lead/": None,
    "/sms_template/": None,
    "/phone_number/": "PhoneNumber",
    "/lead/": "Lead",
    "/contact/": "Contact",
}


def _all(run, path: str, **params) -> list[dict]:
    """Every item of a context list, offset-paged 100 at a time."""
    items: list[dict] = []
    while True:
        resp = run.get(path, params={**params, "_skip": len(items), "_limit": 100})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items += body["data"]
        if not body["has_more"]:
            return items


def _recent() -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=20)


def test_every_endpoint_answers_per_spec(emulator):
    run = emulator(sms=400)
    for path, component in LISTS.items():
        resp = run.get(path, params={"_limit": 10})
        assert resp.status_code == 200, (path, resp.text)
        validate_response(resp)
        body = resp.json()
        assert set(body) == {"data", "has_more"} and body["data"], path
        first = body["data"][0]
        if component:
            for item in body["data"]:
                assert not list(component_validator(component).iter_errors(item)), path
        one = run.get(f"{path}{first['id']}/")
        assert one.status_code == 200 and one.json() == first, path
        if path not in ("/status/lead/", "/custom_field/lead/"):  # the spec has no GET of one
            validate_response(one)
        missing = run.get(f"{path}nope_missing/")
        assert missing.status_code == 404 and "matching query does not exist" in missing.text
    lead = run.get("/lead/", params={"_limit": 1}).json()["data"][0]
    assert lead["status_label"] and any(key.startswith("custom.cf_") for key in lead)


def test_paging_fields_and_filters(emulator):
    run = emulator(sms=600)
    leads = _all(run, "/lead/")
    assert len(leads) == len({lead["id"] for lead in leads}) == 30
    page = run.get("/lead/", params={"_skip": 25, "_limit": 10}).json()
    assert [x["id"] for x in page["data"]] == [x["id"] for x in leads[25:]]
    assert page["has_more"] is False
    assert run.get("/lead/", params={"_skip": 20, "_limit": 5}).json()["has_more"] is True
    too_deep = run.get("/contact/", params={"_skip": 250_001})
    assert too_deep.status_code == 400 and "max_skip" in too_deep.json()["error"]
    projected = run.get("/contact/", params={"_fields": "id,lead_id", "_limit": 3}).json()
    assert all(set(c) == {"id", "lead_id"} for c in projected["data"])

    wanted = [leads[3]["id"], leads[7]["id"]]
    by_get = run.get("/lead/", params={"id__in": ",".join(wanted)}).json()["data"]
    by_post = requests.post(
        run.base_url + "/lead/",
        auth=(DEMO_API_KEY, ""),
        headers={"x-http-method-override": "GET"},
        json={"_params": {"id__in": wanted}},
        timeout=10,
    ).json()["data"]
    assert [x["id"] for x in by_get] == [x["id"] for x in by_post] == wanted
    contacts = run.get("/contact/", params={"lead_id": wanted[0]}).json()["data"]
    assert {c["id"] for c in contacts} == set(leads[3]["contact_ids"])

    numbers = _all(run, "/phone_number/")
    groups = run.get("/phone_number/", params={"is_group_number": "true"}).json()["data"]
    assert groups and all(n["is_group_number"] and n["user_id"] is None for n in groups)
    assert {n["id"] for n in groups} < {n["id"] for n in numbers}
    owned = next(n for n in numbers if n["user_id"])
    one = run.get("/phone_number/", params={"number": owned["number"]}).json()["data"]
    assert one == [owned]
    assert run.get("/lead/", params={"_limit": 3}, api_key=OTHER_ORG_API_KEY).json() == {
        "data": [],
        "has_more": False,
    }


def test_an_ignored_context_filter_answers_as_if_unfiltered(emulator):
    ignored = {"lead.id__in", "contact.lead_id", "phone_number.user_id"}
    run = emulator(sms=600, ignored_context_filters=ignored)
    assert run.emu.config.ignored_context_filters == frozenset(ignored)
    leads = _all(run, "/lead/")
    wanted = [leads[3]["id"], leads[7]["id"]]
    for answer in (
        run.get("/lead/", params={"id__in": ",".join(wanted), "_limit": 2}),
        requests.post(
            run.base_url + "/lead/",
            auth=(DEMO_API_KEY, ""),
            headers={"x-http-method-override": "GET"},
            json={"_params": {"id__in": wanted, "_limit": 2}},
            timeout=10,
        ),
    ):
        body = answer.json()
        assert [x["id"] for x in body["data"]] == [x["id"] for x in leads[:2]]
        assert body["has_more"] is True
    contacts = _all(run, "/contact/")
    on_lead = run.get("/contact/", params={"lead_id": wanted[0], "_limit": 100}).json()["data"]
    assert [c["id"] for c in on_lead] == [c["id"] for c in contacts[:100]]
    # The filters not named still apply.
    one = run.get("/contact/", params={"id__in": contacts[5]["id"]}).json()["data"]
    assert [c["id"] for c in one] == [contacts[5]["id"]]
    numbers = _all(run, "/phone_number/")
    owner = next(n["user_id"] for n in numbers if n["user_id"])
    assert _all(run, "/phone_number/", user_id=owner) == numbers
    groups = _all(run, "/phone_number/", is_group_number="true")
    assert groups and all(n["is_group_number"] for n in groups)


@pytest.mark.parametrize("ignored", ["contact.id__in", "lead_merge.lead_id"])
def test_the_other_context_filters_apply_when_one_is_ignored(emulator, ignored):
    run = emulator(sms=400, ignored_context_filters=[ignored])
    lead = _all(run, "/lead/")[4]
    by_id = _all(run, "/contact/", id__in=",".join(lead["contact_ids"]))
    if ignored == "contact.id__in":
        assert by_id == _all(run, "/contact/")
    else:
        assert {c["id"] for c in by_id} == set(lead["contact_ids"])
    by_lead = run.get("/contact/", params={"lead_id": lead["id"]}).json()["data"]
    assert {c["id"] for c in by_lead} == set(lead["contact_ids"])
    assert run.get("/lead/", params={"id__in": lead["id"]}).json()["data"] == [lead]


def test_bad_ignored_context_filters_are_refused():
    assert EmulatorConfig().ignored_context_filters == frozenset()
    with pytest.raises(ValueError, match="lead.lead_id not a filter of the context lists"):
        EmulatorConfig(ignored_context_filters={"lead.lead_id"})
    with pytest.raises(ValueError, match="id__in not a filter of the context lists"):
        EmulatorConfig(ignored_context_filters={"id__in"})
    with pytest.raises(ValueError, match="set, list or tuple"):
        EmulatorConfig(ignored_context_filters="lead.id__in")  # type: ignore[arg-type]


def test_a_forbidden_object_answers_403_and_lists_leave_it_out(emulator):
    run = emulator(sms=400)
    leads = _all(run, "/lead/")
    lead, contact = leads[2], leads[5]["contact_ids"][0]
    run.emu.forbid_object("lead", lead["id"])
    run.emu.forbid_object("contact", contact)

    for path in (f"/lead/{lead['id']}/", f"/contact/{contact}/"):
        forbidden = run.get(path)
        assert forbidden.status_code == 403 and forbidden.json()["error"], path
    assert [x["id"] for x in _all(run, "/lead/")] == [x["id"] for x in leads if x != lead]
    asked = [lead["id"], leads[3]["id"]]
    by_id = run.get("/lead/", params={"id__in": ",".join(asked)}).json()["data"]
    assert [x["id"] for x in by_id] == [leads[3]["id"]]
    assert contact not in {c["id"] for c in _all(run, "/contact/")}
    assert run.get("/contact/", params={"id__in": contact}).json()["data"] == []
    assert run.get(f"/lead/{leads[3]['id']}/").status_code == 200
    with pytest.raises(KeyError):
        run.emu.forbid_object("lead", "lead_missing")


def test_every_sms_reference_resolves(emulator):
    run = emulator(sms=3000)
    users = {u["id"]: u for u in _all(run, "/user/")}
    leads = {x["id"] for x in _all(run, "/lead/")}
    contacts = {c["id"]: c for c in _all(run, "/contact/")}
    templates = {t["id"] for t in _all(run, "/sms_template/")}
    numbers = {n["number"]: n for n in _all(run, "/phone_number/")}
    fields = {f["type"] for f in _all(run, "/custom_field/lead/")}
    assert fields == {"text", "number", "date", "choices"}
    assert len(run.get("/status/lead/").json()["data"]) >= 4
    sms = list(run.emu.snapshot().values())
    for one in sms:
        assert one["user_id"] is None or one["user_id"] in users
        assert one["lead_id"] is None or one["lead_id"] in leads
        assert one["contact_id"] is None or contacts[one["contact_id"]]["lead_id"] == one["lead_id"]
        assert one["template_id"] is None or one["template_id"] in templates
        assert one["local_phone"] in numbers
    inactive = {u for u, user in users.items() if not user["organizations"]}
    assert inactive and inactive & {s["user_id"] for s in sms}
    used = {numbers[s["local_phone"]]["is_group_number"] for s in sms}
    assert used == {True, False}
    assert any(s["template_id"] for s in sms if s["direction"] == "outbound")


@pytest.mark.parametrize("merge_events", ["all", "lead_only"])
def test_merge_moves_sms_and_contacts(emulator, merge_events):
    run = emulator(sms=600, start=_recent(), merge_events=merge_events)
    snap = run.emu.snapshot()
    source, destination = sorted({s["lead_id"] for s in snap.values() if s["lead_id"]})[:2]
    moved = {i: s for i, s in snap.items() if s["lead_id"] == source}
    source_lead = run.get(f"/lead/{source}/").json()
    kept_contacts = run.get(f"/lead/{destination}/").json()["contact_ids"]
    run.emu.clock.advance(300)
    merged_at = run.emu.clock.now()

    resp = run.session().post(
        f"{run.base_url}/lead/merge/",
        json={"source": source, "destination": destination},
        timeout=10,
    )
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    validate_response(resp)

    assert run.get(f"/lead/{source}/").status_code == 404
    merged = run.get(f"/lead/{destination}/").json()
    assert merged["contact_ids"] == kept_contacts + source_lead["contact_ids"]
    for contact_id in source_lead["contact_ids"]:
        assert run.get(f"/contact/{contact_id}/").json()["lead_id"] == destination
    after = run.emu.snapshot()
    for sms_id, before in moved.items():
        assert after[sms_id]["lead_id"] == destination
        assert after[sms_id]["date_updated"] > before["date_updated"]
    activities = run.get("/activity/lead_merge/", params={"lead_id": destination}).json()["data"]
    assert [(a["source_lead_id"], a["destination_lead_id"]) for a in activities] == [
        (source, destination)
    ]
    validate_response(run.get("/activity/lead_merge/"))

    # From the merge on: the spec checks above may take longer than a second.
    events = all_events(run, date_updated__gte=merged_at)
    by_kind = {(e["object_type"], e["action"], e["object_id"]) for e in events}
    assert ("lead", "deleted", source) in by_kind and ("lead", "updated", destination) in by_kind
    assert all(
        e["meta"]["merge_source_lead_id"] == source
        and e["meta"]["merge_destination_lead_id"] == destination
        for e in events
    )
    moved_events = {o for t, a, o in by_kind if t in ("activity.sms", "contact") and a == "updated"}
    if merge_events == "all":
        assert moved_events == set(moved) | set(source_lead["contact_ids"])
        assert any(t == "activity.lead_merge" for t, _, _ in by_kind)
        sms_event = next(e for e in events if e["object_type"] == "activity.sms")
        assert sms_event["previous_data"]["lead_id"] == source
        assert sms_event["data"]["lead_id"] == destination
    else:
        assert moved_events == set() and len(events) == 2
    bad = run.session().post(
        f"{run.base_url}/lead/merge/", json={"source": source, "destination": destination}
    )
    assert bad.status_code == 400 and "source" in bad.json()["field-errors"]


def test_changes_and_deletes_log_events(emulator):
    run = emulator(sms=400, start=_recent())
    emu = run.emu
    first = run.get("/lead/", params={"_limit": 1}).json()["data"][0]
    lead_id = first["id"]
    status = next(
        s for s in run.get("/status/lead/").json()["data"] if s["id"] != first["status_id"]
    )
    emu.rename_lead(lead_id, "Renamed Ltd. 🚀")
    emu.set_lead_status(lead_id, status["id"])
    lead = run.get(f"/lead/{lead_id}/").json()
    assert lead["name"] == "Renamed Ltd. 🚀" and lead["status_label"] == status["label"]
    lead_events = all_events(run, object_type="lead", object_id=lead_id)
    # Both changes within the consolidation window fold into one event.
    assert lead_events[0]["action"] == "updated"
    assert {"name", "status_id", "status_label"} <= set(lead_events[0]["changed_fields"])

    contact_id = lead["contact_ids"][0]
    other_lead = run.get("/lead/", params={"_skip": 1, "_limit": 1}).json()["data"][0]
    moved = run.session().put(
        f"{run.base_url}/contact/{contact_id}/",
        json={"name": "Zoë Moved", "lead_id": other_lead["id"]},
        timeout=10,
    )
    assert moved.status_code == 200 and moved.json()["lead_id"] == other_lead["id"]
    validate_response(moved)
    contact_event = all_events(run, object_type="contact", object_id=contact_id)[0]
    assert contact_event["lead_id"] == other_lead["id"]
    assert {"name", "lead_id"} <= set(contact_event["changed_fields"])
    assert contact_event["previous_data"]["lead_id"] == lead_id

    other_contact = other_lead["contact_ids"][0]
    emu.delete_contact(other_contact)
    assert run.get(f"/contact/{other_contact}/").status_code == 404
    deleted = all_events(run, object_type="contact", action="deleted")
    assert [e["object_id"] for e in deleted] == [other_contact] and deleted[0]["data"] is None

    sms_gone = emu.delete_lead(other_lead["id"])
    assert run.get(f"/contact/{contact_id}/").status_code == 404
    lead_deleted = all_events(run, object_type="lead", action="deleted")[0]
    assert lead_deleted["object_id"] == other_lead["id"]
    assert lead_deleted["previous_data"]["name"] == other_lead["name"]
    deleted_ids = {e["object_id"] for e in all_events(run, lead_id=other_lead["id"])}
    assert {contact_id, *sms_gone} <= deleted_ids


def test_users_templates_and_numbers_change(emulator):
    run = emulator(sms=300)
    emu = run.emu
    some = next(s for s in emu.snapshot().values() if s["user_id"])
    emu.rename_user(some["user_id"], "Maeby", "Fünke")
    assert run.get(f"/user/{some['user_id']}/").json()["last_name"] == "Fünke"
    assert emu.get_sms(some["id"])["user_name"] == "Maeby Fünke"
    emu.deactivate_user(some["user_id"])
    assert run.get(f"/user/{some['user_id']}/").json()["organizations"] == []
    added = emu.add_user("Steve", "Holt", "steve@example.com")
    assert added in {u["id"] for u in _all(run, "/user/")}
    template = run.get("/sms_template/").json()["data"][0]
    emu.rename_template(template["id"], "Renamed")
    renamed = run.get(f"/sms_template/{template['id']}/").json()
    assert renamed["name"] == "Renamed" and renamed["date_updated"] >= template["date_updated"]
    number = run.get("/phone_number/").json()["data"][0]
    emu.relabel_number(number["id"], "Front desk")
    assert run.get(f"/phone_number/{number['id']}/").json()["label"] == "Front desk"
    with pytest.raises(KeyError):
        emu.rename_template("smstmpl_missing", "x")


def test_auth_and_rate_limits_apply(emulator):
    run = emulator(sms=50, rps=2.0)
    assert requests.get(run.base_url + "/lead/", timeout=10).status_code == 401
    statuses = [run.get("/user/").status_code for _ in range(6)]
    assert 429 in statuses
    assert run.get("/contact/").status_code == 200  # its own rate-limit group


@pytest.mark.parametrize("refused", [False, True])
def test_a_status_item_get_answers_405_when_refused(emulator, refused):
    run = emulator(sms=200, status_item_get_refused=refused)
    statuses = _all(run, "/status/lead/")
    one = run.get(f"/status/lead/{statuses[0]['id']}/")
    if refused:
        assert one.status_code == 405 and one.json()["error"]
    else:
        assert one.status_code == 200 and one.json() == statuses[0]
    # The documented reads answer either way.
    assert _all(run, "/status/lead/") == statuses
    assert run.get(f"/user/{_all(run, '/user/')[0]['id']}/").status_code == 200


def test_a_deleted_lead_status_leaves_the_list(emulator):
    run = emulator(sms=200)
    statuses = _all(run, "/status/lead/")
    run.emu.delete_lead_status(statuses[1]["id"])
    assert _all(run, "/status/lead/") == [statuses[0], *statuses[2:]]
    assert run.get(f"/status/lead/{statuses[1]['id']}/").status_code == 404
    with pytest.raises(KeyError):
        run.emu.delete_lead_status(statuses[1]["id"])


@pytest.mark.parametrize("status", [500, 403])
def test_a_failing_context_kind_answers_its_status_to_every_request(emulator, status):
    run = emulator(sms=200, failing_context={"sms_template", "lead"}, failing_context_status=status)
    with run.emu.lock:
        template = next(iter(run.emu.store.crm.templates))
    for path in ("/sms_template/", f"/sms_template/{template}/", "/lead/"):
        answer = run.get(path)
        assert answer.status_code == status and answer.json()["error"], path
    assert run.get("/phone_number/").status_code == 200
    assert run.get("/contact/").status_code == 200
    assert EmulatorConfig().failing_context == frozenset()
    with pytest.raises(ValueError, match="lead_merge not a context kind"):
        EmulatorConfig(failing_context={"lead_merge"})
    with pytest.raises(ValueError, match="403 or 500"):
        EmulatorConfig(failing_context={"user"}, failing_context_status=502)


@pytest.mark.parametrize("fold", [False, True])
def test_an_update_soon_after_a_create_folds_into_its_created_event_when_on(emulator, fold):
    run = emulator(sms=200, fold_updates_into_created=fold)
    emu = run.emu
    lead = emu.create_lead("New Co", [{"name": "Ann New", "phone": "+16505550199"}])
    contact = lead["contact_ids"][0]
    assert run.get(f"/lead/{lead['id']}/").json() == lead
    assert run.get(f"/contact/{contact}/").json()["name"] == "Ann New"
    emu.clock.advance(20)
    emu.rename_lead(lead["id"], "New Co, renamed")
    emu.update_contact(contact, {"name": "Ann Renamed"})

    for kind, object_id, name in (
        ("lead", lead["id"], "New Co, renamed"),
        ("contact", contact, "Ann Renamed"),
    ):
        events = all_events(run, object_type=kind, object_id=object_id)
        if fold:
            (created,) = events
            assert created["action"] == "created" and created["data"]["name"] == name
            assert created["date_updated"] > created["date_created"]
        else:
            assert [e["action"] for e in events] == ["updated", "created"]
            assert events[0]["data"]["name"] == name
            assert events[1]["data"]["name"] != name


@pytest.mark.parametrize("recorded", [False, True])
def test_recorded_context_fields_are_sent_when_on(emulator, recorded):
    run = emulator(sms=200, recorded_context_fields=recorded)
    numbers = _all(run, "/phone_number/")
    templates = _all(run, "/sms_template/")
    added = {"press_1_to_accept", "was_ported"}
    if not recorded:
        assert not added & {name for n in numbers for name in n}
        assert all("owned_by" not in t for t in templates)
        return
    assert all(added <= set(n) for n in numbers)
    assert {n["press_1_to_accept"] for n in numbers} == {True, False}
    assert all(t["owned_by"] == t["created_by"] for t in templates)
    for number in numbers:
        assert not list(component_validator("PhoneNumber").iter_errors(number))
    one = run.get(f"/phone_number/{numbers[0]['id']}/").json()
    assert one == numbers[0]
