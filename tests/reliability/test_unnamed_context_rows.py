"""Found by the randomized run (seed 11, account 0): a contact whose SMS are all deleted.

`leads` and `contacts` hold every lead and contact an SMS has named. Such a row stays once no
SMS names it any more, and it stays current: its events still update it, and its own deletion
(an event, or its own 404) still removes it. The docs (tables and views) say so.
"""

from __future__ import annotations

from tests.support import as_target, context_mismatches, sync


def test_a_contact_no_sms_names_any_more_stays_and_stays_current(emulator, tmp_path):
    running = emulator(sms=300, seed=41)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    by_contact: dict[str, list[str]] = {}
    for sms_id, sms in sorted(emu.snapshot().items()):
        by_contact.setdefault(sms["contact_id"], []).append(sms_id)
    contact, named_by = min(by_contact.items(), key=lambda item: (len(item[1]), item[0]))
    for sms_id in named_by:
        emu.delete_sms(sms_id)
    emu.update_contact(contact, {"name": "Renamed after its SMS"})
    emu.clock.advance(120)

    sync(running, database)

    target = as_target(database)
    rows = target.query(f"SELECT name FROM close_sms.contacts WHERE id = '{contact}'")
    assert rows == [("Renamed after its SMS",)]
    # Every other row equals Close's, and this one is the only row no SMS names.
    unnamed = [m for m in context_mismatches(database, emu) if contact not in m]
    assert unnamed == []

    emu.delete_contact(contact)
    emu.clock.advance(120)
    sync(running, database)
    assert target.query(f"SELECT id FROM close_sms.contacts WHERE id = '{contact}'") == []
