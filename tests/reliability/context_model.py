"""The randomized model's share of the context: how an account serves it, the changes made to
it, and the faults that make one context table's read fail.

An account serves the context as Close documents it or as the emulator does by default: a GET
of one lead status answering 405 or not, `id__in` ignored on `/lead/` or `/contact/` or not,
changes made soon after a lead's creation folded into its `created` event or not, fields the
sync declares no column for. Faults on a context endpoint (403 on a small table's list, or a
5xx burst that outlasts the retries) fail that table alone: the run exits 9 with its SMS loaded.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from close_api_emulator.faults import FaultInjector

if TYPE_CHECKING:
    from tests.reliability.model import Scenario

# Context changes and their weights.
CONTEXT_CHANGES = {
    "rename_lead": 3,
    "set_lead_status": 3,
    "update_contact": 3,
    "move_contact": 2,
    "delete_contact": 2,
    "delete_lead": 3,
    "merge_leads": 3,
    "create_lead": 3,
    "delete_lead_status": 1,
    "rename_user": 2,
    "add_user": 1,
    "deactivate_user": 1,
    "rename_template": 2,
    "relabel_number": 2,
}
# Lists the sync reads whole and never an item of: a 403 there fails the table's read. A 403 on
# a lead or contact GET would be that object's (kept as it is), so those get 5xx bursts only.
SMALL_LISTS = ("/user/", "/status/lead/", "/sms_template/", "/phone_number/")
CONTEXT_PATHS = (*SMALL_LISTS, "/lead/", "/contact/")
# More 5xx answers in a row than the model's syncs retry (SOURCES__CLOSE_SMS__MAX_RETRIES=6).
OUTLASTING_5XX = 8
# Statuses kept, so that leads always have one to move to.
MIN_STATUSES = 2


# The switches of `EmulatorConfig` that `context_config` sets.
CONTEXT_SWITCHES = (
    "status_item_get_refused",
    "ignored_context_filters",
    "fold_updates_into_created",
    "recorded_context_fields",
)


def context_config(rng: random.Random) -> dict[str, Any]:
    """How one account serves the context: the `CONTEXT_SWITCHES` of `EmulatorConfig`."""
    return {
        "status_item_get_refused": rng.random() < 0.5,
        "ignored_context_filters": {
            name for name in ("lead.id__in", "contact.id__in") if rng.random() < 0.3
        },
        "fold_updates_into_created": rng.random() < 0.5,
        "recorded_context_fields": rng.random() < 0.5,
    }


def arm_context_fault(rng: random.Random, faults: FaultInjector) -> str:
    """Arm a fault that fails one context table's read in the next sync; what was armed."""
    if rng.random() < 0.5:
        path = rng.choice(SMALL_LISTS)
        faults.add("403", rng.randint(1, 2), path)
        return f"403 on {path}"
    path = rng.choice(CONTEXT_PATHS)
    faults.add(rng.choice(["502", "503", "504"]), OUTLASTING_5XX, path)
    return f"{OUTLASTING_5XX} x 5xx on {path}"


def context_change(
    scenario: Scenario, kind: str, snapshot: dict[str, dict[str, Any]]
) -> list[str] | None:
    """A change to a lead, contact, status, user, template or number; the ids it touched (the
    SMS a delete or merge moved included), or None when there was nothing to change."""
    rng = scenario.rng
    emu = scenario.emu
    mark = rng.randint(1, 10**6)
    with emu.lock:
        crm = emu.store.crm
        leads = sorted({s["lead_id"] for s in snapshot.values()} & crm.leads.keys())
        contacts = sorted({s["contact_id"] for s in snapshot.values()} & crm.contacts.keys())
        # The SMS the model creates name the template's lead and contact: they stay.
        removable = [lead for lead in leads if lead != scenario.template["lead_id"]]
        movable = [c for c in contacts if c != scenario.template["contact_id"]]
        users, statuses = sorted(crm.users), sorted(crm.statuses)
        templates, numbers = sorted(crm.templates), sorted(crm.numbers)
        if kind in ("rename_lead", "set_lead_status") and leads:
            lead = rng.choice(leads)
            if kind == "rename_lead":
                emu.rename_lead(lead, f"Lead {mark}")
            else:
                emu.set_lead_status(lead, rng.choice(statuses))
            return [lead]
        if kind == "update_contact" and contacts:
            contact = rng.choice(contacts)
            title = rng.choice([None, "CTO", f"Buyer {mark}"])
            emu.update_contact(contact, {"name": f"Person {mark}", "title": title})
            return [contact]
        if kind == "move_contact" and movable and len(leads) > 1:
            contact = rng.choice(movable)
            before = crm.contacts[contact].lead_id
            after = rng.choice([lead for lead in leads if lead != before])
            emu.update_contact(contact, {"lead_id": after})
            return [contact, before, after]
        if kind == "delete_contact" and movable:
            contact = rng.choice(movable)
            emu.delete_contact(contact)
            return [contact]
        if kind == "delete_lead" and removable:
            lead = rng.choice(removable)
            gone = [lead, *crm.leads[lead].contact_ids]
            return [*gone, *emu.delete_lead(lead)]
        if kind == "merge_leads" and removable and len(leads) > 1:
            source = rng.choice(removable)
            destination = rng.choice([lead for lead in leads if lead != source])
            moved = [i for i, s in snapshot.items() if s["lead_id"] == source]
            touched = [source, destination, *crm.leads[source].contact_ids, *moved]
            emu.merge_leads(source, destination)
            return touched
        if kind == "create_lead":
            return _create_lead(scenario, mark)
        if kind == "delete_lead_status" and len(statuses) > MIN_STATUSES:
            gone = rng.choice(statuses)
            kept = [status for status in statuses if status != gone]
            # Close refuses to delete a status leads are on: they move first.
            moved = [lead.id for lead in crm.leads.values() if lead.status_id == gone]
            for lead in moved:
                emu.set_lead_status(lead, rng.choice(kept))
            emu.delete_lead_status(gone)
            return [gone, *moved]
        return _change_people_and_numbers(scenario, kind, mark, users, templates, numbers)


def _create_lead(scenario: Scenario, mark: int) -> list[str]:
    """A new lead with one contact and an SMS from it; half the time renamed at once, which
    Close may fold into the lead's `created` event."""
    emu = scenario.emu
    phone = f"+1415{scenario.rng.randint(0, 9_999_999):07d}"
    lead = emu.create_lead(f"New lead {mark}", [{"name": f"New person {mark}", "phone": phone}])
    contact = lead["contact_ids"][0]
    sms = emu.create_sms(
        {
            "lead_id": lead["id"],
            "contact_id": contact,
            "remote_phone": phone,
            "local_phone": scenario.template["local_phone"],
            "status": "inbox",
            "direction": "inbound",
            "text": f"hello from lead {mark}",
        }
    )
    if scenario.rng.random() < 0.5:
        emu.rename_lead(lead["id"], f"New lead {mark}, renamed")
        emu.update_contact(contact, {"name": f"New person {mark}, renamed"})
    return [lead["id"], contact, sms["id"]]


def _change_people_and_numbers(
    scenario: Scenario,
    kind: str,
    mark: int,
    users: list[str],
    templates: list[str],
    numbers: list[str],
) -> list[str] | None:
    """A change to a user, a template or a number (none has an event)."""
    rng = scenario.rng
    emu = scenario.emu
    if kind == "rename_user":
        user = rng.choice(users)
        scenario.rename_user(user, f"User {mark}")
        return [user]
    if kind == "add_user":
        return [emu.add_user("New", f"User {mark}", f"user{mark}@example.com")]
    if kind == "deactivate_user":
        user = rng.choice(users)
        emu.deactivate_user(user)
        return [user]
    if kind == "rename_template" and templates:
        template = rng.choice(templates)
        emu.rename_template(template, f"Template {mark}")
        return [template]
    if kind == "relabel_number" and numbers:
        number = rng.choice(numbers)
        emu.relabel_number(number, f"Line {mark}")
        return [number]
    return None
