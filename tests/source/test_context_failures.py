"""A context table whose read fails is that table's problem: the run's SMS and the other tables
load, and the table keeps its rows, all of them as they were, and its place in the state, so the
next run reads it again."""

from __future__ import annotations

from typing import Any

import pytest

from close_sms.source.state import SourceState
from tests.support import as_target, change_account, context_mismatches, mismatches, sync


def _rows(database: Any, table: str) -> dict[str, tuple[Any, ...]]:
    """Every row of a context table but dlt's columns, by id."""
    target = as_target(database)
    columns = [
        name
        for (name,) in target.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'close_sms'"
            f" AND table_name = '{table}' AND column_name NOT LIKE '\\_dlt%' ESCAPE '\\'"
            " ORDER BY column_name"
        )
    ]
    listed = ", ".join(f'"{name}"' for name in columns)
    return {row[0]: row for row in target.query(f"SELECT id, {listed} FROM close_sms.{table}")}


def _referenced(emu: Any, column: str) -> list[str]:
    return sorted({s[column] for s in emu.snapshot().values() if s[column]})


@pytest.mark.parametrize("status", [500, 403])
def test_a_failing_table_keeps_every_row_while_the_sms_and_the_other_tables_load(
    emulator, tmp_path, status
):
    running = emulator(sms=600, seed=25, failing_context={"contact"}, failing_context_status=status)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    # A first run takes every contact from the leads that embed them: /contact/ is not asked.
    assert sync(running, database, max_retries=1).context_failures == {}
    assert context_mismatches(database, emu) == []
    leads = _referenced(emu, "lead_id")
    with emu.lock:
        crm = emu.store.crm
        embedded = crm.leads[leads[0]].contact_ids[0]
        alone = next(
            c for c in _referenced(emu, "contact_id") if crm.contacts[c].lead_id != leads[0]
        )
    # The renamed lead is read again with its contacts embedded; the other contact is asked
    # for at /contact/, which fails: neither may change.
    emu.rename_lead(leads[0], "Renamed lead")
    emu.update_contact(embedded, {"name": "Renamed with its lead"})
    emu.update_contact(alone, {"name": "Renamed alone"})
    change_account(emu)
    contacts = _rows(database, "contacts")

    report = sync(running, database, max_retries=1)

    assert list(report.context_failures) == ["contacts"]
    # What failed, by method and path (never by key): "GET /contact/...: HTTP 403: ...".
    failure = report.context_failures["contacts"]
    assert f"HTTP {status}" in failure and "GET /contact/" in failure, failure
    assert running.api_key not in failure
    assert mismatches(database, emu.snapshot()) == []
    assert _rows(database, "contacts") == contacts
    assert as_target(database).query(
        f"SELECT name FROM close_sms.leads WHERE id = '{leads[0]}'"
    ) == [("Renamed lead",)]
    problems = context_mismatches(database, emu)
    assert problems and {p.split(" ")[0] for p in problems} == {"contacts"}


def test_a_failed_table_keeps_its_place_in_the_state_and_the_next_run_reads_it(emulator, tmp_path):
    running = emulator(sms=300, seed=27)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database)
    with emu.lock:
        crm = emu.store.crm
        user, template, number = (
            next(iter(crm.users)),
            next(iter(crm.templates)),
            next(iter(crm.numbers)),
        )
    emu.rename_user(user, "Changed", "Name")
    emu.rename_template(template, "Changed template")
    emu.relabel_number(number, "Changed number")
    emu.clock.advance(3700)  # the small tables are due
    # A key that may not read users (403), and templates failing past the retries.
    emu.faults.add("403", 1, "/user/")
    emu.faults.add("502", 2, "/sms_template/")
    before = SourceState.of(as_target(database).warehouse.pipeline()).context.refreshed
    users, templates = _rows(database, "users"), _rows(database, "sms_templates")

    failed = sync(running, database, max_retries=1)

    assert sorted(failed.context_failures) == ["sms_templates", "users"]
    assert (_rows(database, "users"), _rows(database, "sms_templates")) == (users, templates)
    assert as_target(database).query(
        f"SELECT label FROM close_sms.phone_numbers WHERE id = '{number}'"
    ) == [("Changed number",)]
    after = SourceState.of(as_target(database).warehouse.pipeline()).context.refreshed
    assert {t: after[t] for t in ("users", "sms_templates")} == {
        t: before[t] for t in ("users", "sms_templates")
    }
    assert after["phone_numbers"] > before["phone_numbers"]

    again = sync(running, database, max_retries=1)

    assert again.context_failures == {}
    # Only the tables that failed were due again.
    assert set(again.chunks[-1].context_reads) == {"users", "sms_templates", "leads", "contacts"}
    assert context_mismatches(database, emu) == []
