"""The context SMS point to (users, statuses, templates, numbers, leads, contacts): loaded with
the SMS, kept current from the event log in one incremental run, checked, and priced."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from typing import Any

import pytest

from tests.support import (
    as_target,
    context_mismatches,
    count,
    mismatches,
    run_cli,
    sync,
    unresolved_references,
)

CONTEXT_TABLES = ("users", "lead_statuses", "sms_templates", "phone_numbers", "leads", "contacts")
CONTEXT_PATHS = (
    "/user/",
    "/status/lead/",
    "/custom_field/lead/",
    "/sms_template/",
    "/phone_number/",
    "/lead/",
    "/contact/",
)


def _paths(running: Any, since: int = 0) -> Counter[str]:
    return Counter(r.path.removeprefix("/api/v1") for r in running.emu.request_log[since:])


def _context_requests(records: list[Any]) -> int:
    """Requests only the context makes: its endpoints, and the event log's lead and contact pages."""
    return sum(
        1
        for r in records
        if r.path.removeprefix("/api/v1").startswith(CONTEXT_PATHS)
        or r.params.get("object_type") in ("lead", "contact")
    )


def _tables(target: Any) -> set[str]:
    rows = target.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'close_sms'"
    )
    return {row[0] for row in rows}


def test_a_backfill_resolves_every_reference_with_typed_custom_fields(emulator, target):
    running = emulator(sms=800, seed=5)

    sync(running, target, lead_custom_fields=["Industry", "Employees", "Renewal date"])

    assert unresolved_references(target) == {
        "user_id": 0,
        "lead_id": 0,
        "contact_id": 0,
        "template_id": 0,
    }
    assert context_mismatches(target, running.emu) == []
    assert count(target, "SELECT count(*) FROM close_sms.users WHERE NOT is_active") > 0
    assert count(target, "SELECT count(*) FROM close_sms.phone_numbers WHERE is_group_number") > 0
    with running.emu.lock:
        crm = running.emu.store.crm
        ids = {cf.name: cf.id for cf in crm.fields.values()}
        lead = next(lead for lead in crm.leads.values() if len(lead.custom) >= 3)
        want = (lead.custom.get(ids["Industry"]), lead.custom.get(ids["Employees"]))
        renewal = lead.custom.get(ids["Renewal date"])
    industry, employees, renewal_date = target.query(
        f"SELECT industry, employees, renewal_date FROM close_sms.leads WHERE id = '{lead.id}'"
    )[0]
    assert (industry, employees) == (want[0], float(want[1]) if want[1] is not None else None)
    assert isinstance(employees, float | None)
    assert renewal is None or renewal_date.isoformat() == str(renewal)[:10]


def _referenced(emu, column: str) -> list[str]:
    return sorted({s[column] for s in emu.snapshot().values() if s[column]})


@pytest.mark.parametrize("merge_events", ["all", "lead_only"])
def test_renames_deletes_and_merges_arrive_in_one_incremental_run(emulator, target, merge_events):
    running = emulator(sms=800, seed=7, merge_events=merge_events)
    emu = running.emu
    sync(running, target)
    assert context_mismatches(target, emu) == []

    leads = _referenced(emu, "lead_id")
    contacts = _referenced(emu, "contact_id")
    with emu.lock:
        crm = emu.store.crm
        statuses = list(crm.statuses)
        user = next(iter(crm.users))
        template = next(iter(crm.templates))
        number = next(iter(crm.numbers))
        on_other_leads = [c for c in contacts if crm.contacts[c].lead_id not in leads[:4]]
    emu.rename_lead(leads[0], "Renamed Inc.")
    emu.set_lead_status(leads[1], statuses[-1])
    emu.delete_lead(leads[2])
    emu.update_contact(on_other_leads[0], {"name": "Renamed Person", "title": "CTO"})
    emu.delete_contact(on_other_leads[1])
    moved = [s["id"] for s in emu.snapshot().values() if s["lead_id"] == leads[3]]
    emu.merge_leads(leads[3], leads[4])
    emu.rename_user(user, "New", "Name")
    emu.deactivate_user(user)
    emu.rename_template(template, "Renamed template")
    emu.relabel_number(number, "Renamed number")
    emu.clock.advance(120)

    # The small tables have no events: read again because their hour is up.
    emu.clock.advance(3700)
    sync(running, target)

    assert context_mismatches(target, emu) == []
    assert moved
    on_lead = dict(target.query("SELECT id, lead_id FROM close_sms.sms"))
    assert {on_lead[sms_id] for sms_id in moved} == {leads[4]}
    assert count(target, f"SELECT count(*) FROM close_sms.leads WHERE id = '{leads[3]}'") == 0


@pytest.mark.parametrize("ignored", ["lead.id__in", "contact.id__in"])
def test_an_ignored_id_in_filter_falls_back_to_one_documented_get_per_object(
    emulator, tmp_path, ignored
):
    # Close's spec lists no id__in on /lead/ or /contact/: an answer that ignores it is read
    # past, each object then asked for by its own GET, which Close documents.
    running = emulator(sms=500, seed=9, ignored_context_filters={ignored})
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    assert context_mismatches(database, emu) == []
    kind = ignored.split(".")[0]
    with emu.lock:
        crm = emu.store.crm
        # An unfiltered answer to a request for one object holds the oldest one.
        lead = next(i for i in _referenced(emu, "lead_id") if i != next(iter(crm.leads)))
        contacts = [
            i
            for i in _referenced(emu, "contact_id")
            if i != next(iter(crm.contacts)) and crm.contacts[i].lead_id != lead
        ][:3]
    if kind == "lead":
        emu.rename_lead(lead, "Renamed")
        renamed = "SELECT count(*) FROM close_sms.leads WHERE name = 'Renamed'"
    else:
        for contact in contacts:
            emu.update_contact(contact, {"name": "Renamed"})
        renamed = "SELECT count(*) FROM close_sms.contacts WHERE name = 'Renamed'"
    sms = next(iter(emu.snapshot().values()))
    emu.create_sms(
        {k: sms[k] for k in ("lead_id", "contact_id", "remote_phone", "local_phone")}
        | {"status": "inbox", "direction": "inbound", "text": "new"}
    )
    emu.clock.advance(120)
    since = len(emu.request_log)

    result = run_cli(
        "sync",
        "--database",
        str(database),
        "--base-url",
        running.base_url,
        api_key=running.api_key,
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    warning = f"close-sms: warning: Close ignored the id__in filter of /{kind}/"
    assert [line for line in result.stderr.splitlines() if line.startswith(warning)]
    assert count(database, renamed) == (1 if kind == "lead" else len(contacts))
    assert context_mismatches(database, emu) == []
    asked = [r for r in emu.request_log[since:] if r.path.startswith(f"/api/v1/{kind}/")]
    # id__in is tried first, and not again after the answer that ignored it; then one GET of
    # each object.
    assert [r for r in asked if "id__in" in r.params] == asked[:1]
    items = [r for r in asked if r.path != f"/api/v1/{kind}/"]
    assert len(items) == len(asked) - 1 == (1 if kind == "lead" else len(contacts))


def test_leads_and_contacts_close_answers_403_for_are_kept_counted_and_the_run_goes_on(
    emulator, tmp_path
):
    running = emulator(sms=800, seed=15)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    leads = _referenced(emu, "lead_id")
    with emu.lock:
        crm = emu.store.crm
        contact = next(
            i for i in _referenced(emu, "contact_id") if crm.contacts[i].lead_id not in leads[:2]
        )
        number = next(iter(crm.numbers))
    # Changes this key may not read, each a record Close answers 403 for, and one it may.
    emu.rename_lead(leads[0], "Hidden")
    emu.forbid_object("lead", leads[0])
    emu.update_contact(contact, {"name": "Hidden"})
    emu.forbid_object("contact", contact)
    emu.forbid_object("phone_number", number)
    emu.rename_lead(leads[1], "Visible")
    emu.clock.advance(3700)  # the small tables are read again

    since = len(emu.request_log)

    report = sync(running, database)

    assert sum(chunk.context_unreadable for chunk in report.chunks) == 2
    lead_names = _by_id(database, "leads")
    assert lead_names[leads[1]] == "Visible"
    assert lead_names[leads[0]] not in (None, "Hidden")
    assert _by_id(database, "contacts")[contact] not in (None, "Hidden")
    # A small table read whole is the proof of what Close no longer holds: the number the
    # list leaves out is removed, without asking for it alone.
    assert number not in _by_id(database, "phone_numbers", "label")
    assert not [r for r in emu.request_log[since:] if r.path.endswith(f"/{number}/")]


def _by_id(database: Any, table: str, column: str = "name") -> dict[str, Any]:
    """`column` of every row of a context table, by id."""
    return dict(as_target(database).query(f"SELECT id, {column} FROM close_sms.{table}"))


def test_many_leads_gone_without_events_stop_the_run_unless_allowed(emulator, tmp_path):
    running = emulator(sms=2400, seed=17)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    leads = _referenced(emu, "lead_id")
    kept, merged = leads[:10], leads[10:]
    assert len(merged) > 100  # the guard lets 100 removals through, whatever the share
    for n, source in enumerate(merged):
        emu.merge_leads(source, kept[n % len(kept)])
    # The merges' events leave the log: only each merged lead's own 404 says it is gone.
    emu.clock.advance(31 * 86400)
    before = count(database, "SELECT count(*) FROM close_sms.leads")

    def sync_cli(*options: str) -> Any:
        arguments = ("--database", str(database), "--base-url", running.base_url, *options)
        return run_cli("sync", *arguments, api_key=running.api_key, cwd=tmp_path)

    refused = sync_cli()

    assert refused.returncode == 7, refused.stderr
    assert re.search(rf"would remove 1\d\d of the {before} leads", refused.stderr)
    assert count(database, "SELECT count(*) FROM close_sms.leads") == before

    allowed = sync_cli("--allow-mass-delete")

    assert allowed.returncode == 0, allowed.stderr
    assert context_mismatches(database, emu) == []
    assert count(database, "SELECT count(*) FROM close_sms.leads") == len(kept)


def test_context_off_loads_no_context_and_asks_for_none(emulator, target):
    running = emulator(sms=500, seed=11)
    sync(running, target, context=False)
    running.emu.clock.advance(4000)
    sync(running, target, context=False)

    # The views need the context tables: they are there, empty, so names are null.
    for table in set(CONTEXT_TABLES) & _tables(target):
        assert target.query(f"SELECT count(*) FROM close_sms.{table}") == [(0,)], table
    asked = _paths(running)
    assert not [path for path in asked if path.startswith(CONTEXT_PATHS)]
    assert asked["/event/"] and not [
        r for r in running.emu.request_log if r.params.get("object_type") in ("lead", "contact")
    ]


def test_the_context_costs_few_requests(emulator, tmp_path):
    off = emulator(sms=4000, seed=13)
    on = emulator(sms=4000, seed=13)
    sync(off, tmp_path / "off.duckdb", context=False)
    sync(on, tmp_path / "on.duckdb")
    first_off, first_on = len(off.emu.request_log), len(on.emu.request_log)
    # The SMS reads' own count varies with how the backfill's workers split their windows, so
    # the context's cost is counted request by request, against the SMS-only sync.
    context_cost = _context_requests(on.emu.request_log)
    assert context_cost <= first_off * 0.15, (first_off, _paths(on) - _paths(off))

    for running in (off, on):
        running.emu.clock.advance(120)
    sync(off, tmp_path / "off.duckdb", context=False)
    sync(on, tmp_path / "on.duckdb")
    quiet_off = len(off.emu.request_log) - first_off
    quiet_on = _context_requests(on.emu.request_log[first_on:])
    assert quiet_on <= 8, (_paths(on, first_on), _paths(off, first_off))
    assert len(on.emu.request_log) - first_on <= quiet_off + 8
    assert not [p for p in _paths(on, first_on) if p.startswith(("/user/", "/sms_template/"))]

    # An hour on, the small tables are read again.
    since = len(on.emu.request_log)
    on.emu.clock.advance(3700)
    sync(on, tmp_path / "on.duckdb")
    assert _paths(on, since)["/user/"] == 1


def test_the_sms_of_a_merge_are_read_past_one_close_deleted_but_still_lists(emulator, tmp_path):
    # The merge logs only the lead events: the SMS now on the destination are listed by
    # lead_id, and every page holding the deleted SMS Close still indexes answers 404.
    running = emulator(sms=600, seed=29, merge_events="lead_only")
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    by_lead = Counter(s["lead_id"] for s in emu.snapshot().values() if s["lead_id"])
    destination, source = [lead for lead, _ in by_lead.most_common(2)]
    ghost = min(i for i, s in emu.snapshot().items() if s["lead_id"] == destination)
    emu.delete_sms(ghost, keep_in_index=True)
    emu.merge_leads(source, destination)
    emu.clock.advance(120)

    report = sync(running, database)

    assert mismatches(database, emu.snapshot()) == []
    assert report.skipped_positions >= 1
    assert context_mismatches(database, emu) == []


def test_a_status_gone_from_the_list_is_removed_without_asking_for_it_alone(emulator, tmp_path):
    # Close documents no GET of one lead status (here it answers 405): the list read to its
    # last page is the proof that a status is gone.
    running = emulator(sms=300, seed=19, status_item_get_refused=True)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    statuses = set(_by_id(database, "lead_statuses", "label"))
    with emu.lock:
        crm = emu.store.crm
        gone, kept = sorted(crm.statuses)[:2]
        on_gone = [lead.id for lead in crm.leads.values() if lead.status_id == gone]
    # Close refuses to delete a status leads are on: they move first.
    for lead in on_gone:
        emu.set_lead_status(lead, kept)
    emu.delete_lead_status(gone)
    emu.clock.advance(3700)  # the small tables are read again
    since = len(emu.request_log)

    report = sync(running, database)

    assert report.context_failures == {}
    assert set(_by_id(database, "lead_statuses", "label")) == statuses - {gone}
    assert context_mismatches(database, emu) == []
    status_paths = {r.path for r in emu.request_log[since:] if "/status/lead/" in r.path}
    assert status_paths == {"/api/v1/status/lead/"}


def test_a_lead_changed_soon_after_its_creation_arrives_by_its_created_event(emulator, tmp_path):
    # Close folds changes made shortly after a create into the `created` event, which then
    # carries the object as it is now: no `updated` event ever names them.
    running = emulator(sms=300, seed=21, fold_updates_into_created=True)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    phone = "+16505550123"
    lead = emu.create_lead("Fresh Start Inc.", [{"name": "Nia First", "phone": phone}])
    contact = lead["contact_ids"][0]
    local = next(iter(emu.snapshot().values()))["local_phone"]
    emu.create_sms(
        {"lead_id": lead["id"], "contact_id": contact, "remote_phone": phone}
        | {"local_phone": local, "status": "inbox", "direction": "inbound", "text": "hello"}
    )
    emu.clock.advance(5)
    sync(running, database)
    assert _by_id(database, "leads")[lead["id"]] == "Fresh Start Inc."
    assert _by_id(database, "contacts")[contact] == "Nia First"

    emu.rename_lead(lead["id"], "Fresh Start Holdings")
    emu.update_contact(contact, {"name": "Nia Renamed"})
    assert [e["action"] for e in emu.events() if e["object_id"] in (lead["id"], contact)] == [
        "created",
        "created",
    ]
    emu.clock.advance(120)
    sync(running, database)

    assert _by_id(database, "leads")[lead["id"]] == "Fresh Start Holdings"
    assert _by_id(database, "contacts")[contact] == "Nia Renamed"
    assert context_mismatches(database, emu) == []


@pytest.mark.parametrize("sms_text", ["hash", "drop"])
def test_template_texts_are_hashed_or_dropped_as_sms_texts_are(emulator, tmp_path, sms_text):
    # An SMS sent from a template without placeholders has exactly the template's text.
    running = emulator(sms=200, seed=23)
    database = tmp_path / "warehouse.duckdb"
    key = "template-text-key-2f9c0d4e7a1b"

    sync(running, database, sms_text=sms_text, hash_key=key)

    with running.emu.lock:
        texts = {t.id: t.text for t in running.emu.store.crm.templates.values()}
    stored = _by_id(database, "sms_templates", "text")
    if sms_text == "drop":
        assert stored == dict.fromkeys(texts)
    else:
        assert stored == {
            i: hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()
            for i, text in texts.items()
        }
