"""Close behaviours beyond its documentation, each behind an EmulatorConfig switch (off by default).

Evidence for each is in section 11 of the Close facts README; the sync must stay correct
whether or not real Close behaves so, so every switch is checked on and off over real HTTP.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from close_api_emulator import EmulatorConfig

from .support import all_events, all_sms

OUT = {"local_phone": "+16505551000", "remote_phone": "+16505550123", "text": "hi"}
DELETED_MID_QUERY = {"error": "Empty query: Document has been deleted."}
OVERRIDE = {"x-http-method-override": "GET"}


def _sms_events(run, sms_id):
    return all_events(run, object_type="activity.sms", object_id=sms_id)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ---- empty_query_on_delete ------------------------------------------------------------------


@pytest.mark.parametrize("switch", [True, False])
def test_a_delete_answers_the_next_offset_page_with_404_once(emulator, switch):
    run = emulator(sms=300, empty_query_on_delete=switch)
    session = run.session()
    victim = run.get("/activity/sms/").json()["data"][10]["id"]
    assert session.delete(f"{run.base_url}/activity/sms/{victim}/", timeout=10).status_code == 200

    assert run.get("/activity/sms/").status_code == 200  # _skip 0 does not meet it
    page = run.get("/activity/sms/", params={"_skip": 100, "_limit": 100})
    if switch:
        assert page.status_code == 404 and page.json() == DELETED_MID_QUERY
    else:
        assert page.status_code == 200
    again = run.get("/activity/sms/", params={"_skip": 100, "_limit": 100})
    assert again.status_code == 200 and len(again.json()["data"]) == 100
    item = run.get(f"/activity/sms/{victim}/")
    assert item.status_code == 404
    assert item.json() == {"error": "Empty query: Activity matching query does not exist."}


def test_a_lead_delete_arms_one_404_per_sms_it_deletes(emulator):
    run = emulator(sms=300, empty_query_on_delete=True)
    snap = run.emu.snapshot().values()
    lead = next(s["lead_id"] for s in snap if s["lead_id"])
    on_lead = sum(s["lead_id"] == lead for s in snap)
    assert run.session().delete(f"{run.base_url}/lead/{lead}/", timeout=10).status_code == 200
    statuses = [
        run.get("/activity/sms/", params={"_skip": 1}).status_code for _ in range(on_lead + 1)
    ]
    assert statuses == [404] * on_lead + [200]


# ---- ignored_filters, override_params_readable -----------------------------------------------


@pytest.mark.parametrize("ignored", [{"id__in"}, ["id__in"], ("id__in",), frozenset()])
def test_an_ignored_filter_answers_as_if_unfiltered(emulator, ignored):
    run = emulator(sms=300, ignored_filters=ignored)
    assert run.emu.config.ignored_filters == frozenset(ignored)
    newest = list(run.emu.snapshot())
    some = newest[150:153]
    body = run.get("/activity/sms/", params={"id__in": ",".join(some)}).json()
    got = [s["id"] for s in body["data"]]
    assert got == (newest[:100] if ignored else some)
    assert body["has_more"] is bool(ignored)


def test_an_ignored_date_window_reads_everything_but_other_filters_apply(emulator):
    run = emulator(sms=300, ignored_filters=frozenset({"date_created__gte", "date_created__lt"}))
    snap = list(run.emu.snapshot().values())
    window = {
        "date_created__gte": snap[200]["date_created"],
        "date_created__lt": snap[100]["date_created"],
    }
    assert [s["id"] for s in all_sms(run, **window)] == [s["id"] for s in snap]
    lead = snap[0]["lead_id"]
    assert [s["id"] for s in all_sms(run, lead_id=lead, **window)] == [
        s["id"] for s in snap if s["lead_id"] == lead
    ]


@pytest.mark.parametrize("readable", [True, False])
def test_override_body_read_or_ignored(emulator, readable):
    run = emulator(sms=300, override_params_readable=readable)
    newest = list(run.emu.snapshot())
    some = newest[150:153]
    resp = run.session().post(
        f"{run.base_url}/activity/sms/",
        json={"_params": {"id__in": some, "_limit": 3}},
        headers=OVERRIDE,
        timeout=10,
    )
    assert resp.status_code == 200
    assert [s["id"] for s in resp.json()["data"]] == (some if readable else newest[:100])
    malformed = run.session().post(
        f"{run.base_url}/activity/sms/", data=b"{not json", headers=OVERRIDE, timeout=10
    )
    assert malformed.status_code == (200 if not readable else 400)


def test_an_ignored_event_filter_answers_as_if_unfiltered(emulator):
    run = emulator(sms=300, ignored_event_filters={"object_type"})
    run.emu.delete_lead(run.emu.lead_ids()[-1])
    body = run.get(
        "/event/", params={"object_type": "activity.sms", "action": "deleted", "_limit": 50}
    ).json()
    assert {e["object_type"] for e in body["data"]} >= {"lead", "activity.sms"}


def test_bad_switch_values_are_refused():
    with pytest.raises(ValueError, match="date_updated__gt"):
        EmulatorConfig(ignored_filters={"date_updated__gt"})
    with pytest.raises(ValueError, match="set, list or tuple"):
        EmulatorConfig(ignored_filters="id__in")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="date_created__gte not a filter of /event/"):
        EmulatorConfig(ignored_event_filters={"date_created__gte"})
    with pytest.raises(ValueError, match="between 0 and 1"):
        EmulatorConfig(silent_delivery_failure_rate=1.5)
    with pytest.raises(ValueError, match="not be negative"):
        EmulatorConfig(delivery_outcome_delay_seconds=-1)


# ---- silent delivery failures --------------------------------------------------------------


def test_a_sent_sms_fails_later_without_an_event(emulator):
    run = emulator(sms=0, silent_delivery_failure_rate=1.0, delivery_outcome_delay_seconds=30)
    run.emu.clock.freeze()
    created = run.session().post(
        f"{run.base_url}/activity/sms/", json={"status": "outbox", **OUT}, timeout=10
    )
    sms_id = created.json()["id"]
    sent = run.get(f"/activity/sms/{sms_id}/").json()
    assert sent["status"] == "sent"
    events = _sms_events(run, sms_id)
    assert sorted(e["action"] for e in events) == ["created", "sent"]

    run.emu.clock.advance(29)
    assert run.get(f"/activity/sms/{sms_id}/").json()["status"] == "sent"
    run.emu.clock.advance(2)
    failed = run.get(f"/activity/sms/{sms_id}/").json()
    assert failed["status"] == "error" and failed["error_message"] == "Carrier rejected the message"
    assert _at(failed["date_updated"]) - _at(sent["date_sent"]) == timedelta(seconds=30)
    assert failed["date_sent"] == sent["date_sent"]
    assert _sms_events(run, sms_id) == events  # nothing in the event log


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_the_failing_share_follows_the_rate_and_is_reproducible(emulator, rate):
    def failed_texts() -> set[str]:
        run = emulator(sms=0, silent_delivery_failure_rate=rate)
        for k in range(200):
            run.emu.create_sms({"status": "outbox", **OUT, "text": f"message {k}"})
        run.emu.clock.advance(60)
        statuses = {s["text"]: s["status"] for s in all_sms(run)}
        assert set(statuses.values()) <= {"sent", "error"}
        return {text for text, status in statuses.items() if status == "error"}

    first, second = failed_texts(), failed_texts()
    assert first == second
    assert (30 <= len(first) <= 90) if rate else not first


def test_record_delivery_failure_at_once_whatever_the_config(emulator):
    run = emulator(sms=0)
    run.emu.clock.freeze()
    sms_id = run.emu.create_sms({"status": "sent", **OUT})["id"]
    events = _sms_events(run, sms_id)
    run.emu.clock.advance(90)
    run.emu.record_delivery_failure(sms_id)
    failed = run.get(f"/activity/sms/{sms_id}/").json()
    assert failed["status"] == "error" and failed["error_message"] == "Carrier rejected the message"
    assert _at(failed["date_updated"]) == run.emu.clock.now()
    assert _sms_events(run, sms_id) == events

    other = run.emu.create_sms({"status": "sent", **OUT})["id"]
    run.emu.record_delivery_failure(other, "Unreachable handset")
    assert run.get(f"/activity/sms/{other}/").json()["error_message"] == "Unreachable handset"
    inbound = run.emu.create_sms({"status": "inbox", "text": "hello"})["id"]
    with pytest.raises(ValueError, match="only a sent SMS"):
        run.emu.record_delivery_failure(inbound)
    with pytest.raises(KeyError):
        run.emu.record_delivery_failure("acti_missing")


# ---- imported history ------------------------------------------------------------------------

END = datetime(2026, 6, 1, tzinfo=timezone.utc)
CLOSE_FOUNDED = datetime(2013, 1, 1, tzinfo=timezone.utc)
EPOCH_DAY = datetime(1970, 1, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize("switch", [True, False])
def test_generated_imports_predate_close_and_reach_into_the_future(emulator, switch):
    run = emulator(sms=0, imported_history=switch)
    run.emu.clock.freeze(END)
    run.emu.generate(n=5000, seed=4)
    snap = list(run.emu.snapshot().values())
    old = [s["id"] for s in snap if _at(s["date_created"]) < CLOSE_FOUNDED]
    near_epoch = [s["id"] for s in snap if _at(s["date_created"]) < EPOCH_DAY]
    future = [s["id"] for s in snap if _at(s["date_created"]) > END]
    if not switch:
        assert old == near_epoch == future == []
        return
    assert 0.01 <= len(old) / len(snap) <= 0.03 and near_epoch
    assert 0.005 <= len(future) / len(snap) <= 0.02
    assert all(
        _at(s["date_created"]) <= END + timedelta(days=365)
        and _at(s["date_updated"]) <= END  # imported during the account's history
        for s in snap
    )
    assert [s["id"] for s in all_sms(run, date_created__lt="2013-01-01")] == old
    assert [s["id"] for s in all_sms(run, date_created__lt=EPOCH_DAY.isoformat())] == near_epoch
    assert [s["id"] for s in all_sms(run, date_created__gt=END.isoformat())] == future


def test_api_creates_sms_dated_before_close_at_the_epoch_and_in_the_future(emulator):
    run = emulator(sms=50)
    now = run.emu.clock.now()
    run.emu.clock.freeze(now)
    session = run.session()
    dates = {
        "epoch": "1970-01-01T00:00:00Z",
        "old": "2009-05-05T12:00:00.250Z",
        "future": (now + timedelta(days=200)).isoformat(),
    }
    created = {}
    for name, date_created in dates.items():
        resp = session.post(
            f"{run.base_url}/activity/sms/",
            json={"status": "inbox", "text": name, "date_created": date_created},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        created[name] = resp.json()
    assert created["epoch"]["date_created"] == "1970-01-01T00:00:00+00:00"
    assert created["old"]["date_created"] == "2009-05-05T12:00:00.250000+00:00"
    for sms in created.values():
        assert _at(sms["date_updated"]) == now  # saved now, whatever it is dated
        [event] = _sms_events(run, sms["id"])
        assert _at(event["date_created"]) == now

    def listed(**params: str) -> list[str]:
        return [s["text"] for s in all_sms(run, **params)]

    assert listed(date_created__lt="2013-01-01") == ["old", "epoch"]
    assert listed(date_created__lte="1970-01-01T00:00:00Z") == ["epoch"]
    assert listed(date_created__gt=now.isoformat()) == ["future"]
    assert all_sms(run)[0]["id"] == created["future"]["id"]  # newest first by date_created


# ---- empty event pages ---------------------------------------------------------------------


@pytest.mark.parametrize("switch", [True, False])
def test_empty_event_pages_still_reach_every_event_once(emulator, switch):
    start = datetime.now(timezone.utc) - timedelta(days=40)
    run = emulator(sms=2000, start=start, empty_event_pages=switch)
    params = {"object_type": "activity.sms", "action": "created", "_limit": 20}
    sizes, ids, cursor = [], [], None
    while True:
        query = dict(params, **({"_cursor": cursor} if cursor else {}))
        body = run.get("/event/", params=query).json()
        sizes.append(len(body["data"]))
        ids += [e["id"] for e in body["data"]]
        cursor = body["cursor_next"]
        if not cursor:
            break
    expected = [
        e["id"]
        for e in run.emu.events()
        if e["action"] == "created" and e["object_type"] == "activity.sms"
    ]
    assert len(expected) > 200 and ids == expected  # every event, once, newest first
    if switch:
        assert sizes[0] == 0 and 0 in sizes[1:-1]
    else:
        assert 0 not in sizes


def test_a_query_matching_nothing_ends_at_once_with_empty_pages_on(emulator):
    run = emulator(sms=0, empty_event_pages=True)
    body = run.get("/event/", params={"object_type": "activity.sms", "action": "deleted"}).json()
    assert body == {"data": [], "cursor_next": None, "cursor_previous": None}


# ---- page_order and unstable_tie_order ------------------------------------------------------


def _created(page: list[dict]) -> list[datetime]:
    return [_at(sms["date_created"]) for sms in page]


@pytest.mark.parametrize("order", ["newest_first", "oldest_first_pages"])
def test_pages_come_newest_first_unless_switched(emulator, order):
    run = emulator(sms=300, page_order=order)
    first, second = (
        run.get("/activity/sms/", params={"_skip": skip}).json()["data"] for skip in (0, 100)
    )
    newest_first = sorted(_created(first), reverse=True)
    if order == "newest_first":
        assert _created(first) == newest_first
    else:
        assert _created(first) == newest_first[::-1]
    # Either way the pages are the same slices of the listing: only the order inside changes.
    assert max(_created(second)) <= min(_created(first))


def _burst(run, size: int) -> None:
    moment = "2026-03-04T05:06:07.000000+00:00"
    for n in range(size):
        run.emu.create_sms({**OUT, "status": "sent", "date_created": moment, "text": f"b{n}"})


@pytest.mark.parametrize("switch", [True, False])
def test_sms_sharing_an_instant_are_ordered_anew_on_each_request(emulator, switch):
    run = emulator(sms=0, unstable_tie_order=switch)
    _burst(run, 60)
    orders = [[sms["id"] for sms in run.get("/activity/sms/").json()["data"]] for _ in range(3)]
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(orders[2])
    assert (orders[0] == orders[1] == orders[2]) is not switch
