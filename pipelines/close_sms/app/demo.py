"""`close-sms demo`: the main job end to end against a seeded local emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from close_api_emulator import DEMO_API_KEY, Emulator, EmulatorConfig, EmulatorServer

from ..warehouse.destination import Warehouse
from .invocation import shell_command
from .outcome import SyncReport
from .progress import backfill_progress
from .runner import SyncOptions, run_sync, stderr_printer

EXAMPLE_QUERY = """\
SELECT message_date, direction, status, message_count, attachment_count, total_cost_cents
FROM close_sms.sms_daily
ORDER BY message_date DESC, direction, status
LIMIT 8"""
# The reps by name, as sms_messages carries it, with what the context adds: their email.
TOP_REPS_QUERY = """\
SELECT user_name, user_email,
    count(*) FILTER (WHERE direction = 'outbound' AND status = 'sent') AS sent,
    count(*) FILTER (WHERE direction = 'inbound') AS received,
    count(*) FILTER (WHERE is_failed) AS failed
FROM close_sms.sms_messages
WHERE user_id IS NOT NULL
GROUP BY user_name, user_email
ORDER BY sent + received DESC, user_name
LIMIT 5"""
# Templates by name, from the context table sms_templates.
TEMPLATES_QUERY = """\
SELECT template_name, sent_count, round(failure_rate, 3) AS failure_rate,
    round(reply_rate, 3) AS reply_rate, round(median_reply_seconds / 3600, 1) AS median_reply_hours
FROM close_sms.sms_template_performance
ORDER BY sent_count DESC, template_name
LIMIT 5"""


def _summary(label: str, report: SyncReport) -> str:
    return (
        f"{label}: mode={report.mode}, backfilled={report.backfill_sms:,} SMS, "
        f"events={report.events:,}, upserted={report.upserted:,}, deleted={report.deleted:,}, "
        f"requests={report.requests:,}, {report.seconds:.1f} s"
    )


def _counts(generated: int, listed: int, now: int, loaded: int) -> str:
    """The demo's counts, each explained: where the generated SMS went, and the warehouse's."""
    agrees = "as Close does" if loaded == now else f"but Close holds {now:,}"
    return (
        f"\nThe account: {generated:,} SMS generated, of which {generated - listed:,} were "
        f"deleted in its history (Close lists no deleted SMS), so {listed:,} at the first sync; "
        f"the changes above left {now:,}.\nclose_sms.sms holds {loaded:,} SMS, {agrees}."
    )


def _change_account(base_url: str, emulator: Emulator) -> list[str]:
    """Create, update and delete a few SMS through the HTTP API, as a Close user would."""
    session = requests.Session()
    session.auth = (DEMO_API_KEY, "")
    existing = sorted(emulator.snapshot().values(), key=lambda s: s["date_created"], reverse=True)
    lead = existing[0]
    done = []
    created = []
    for text in ("Demo: are we still on for Friday? 📅", "Demo: thanks, talk soon!"):
        response = session.post(
            f"{base_url}/activity/sms/",
            json={
                "status": "sent",
                "direction": "outbound",
                "lead_id": lead["lead_id"],
                "contact_id": lead["contact_id"],
                "remote_phone": lead["remote_phone"],
                "local_phone": lead["local_phone"],
                "text": text,
            },
            timeout=30,
        )
        response.raise_for_status()
        created.append(response.json()["id"])
    done.append(f"created {len(created)} SMS")
    draft = session.post(
        f"{base_url}/activity/sms/",
        json={"status": "draft", "lead_id": lead["lead_id"], "text": "Demo draft"},
        timeout=30,
    )
    draft.raise_for_status()
    session.put(
        f"{base_url}/activity/sms/{draft.json()['id']}/",
        json={"text": "Demo draft, edited"},
        timeout=30,
    ).raise_for_status()
    done.append("created and edited 1 draft")
    for victim in existing[1:3]:
        session.delete(f"{base_url}/activity/sms/{victim['id']}/", timeout=30).raise_for_status()
    done.append("deleted 2 SMS")
    return done


def run_demo(
    database: Path, sms: int = 10_000, seed: int = 7, quiet: bool = False
) -> dict[str, dict[str, Any]]:
    """Start the emulator, sync, change the account, sync again, and query the views.

    Returns the emulated account's SMS as Close serves them, by id.
    """
    say = stderr_printer(quiet)
    # With the fields real answers carry: SMS Close's AI agent sent (agent_config_id,
    # agent_action_reason, source "ai") among the reps' and sequences'.
    emulator = Emulator(EmulatorConfig(rps=20, recorded_sms_fields=True, recorded_sources=True))
    say(f"Generating a demo account of {sms:,} SMS (seed {seed}) ...")
    emulator.generate(n=sms, seed=seed)
    listed = len(emulator.snapshot())
    server = EmulatorServer(emulator).start()
    try:
        say(f"Close API emulator at {server.base_url} (20 requests/s per key)")
        warehouse = Warehouse.configure(database=database)
        options = SyncOptions(
            warehouse=warehouse,
            full_refresh=True,
            source_args={"base_url": server.base_url, "api_key": DEMO_API_KEY},
        )
        with backfill_progress(quiet) as on_page:
            options.on_page = on_page
            first = run_sync(options, say)
        print(_summary("First sync", first))
        for line in _change_account(server.base_url, emulator):
            print(f"Changed the account: {line}")
        options.full_refresh = False
        second = run_sync(options, say)
        print(_summary("Second sync", second))
    finally:
        server.stop()
    with warehouse.sql_client(read_only=True) as sql:
        ((loaded,),) = sql.execute_sql("SELECT count(*) FROM close_sms.sms")
        print(_counts(sms, listed, len(emulator.snapshot()), loaded))
        for title, query in (
            ("Example query on the views", EXAMPLE_QUERY),
            ("Top reps, by name", TOP_REPS_QUERY),
            ("Templates, by name", TEMPLATES_QUERY),
        ):
            print(f"\n{title}:\n{query};\n")
            print(sql.native_connection.sql(query))
    print(f"Inspect it with: {shell_command('status', '--database', database)}")
    report = database.with_suffix(".html")
    print(f"Draw its report: {shell_command('report', '--database', database, '--out', report)}")
    return emulator.snapshot()
