"""Answers recorded from real Close that its documentation does not show (README of the Close
facts, sections 11 and 12), each behind an EmulatorConfig switch or an Emulator method.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from close_api_emulator import Emulator, EmulatorConfig

from .spec import component_validator, full_spec, validate_response
from .support import all_events, all_sms

END = datetime(2026, 6, 1, tzinfo=timezone.utc)
# A fixed span, so that two accounts of one seed are the same whenever they are made.
SPAN = {"start": END - timedelta(days=120), "end": END}
DELETED_MID_QUERY = {"error": "Empty query: Document has been deleted."}
OVERRIDE = {"x-http-method-override": "GET"}


def _ids(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [s["id"] for s in resp.json()["data"]]


def _page(run, **params):
    return run.get("/activity/sms/", params=params)


def _override(run, params):
    return run.session().post(
        f"{run.base_url}/activity/sms/", json={"_params": params}, headers=OVERRIDE, timeout=10
    )


# ---- a deleted SMS kept in the list index -----------------------------------------------------


def test_a_ghost_sms_breaks_every_page_that_includes_it_and_only_those(emulator):
    run = emulator(sms=300)
    newest = list(run.emu.snapshot())
    ghost = newest[10]
    run.emu.delete_sms(ghost, keep_in_index=True)

    assert run.get(f"/activity/sms/{ghost}/").status_code == 404
    assert [e["action"] for e in all_events(run, object_id=ghost, action="deleted")] == ["deleted"]
    for _ in range(3):  # on every request, not once
        page = _page(run, _skip=0, _limit=100)
        assert page.status_code == 404 and page.json() == DELETED_MID_QUERY
    assert _page(run, _skip=10, _limit=1).json() == DELETED_MID_QUERY
    assert _override(run, {"_skip": 5, "_limit": 20}).json() == DELETED_MID_QUERY
    # It keeps its position: the pages around it read as if it were still there.
    assert _ids(_page(run, _skip=0, _limit=10)) == newest[:10]
    assert _ids(_page(run, _skip=11, _limit=100)) == newest[11:111]
    assert _ids(_override(run, {"_skip": 11, "_limit": 5})) == newest[11:16]


def test_a_ghost_sms_breaks_id_in_queries_naming_it_and_filtered_pages_holding_it(emulator):
    run = emulator(sms=300)
    snap = run.emu.snapshot()
    newest = list(snap)
    ghost = newest[20]
    run.emu.delete_sms(ghost, keep_in_index=True)

    named = _page(run, id__in=",".join([newest[3], ghost, newest[40]]))
    assert named.status_code == 404 and named.json() == DELETED_MID_QUERY
    assert _ids(_page(run, id__in=",".join([newest[3], newest[40]]))) == [newest[3], newest[40]]
    lead = snap[ghost]["lead_id"]
    on_lead = _page(run, lead_id=lead)
    assert on_lead.status_code == 404
    # A date window that leaves it out answers normally.
    older = _page(run, date_created__lt=snap[ghost]["date_created"], _limit=5)
    assert all(snap[i]["date_created"] < snap[ghost]["date_created"] for i in _ids(older))


def test_a_client_can_read_past_a_ghost_one_position_at_a_time(emulator):
    run = emulator(sms=120)
    newest = list(run.emu.snapshot())
    run.emu.delete_sms(newest[50], keep_in_index=True)
    read, skip = [], 0
    while True:
        page = _page(run, _skip=skip, _limit=25)
        if page.status_code == 404:
            single = _page(run, _skip=skip, _limit=1)
            read += [] if single.status_code == 404 else _ids(single)
            skip += 1
            continue
        read += _ids(page)
        skip += len(page.json()["data"])
        if not page.json()["has_more"]:
            break
    assert read == newest[:50] + newest[51:]


def test_a_plain_delete_leaves_no_ghost(emulator):
    run = emulator(sms=300)
    newest = list(run.emu.snapshot())
    run.emu.delete_sms(newest[10])
    assert _ids(_page(run, _skip=0, _limit=100)) == newest[:10] + newest[11:101]


# ---- a 403 on one SMS ----------------------------------------------------------------------


def test_a_forbidden_sms_answers_403_and_lists_leave_it_out(emulator):
    run = emulator(sms=300)
    newest = list(run.emu.snapshot())
    hidden = newest[5]
    run.emu.forbid_sms(hidden)

    item = run.get(f"/activity/sms/{hidden}/")
    assert item.status_code == 403 and set(item.json()) == {"error"}
    assert run.get(f"/activity/sms/{newest[6]}/").status_code == 200
    assert run.get("/me/").status_code == 200
    assert _ids(_page(run, _limit=100)) == newest[:5] + newest[6:101]
    assert _ids(_page(run, id__in=f"{newest[4]},{hidden}")) == [newest[4]]
    assert _ids(_override(run, {"id__in": [hidden]})) == []
    assert hidden not in [s["id"] for s in all_sms(run)]
    with pytest.raises(KeyError):
        run.emu.forbid_sms("acti_doesnotexist")


# ---- the POST override refused ------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 405, None])
def test_the_method_override_can_be_refused(emulator, status):
    run = emulator(sms=30, refuse_method_override=status)
    resp = _override(run, {"_limit": 3})
    if status is None:
        assert len(_ids(resp)) == 3
    else:
        assert resp.status_code == status and isinstance(resp.json()["error"], str)
    assert len(_ids(_page(run, _limit=3))) == 3
    created = run.session().post(
        f"{run.base_url}/activity/sms/", json={"status": "inbox", "text": "x"}, timeout=10
    )
    assert created.status_code == 200


def test_refuse_method_override_accepts_only_400_or_405():
    with pytest.raises(ValueError, match="refuse_method_override must be None, 400 or 405"):
        EmulatorConfig(refuse_method_override=404)


# ---- real SMS fields ------------------------------------------------------------------------


def _account(**config):
    emu = Emulator(EmulatorConfig(**config))
    emu.generate(n=3000, seed=11, **SPAN)
    return list(emu.snapshot().values())


def test_recorded_fields_have_plausible_values_and_stay_within_the_spec(emulator):
    run = emulator(sms=3000, recorded_sms_fields=True)
    spec_fields = set(full_spec()["components"]["schemas"]["SMSActivity"]["properties"])
    page = _page(run, _limit=100)
    validate_response(page)
    validator = component_validator("SMSActivity")
    snap = list(run.emu.snapshot().values())
    for sms in snap:
        assert not list(validator.iter_errors(sms)), sms["id"]
        assert spec_fields <= set(sms)
        if sms["direction"] == "inbound":
            assert sms["caller_id_mode"] is None and sms["caller_id_reason"] is None
            assert sms["agent_config_id"] is None
        elif sms["caller_id_mode"] == "fixed":
            assert sms["caller_id_reason"] is None
        else:
            assert sms["caller_id_mode"] == "auto"
            assert sms["caller_id_reason"] in ("context", "local_presence", "fallback")
        assert (sms["agent_config_id"] is None) == (sms["agent_action_reason"] is None)
    outbound = [s for s in snap if s["direction"] == "outbound"]
    assert {s["caller_id_mode"] for s in outbound} == {"fixed", "auto"}
    assert {s["caller_id_reason"] for s in outbound} == {
        None,
        "context",
        "local_presence",
        "fallback",
    }
    agents = [s for s in outbound if s["agent_config_id"]]
    assert 0.02 < len(agents) / len(outbound) < 0.09
    assert 1 < len({s["agent_config_id"] for s in agents}) <= 3
    assert _account() == _account()  # the defaults are untouched
    assert "caller_id_mode" not in _account()[0]


def test_recorded_sources_are_outside_the_spec_enum_and_nothing_else_is():
    snap = _account(recorded_sms_fields=True, recorded_sources=True)
    validator = component_validator("SMSActivity")
    off_spec = [s for s in snap if s["source"] not in ("Close.io", "External")]
    assert {s["source"] for s in off_spec} == {"ai", "whatsapp", "webform"}
    assert all(s["direction"] == "outbound" for s in off_spec if s["source"] == "ai")
    assert all(s["agent_config_id"] for s in off_spec if s["source"] == "ai")
    for sms in snap:
        errors = [list(e.path) for e in validator.iter_errors(sms)]
        assert errors == ([["source"]] if sms in off_spec else []), sms["id"]


def test_undeclared_fields_come_in_mixed_types_with_nulls(emulator):
    run = emulator(sms=600, undeclared_fields=5)
    spec_fields = set(full_spec()["components"]["schemas"]["SMSActivity"]["properties"])
    extra = ["import_id", "x_extra_1", "x_extra_2", "x_extra_3", "x_extra_4"]
    listed = all_sms(run)
    assert listed == list(run.emu.snapshot().values())
    validator = component_validator("SMSActivity")
    for sms in listed:
        assert [name for name in sms if name not in spec_fields | {"attachments"}] == extra
        assert not list(validator.iter_errors(sms))
    kinds = {name: {type(s[name]) for s in listed} for name in extra}
    assert kinds == {
        "import_id": {str, type(None)},
        "x_extra_1": {str, type(None)},
        "x_extra_2": {int, type(None)},
        "x_extra_3": {bool, type(None)},
        "x_extra_4": {str, type(None)},
    }
    one = listed[0]["id"]
    assert run.get(f"/activity/sms/{one}/").json() == listed[0]
    with pytest.raises(ValueError, match="undeclared_fields must be a whole number"):
        EmulatorConfig(undeclared_fields=-1)


# ---- hostile texts -------------------------------------------------------------------------


def test_hostile_texts_round_trip_over_http_and_change_nothing_else(emulator):
    run = emulator(sms=2000, seed=5, hostile_texts=True, **SPAN)
    snap = run.emu.snapshot()
    texts = [s["text"] for s in snap.values()]
    assert "" in texts and any("\x00" in (t or "") for t in texts)
    assert any("\r\n" in (t or "") for t in texts) and any("\t" in (t or "") for t in texts)
    assert any("\u0301" in (t or "") for t in texts)  # a combining mark
    assert any("\u05e9" in (t or "") for t in texts)  # Hebrew, right to left
    assert any("\\" in (t or "") and '"' in (t or "") for t in texts)
    assert max(len(t or "") for t in texts) >= 100_000
    # Over HTTP the same strings arrive, NUL bytes and all.
    assert {s["id"]: s["text"] for s in all_sms(run)} == {i: s["text"] for i, s in snap.items()}

    plain = emulator(sms=2000, seed=5, **SPAN).emu.snapshot()
    again = emulator(sms=2000, seed=5, hostile_texts=True, **SPAN).emu.snapshot()
    assert again == snap  # deterministic by seed
    assert list(plain) == list(snap)
    changed = [i for i in snap if snap[i] != plain[i]]
    assert 0.02 < len(changed) / len(snap) < 0.09
    for sms_id in changed:
        differ = {k for k in snap[sms_id] if snap[sms_id][k] != plain[sms_id][k]}
        assert differ <= {"text", "cost"}, differ
