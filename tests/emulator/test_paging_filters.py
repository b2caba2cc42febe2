"""SMS list paging, limits, filters and the generic /activity/ rules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .spec import validate_response
from .support import all_sms

SKIP_MSG = (
    "The skip you set is larger than the maximum skip for this resource "
    "(max_skip = {n}). Please refine your search query."
)


def test_offset_paging_is_newest_first_and_complete(emulator):
    run = emulator(sms=700)
    items = all_sms(run)
    snap = run.emu.snapshot()
    assert [s["id"] for s in items] == list(snap)  # snapshot is in listing order, too
    assert len({s["id"] for s in items}) == len(snap)
    created = [s["date_created"] for s in items]
    assert created == sorted(created, reverse=True)


def test_ties_are_paged_deterministically(emulator):
    run = emulator(sms=600, filter_precision="millisecond")
    counts: dict[str, int] = {}
    for sms in run.emu.snapshot().values():
        counts[sms["date_created"]] = counts.get(sms["date_created"], 0) + 1
    burst_at, size = max(counts.items(), key=lambda kv: kv[1])
    assert size >= 150
    params = {"date_created__gte": burst_at, "date_created__lte": burst_at}
    first = [s["id"] for s in all_sms(run, **params)]
    second = [s["id"] for s in all_sms(run, **params)]
    assert first == second and len(first) == size == len(set(first))


def test_limits_and_skip_caps(emulator):
    run = emulator(sms=50, max_limit=20, max_skip=30)
    assert len(run.get("/activity/sms/", params={"_limit": 20}).json()["data"]) == 20
    resp = run.get("/activity/sms/", params={"_limit": 21})
    assert resp.status_code == 400 and "max_limit = 20" in resp.json()["error"]
    resp = run.get("/activity/sms/", params={"_skip": 31})
    assert resp.status_code == 400
    assert resp.json() == {"error": SKIP_MSG.format(n=30)}
    validate_response(resp)
    assert run.get("/activity/sms/", params={"_skip": 30, "_limit": 20}).status_code == 200
    assert run.get("/activity/sms/", params={"_limit": "x"}).status_code == 400


def test_default_max_skip_message(emulator):
    run = emulator(sms=5)
    resp = run.get("/activity/sms/", params={"_skip": 250_100, "_limit": 100})
    assert resp.json() == {"error": SKIP_MSG.format(n=250000)}


def test_unknown_params_ignored_by_default_and_rejectable(emulator):
    run = emulator(sms=40)
    ignored = run.get("/activity/sms/", params={"date_updated__gt": "2030-01-01", "_limit": 100})
    assert ignored.status_code == 200 and len(ignored.json()["data"]) == len(run.emu.snapshot())
    strict = emulator(sms=5, unknown_params="reject")
    resp = strict.get("/activity/sms/", params={"date_updated__gt": "2030-01-01"})
    assert resp.status_code == 400
    assert resp.json() == {"errors": [], "field-errors": {"date_updated__gt": "Unknown parameter."}}


def test_id_lead_contact_user_filters(emulator):
    run = emulator(sms=400)
    snap = list(run.emu.snapshot().values())
    some = snap[5:12]
    got = run.get("/activity/sms/", params={"id__in": ",".join(s["id"] for s in some)}).json()
    assert [s["id"] for s in got["data"]] == [s["id"] for s in some]
    for field in ("lead_id", "contact_id", "user_id"):
        value = next(s[field] for s in snap if s[field])
        expected = [s["id"] for s in snap if s[field] == value]
        assert [s["id"] for s in all_sms(run, **{field: value})] == expected
    two = [s["lead_id"] for s in snap if s["lead_id"]][:2]
    expected = [s["id"] for s in snap if s["lead_id"] in two]
    assert [s["id"] for s in all_sms(run, lead_id=",".join(two))] == expected
    assert run.get("/activity/sms/", params={"lead_id": "lead_unknown"}).json()["data"] == []


def test_date_windows_millisecond_precision(emulator):
    run = emulator(sms=400, filter_precision="millisecond")
    snap = list(run.emu.snapshot().values())
    lo, hi = snap[300]["date_created"], snap[100]["date_created"]
    window = [s["id"] for s in snap if lo < s["date_created"] <= hi]
    got = all_sms(run, date_created__gt=lo, date_created__lte=hi)
    assert [s["id"] for s in got] == window
    got = all_sms(run, date_created__gte=lo, date_created__lt=hi)
    assert [s["id"] for s in got] == [s["id"] for s in snap if lo <= s["date_created"] < hi]


def test_second_precision_drops_the_fraction(emulator):
    run = emulator(sms=0, filter_precision="second")
    a = run.emu.create_sms(
        {"status": "inbox", "text": "a", "date_created": "2026-03-01T10:00:00.200Z"}
    )
    b = run.emu.create_sms(
        {"status": "inbox", "text": "b", "date_created": "2026-03-01T10:00:00.700Z"}
    )
    got = run.get("/activity/sms/", params={"date_created__gt": "2026-03-01T10:00:00.500Z"}).json()
    # gt 10:00:00.500 is honoured as gt 10:00:00, so both come back.
    assert {s["id"] for s in got["data"]} == {a["id"], b["id"]}
    ms = emulator(sms=0, filter_precision="millisecond")
    ms.emu.create_sms({"status": "inbox", "text": "a", "date_created": "2026-03-01T10:00:00.200Z"})
    got = ms.get("/activity/sms/", params={"date_created__gt": "2026-03-01T10:00:00.500Z"}).json()
    assert got["data"] == []


def test_date_only_values_and_tz_offset(emulator):
    run = emulator(sms=0)
    sms = run.emu.create_sms(
        {"status": "inbox", "text": "a", "date_created": "2026-03-01T02:00:00Z"}
    )
    assert run.get("/activity/sms/", params={"date_created__gte": "2026-03-01"}).json()["data"]
    # 2026-03-01T00:00 at UTC-4 is 04:00 UTC, after the SMS.
    resp = run.get(
        "/activity/sms/",
        params={"date_created__gte": "2026-03-01T00:00:00"},
        headers={"x-tz-offset": "-4"},
    )
    assert resp.json()["data"] == []
    assert run.get("/activity/sms/", params={"date_created__gt": "garbage"}).status_code == 400
    assert sms["id"]


def test_activity_at_filters(emulator):
    run = emulator(sms=300)
    snap = list(run.emu.snapshot().values())
    pivot = sorted(s["activity_at"] for s in snap)[150]
    expected = [s["id"] for s in snap if s["activity_at"] >= pivot]
    assert [s["id"] for s in all_sms(run, activity_at__gte=pivot)] == expected


def test_generic_activity_endpoint_rules(emulator):
    run = emulator(sms=200)
    snap = list(run.emu.snapshot().values())
    body = run.get("/activity/", params={"_limit": 10}).json()
    assert [s["id"] for s in body["data"]] == [s["id"] for s in snap[:10]]
    assert (
        run.get("/activity/", params={"_type": "Call", "lead_id": snap[0]["lead_id"]}).json()[
            "data"
        ]
        == []
    )
    assert run.get("/activity/", params={"user_id": snap[0]["user_id"]}).status_code == 400
    assert run.get("/activity/", params={"_order_by": "-activity_at"}).status_code == 400
    assert run.get("/activity/", params={"activity_at__gt": "2020-01-01"}).status_code == 400
    lead = snap[0]["lead_id"]
    by_aa = run.get(
        "/activity/", params={"lead_id": lead, "_order_by": "-activity_at", "_type": "SMS"}
    ).json()["data"]
    assert [s["activity_at"] for s in by_aa] == sorted(
        (s["activity_at"] for s in by_aa), reverse=True
    )
    assert {s["id"] for s in by_aa} == {s["id"] for s in snap if s["lead_id"] == lead}
    asc = all_sms(run, path="/activity/", _order_by="date_created")
    assert [s["id"] for s in asc] == [s["id"] for s in reversed(snap)]


def test_large_store_window_query_is_indexed(emulator):
    run = emulator(sms=20_000, seed=11)
    end = run.emu.clock.now()
    lo = (end - timedelta(days=3)).astimezone(timezone.utc).isoformat()
    items = all_sms(run, date_created__gte=lo)
    snap = list(run.emu.snapshot().values())
    cutoff = datetime.fromisoformat(lo).replace(microsecond=0)
    assert [s["id"] for s in items] == [
        s["id"] for s in snap if datetime.fromisoformat(s["date_created"]) >= cutoff
    ]
