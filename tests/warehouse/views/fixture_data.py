"""The hand-made account the view tests run on, and its edge cases.

Day 1 is 2024-03-01 (UTC). Lead `lead_a` / phone A is the busy conversation:
  - sms_01 inbound, no date_sent (activity_at stands in), 1 attachment
  - sms_02 outbound draft 1 min later: a draft is not a reply
  - sms_03a / sms_03b outbound sent at the same instant (+5 min): tie, the smaller id replies
  - sms_05, sms_06 inbound, both answered by sms_07 (+20 min)
  - sms_08 inbound and sms_09 outbound at the very same instant (+30 min): not a reply, so
    sms_08 stays unanswered and the conversation is awaiting a reply
  - sms_21 inbound (+40 min) with an attachment, then deleted
Lead `lead_b`: sms_10 inbound, answered only on another lead (sms_11 on lead_c): no reply;
  sms_22 outbound on lead_b would have replied but is deleted.
Lead `lead_b` / phone B2: sms_12 outbound on day 2 with 3 attachments.
sms_13: inbound with neither date_sent nor activity_at: date_created stands in; at 23:30 UTC,
  which is still day 1 in UTC but day 1 15:30 in Los Angeles and 2024-03-02 in Tokyo.
sms_14/15: day-1 failures with one message each (a tie: the alphabetically first wins);
sms_16/17/18: day-2 failures, "Unreachable" twice; sms_19 outbox and sms_20 scheduled on day 2.
sms_23 inbound and sms_24 outbound without a lead: no reply is matched on a null lead.

Senders (sms_ai_vs_human): sms_03b (source 'ai'), sms_11 and failed sms_15 (agent fields) and
sms_30 are Close's AI agent; sms_09 and sms_32 are sequences; the other outbound SMS are reps.

Opt-outs (sms_opt_outs), one lead per phone, from +120 min (`opt_out_rows`):
  - lead_o1: sms_30 (AI) is answered "  stop " (sms_31); a sequence (sms_32) and a rep (sms_35)
    text on, a second STOP (sms_33) keeps the first opt-out time, a draft (sms_34) is no text.
  - lead_o2: "Unsubscribe" then "yes": opted back in, no row.
  - lead_o3: "START", then "quit" with a newline: opted out, never texted; "stop please"
    (sms_40) is not a keyword, nor the "STOP" a rep sent (sms_41, lead_o4).
  - lead_o5: "END" and "UNSTOP" at the same instant: the larger id is the later, opted in.
  - Three days on, from OPT_OUT_LINE: lead_o1 gets a send the carrier refused (sms_44, status
    error, Twilio's 21610); lead_o6 texts "Opt-Out!" (the 2025 rule's OPT OUT, punctuated), gets
    a refused send, texts "Start", gets a send that counts for no opt-out, then texts
    "REVOKE." and gets a delivered send: two opt-outs, the first revoked.

Context (`context_rows`; SMS point at it through `REFERENCES`):
  - users: user_1 Ann Lee, user_2 Bo Chen, user_3 "Cy" with no last name.
  - leads: lead_a Potential; lead_b on a status renamed from "Qualified" to "Won" (the lead
    still says Qualified); lead_c on a status Close no longer lists (the lead's "Lost" stands
    in); lead_o1 Potential. The other leads are not in the context: no name, no status.
  - contacts of lead_a and lead_b only.
  - templates: tmpl_hello on sms_03a, sms_07 (replied after 10 min), failed sms_14 and the
    draft sms_02 (left out: drafts never went out); tmpl_remind on sms_03b (replied after
    5 min) and the outbox sms_19; tmpl_gone (not in sms_templates) on sms_12.
  - local numbers: +15559999999 (every other SMS) is Ann's "Main line"; the day-1 and day-2
    failures of sms_14, sms_16, sms_17, sms_18 went out from +15558888888, listed twice (re-issued:
    the later row, Bo's "Support", wins); sms_15 from +15557777777, which Close does not list.
"""

from __future__ import annotations

import datetime as dt

from close_sms.warehouse.ledger import SyncRun
from tests.warehouse.views.dataset import UTC, attachment, event_row, sms_row

T0 = dt.datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
DAY2 = dt.datetime(2024, 3, 2, 9, 0, tzinfo=UTC)
DELETED = ("sms_21", "sms_22")


MAIN_LINE, SUPPORT_LINE, UNLISTED_LINE = "+15559999999", "+15558888888", "+15557777777"
OPT_OUT_LINE = "+15556666666"
# Minutes from T0 to the opt-out rows three days on.
DAY4 = 3 * 24 * 60
# What SMS point at in the context, beyond the defaults of `sms_row`.
REFERENCES: dict[str, dict[str, str]] = {
    "sms_02": {"template_id": "tmpl_hello"},
    "sms_03a": {"template_id": "tmpl_hello"},
    "sms_07": {"template_id": "tmpl_hello"},
    "sms_14": {"template_id": "tmpl_hello", "local_phone": SUPPORT_LINE},
    "sms_03b": {"template_id": "tmpl_remind"},
    "sms_19": {"template_id": "tmpl_remind"},
    "sms_12": {"template_id": "tmpl_gone"},
    "sms_15": {"local_phone": UNLISTED_LINE},
    **{sms_id: {"local_phone": SUPPORT_LINE} for sms_id in ("sms_16", "sms_17", "sms_18")},
}


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def sms_rows() -> list[dict]:
    rows = _sms_rows()
    for row in rows:
        row.update(REFERENCES.get(row["id"], {}))
    return rows


def _sms_rows() -> list[dict]:
    a = {"lead_id": "lead_a", "remote_phone": "+15550000001"}
    b = {"lead_id": "lead_b", "remote_phone": "+15550000002"}
    return [
        sms_row(
            "sms_01",
            **a,
            direction="inbound",
            status="inbox",
            user_id=None,
            date_created=minutes(0),
            activity_at=minutes(0),
            attachments=[attachment("media_01")],
        ),
        sms_row(
            "sms_02",
            **a,
            direction="outbound",
            status="draft",
            user_id="user_1",
            date_created=minutes(1),
            activity_at=minutes(1),
        ),
        sms_row(
            "sms_03b",
            **a,
            direction="outbound",
            status="sent",
            user_id="user_1",
            date_created=minutes(4),
            date_sent=minutes(5),
            activity_at=minutes(4),
            cost="0.0075",
            source="ai",
        ),
        sms_row(
            "sms_03a",
            **a,
            direction="outbound",
            status="sent",
            user_id="user_2",
            date_created=minutes(4.5),
            date_sent=minutes(5),
            activity_at=minutes(4.5),
            cost="0.0079",
        ),
        sms_row(
            "sms_05",
            **a,
            direction="inbound",
            status="inbox",
            user_id="user_2",
            date_created=minutes(10),
            activity_at=minutes(10),
        ),
        sms_row(
            "sms_06",
            **a,
            direction="inbound",
            status="inbox",
            user_id="user_2",
            date_created=minutes(12),
            activity_at=minutes(12),
        ),
        sms_row(
            "sms_07",
            **a,
            direction="outbound",
            status="sent",
            user_id="user_2",
            date_created=minutes(19),
            date_sent=minutes(20),
            cost="0.0079",
        ),
        sms_row(
            "sms_08",
            **a,
            direction="inbound",
            status="inbox",
            user_id="user_2",
            date_created=minutes(30),
            activity_at=minutes(30),
        ),
        sms_row(
            "sms_09",
            **a,
            direction="outbound",
            status="sent",
            user_id="user_1",
            date_created=minutes(29),
            date_sent=minutes(30),
            cost="0.0075",
            sequence_id="seq_1",
            sequence_name="Nurture",
            sequence_subscription_id="sub_1",
        ),
        sms_row(
            "sms_21",
            **a,
            direction="inbound",
            status="inbox",
            user_id="user_2",
            date_created=minutes(40),
            activity_at=minutes(40),
            attachments=[attachment("media_21")],
        ),
        sms_row(
            "sms_10",
            **b,
            direction="inbound",
            status="inbox",
            user_id="user_3",
            date_created=minutes(60),
            activity_at=minutes(60),
        ),
        sms_row(
            "sms_11",
            lead_id="lead_c",
            remote_phone="+15550000003",
            direction="outbound",
            status="sent",
            user_id="user_3",
            date_created=minutes(61),
            date_sent=minutes(61),
            cost="0.01",
            agent_config_id="agentcfg_2",
        ),
        sms_row(
            "sms_22",
            **b,
            direction="outbound",
            status="sent",
            user_id="user_3",
            date_created=minutes(62),
            date_sent=minutes(62),
            cost="0.01",
        ),
        sms_row(
            "sms_12",
            lead_id="lead_b",
            remote_phone="+15550000022",
            direction="outbound",
            status="sent",
            user_id="user_3",
            date_created=DAY2,
            date_sent=DAY2,
            cost="0.03",
            attachments=[
                attachment("media_12a", 10),
                attachment("media_12b", 20),
                attachment("media_12c", 30, "video/mp4"),
            ],
        ),
        sms_row(
            "sms_13",
            lead_id="lead_d",
            remote_phone="+15550000004",
            direction="inbound",
            status="inbox",
            user_id=None,
            date_created=dt.datetime(2024, 3, 1, 23, 30, tzinfo=UTC),
        ),
        sms_row(
            "sms_14",
            lead_id="lead_c",
            remote_phone="+15550000003",
            direction="outbound",
            status="error",
            user_id="user_1",
            date_created=minutes(90),
            activity_at=minutes(90),
            error_message="Unreachable",
        ),
        sms_row(
            "sms_15",
            lead_id="lead_c",
            remote_phone="+15550000003",
            direction="outbound",
            status="error",
            user_id="user_1",
            date_created=minutes(91),
            activity_at=minutes(91),
            error_message="Carrier violation",
            agent_config_id="agentcfg_2",
            agent_action_reason="Confirmed the appointment time.",
        ),
        sms_row(
            "sms_16",
            lead_id="lead_c",
            remote_phone="+15550000003",
            direction="outbound",
            status="error",
            user_id="user_1",
            date_created=DAY2 + dt.timedelta(hours=1),
            error_message="Unreachable",
        ),
        sms_row(
            "sms_17",
            lead_id="lead_c",
            remote_phone="+15550000003",
            direction="outbound",
            status="error",
            user_id="user_1",
            date_created=DAY2 + dt.timedelta(hours=2),
            error_message="Unreachable",
        ),
        sms_row(
            "sms_18",
            lead_id="lead_c",
            remote_phone="+15550000003",
            direction="outbound",
            status="error",
            user_id="user_2",
            date_created=DAY2 + dt.timedelta(hours=3),
            error_message="Blocked",
        ),
        sms_row(
            "sms_19",
            lead_id="lead_c",
            remote_phone="+15550000003",
            direction="outbound",
            status="outbox",
            user_id="user_2",
            date_created=DAY2 + dt.timedelta(hours=4),
        ),
        sms_row(
            "sms_20",
            lead_id="lead_c",
            remote_phone="+15550000003",
            direction="outbound",
            status="scheduled",
            user_id="user_2",
            date_created=DAY2 + dt.timedelta(hours=5),
            activity_at=DAY2 + dt.timedelta(hours=30),
            date_scheduled=DAY2 + dt.timedelta(hours=30),
        ),
        sms_row(
            "sms_23",
            lead_id=None,
            remote_phone="+15550000005",
            direction="inbound",
            status="inbox",
            user_id=None,
            date_created=minutes(120),
        ),
        sms_row(
            "sms_24",
            lead_id=None,
            remote_phone="+15550000005",
            direction="outbound",
            status="sent",
            user_id="user_1",
            date_created=minutes(121),
            date_sent=minutes(121),
        ),
        *opt_out_rows(),
    ]


def opt_out_rows() -> list[dict]:
    """The opt-out conversations described above (module docstring)."""

    def inbound(sms_id: str, lead: str, at: float, text: str) -> dict:
        return sms_row(
            sms_id,
            lead_id=lead,
            remote_phone=f"+1555001{lead[-1]}",
            direction="inbound",
            status="inbox",
            user_id=None,
            date_created=minutes(at),
            text=text,
        )

    def outbound(sms_id: str, lead: str, at: float, user: str, **extra) -> dict:
        extra.setdefault("status", "sent")
        return sms_row(
            sms_id,
            lead_id=lead,
            remote_phone=f"+1555001{lead[-1]}",
            direction="outbound",
            user_id=user,
            date_created=minutes(at),
            date_sent=minutes(at) if extra["status"] == "sent" else None,
            cost="0.0079",
            **extra,
        )

    def refused(sms_id: str, lead: str, at: float, user: str) -> dict:
        extra = {"status": "error", "error_message": REFUSED, "local_phone": OPT_OUT_LINE}
        return outbound(sms_id, lead, at, user, **extra)

    return [
        outbound(
            "sms_30",
            "lead_o1",
            200,
            "user_1",
            source="ai",
            agent_config_id="agentcfg_1",
            agent_action_reason="Followed up after no reply for 2 days.",
        ),
        inbound("sms_31", "lead_o1", 205, "  stop "),
        outbound("sms_32", "lead_o1", 210, "user_2", sequence_id="seq_1", sequence_name="Nurture"),
        inbound("sms_33", "lead_o1", 215, "STOP"),
        outbound("sms_34", "lead_o1", 220, "user_1", status="draft"),
        outbound("sms_35", "lead_o1", 230, "user_3"),
        inbound("sms_36", "lead_o2", 200, "Unsubscribe"),
        inbound("sms_37", "lead_o2", 210, "yes"),
        inbound("sms_38", "lead_o3", 200, "START"),
        inbound("sms_39", "lead_o3", 205, "quit\n"),
        inbound("sms_40", "lead_o3", 206, "stop please"),
        outbound("sms_41", "lead_o4", 200, "user_1", text="STOP"),
        inbound("sms_42", "lead_o5", 200, "END"),
        inbound("sms_43", "lead_o5", 200, "UNSTOP"),
        # Three days on, on a line of their own: the other views' days and lines stay as they are.
        refused("sms_44", "lead_o1", DAY4 + 20, "user_3"),
        inbound("sms_45", "lead_o6", DAY4, "Opt-Out!"),
        refused("sms_46", "lead_o6", DAY4 + 2, "user_2"),
        inbound("sms_47", "lead_o6", DAY4 + 4, "Start"),
        outbound("sms_48", "lead_o6", DAY4 + 6, "user_2", local_phone=OPT_OUT_LINE),
        inbound("sms_49", "lead_o6", DAY4 + 8, " REVOKE. "),
        outbound("sms_50", "lead_o6", DAY4 + 10, "user_1", local_phone=OPT_OUT_LINE),
    ]


# How a carrier refuses a send to a phone that opted out (Twilio's error 21610).
REFUSED = "Attempt to send to unsubscribed recipient"


def context_rows() -> dict[str, list[dict]]:
    """The context tables' rows described above (module docstring), by table."""

    def user(user_id: str, first: str, last: str | None) -> dict:
        email = f"{first.lower()}@example.invalid"
        return {"id": user_id, "first_name": first, "last_name": last, "email": email}

    def lead(lead_id: str, name: str, status_id: str, status_label: str) -> dict:
        return {"id": lead_id, "name": name, "status_id": status_id, "status_label": status_label}

    def number(number_id: str, phone: str, label: str, user_id: str | None, updated: int) -> dict:
        return {
            "id": number_id,
            "number": phone,
            "label": label,
            "user_id": user_id,
            "is_group_number": user_id is None,
            "date_updated": T0 + dt.timedelta(days=updated),
        }

    return {
        "users": [
            user("user_1", "Ann", "Lee"),
            user("user_2", "Bo", "Chen"),
            user("user_3", "Cy", None),
        ],
        "lead_statuses": [
            {"id": "stat_potential", "label": "Potential"},
            {"id": "stat_won", "label": "Won"},
        ],
        "leads": [
            lead("lead_a", "Acme Corp", "stat_potential", "Potential"),
            lead("lead_b", "Bluth Company", "stat_won", "Qualified"),
            lead("lead_c", "Cyberdyne", "stat_gone", "Lost"),
            lead("lead_o1", "Opt Out Inc", "stat_potential", "Potential"),
        ],
        "contacts": [
            {"id": "cont_lead_a", "lead_id": "lead_a", "name": "Alice Customer"},
            {"id": "cont_lead_b", "lead_id": "lead_b", "name": "Bob Customer"},
        ],
        "sms_templates": [
            {"id": "tmpl_hello", "name": "Hello"},
            {"id": "tmpl_remind", "name": "Reminder"},
        ],
        "phone_numbers": [
            number("phon_main", MAIN_LINE, "Main line", "user_1", 1),
            number("phon_old", SUPPORT_LINE, "Old support", "user_3", 1),
            number("phon_support", SUPPORT_LINE, "Support", "user_2", 2),
        ],
    }


def event_rows() -> list[dict]:
    return [
        event_row("ev_01", "sms_01", "created", minutes(0), lead_id="lead_a"),
        event_row("ev_03c", "sms_03a", "created", minutes(4.5), lead_id="lead_a"),
        event_row("ev_03s", "sms_03a", "sent", minutes(5), lead_id="lead_a"),
        # Consolidated: created earlier, updated last.
        event_row("ev_03u", "sms_03a", "updated", minutes(7), minutes(3), lead_id="lead_a"),
        # Same date_updated and date_created: the event id orders them.
        event_row("ev_07y", "sms_07", "sent", minutes(20), lead_id="lead_a"),
        event_row("ev_07x", "sms_07", "created", minutes(20), lead_id="lead_a"),
        event_row("ev_21c", "sms_21", "created", minutes(40), lead_id="lead_a"),
        event_row("ev_21d", "sms_21", "deleted", minutes(45), lead_id="lead_a"),
    ]


def sync_runs() -> list[SyncRun]:
    """Ledger rows over two UTC days: successes, two failures on day 1 (the later one's error
    is the day's last), a locked and an interrupted run; run_7 starts at 23:50 UTC on day 1,
    which is day 2 in Tokyo."""

    def run(number: int, start: dt.datetime, outcome: str, **figures) -> SyncRun:
        exit_status = {"success": 0, "failed": 4, "locked": 5, "interrupted": 130}[outcome]
        return SyncRun(
            run_id=f"run_{number}",
            started_at=start,
            ended_at=start + dt.timedelta(seconds=30),
            mode="incremental",
            outcome=outcome,
            exit_status=exit_status,
            version="0.1.0",
            **figures,
        )

    return [
        run(1, minutes(0), "success", sms_upserted=100, requests=12, lag_seconds=2.5),
        run(2, minutes(5), "failed", error="Close unreachable", lag_seconds=330.0),
        run(3, minutes(10), "failed", error="HTTP 503", responses_429=3, lag_seconds=630.0),
        run(4, minutes(15), "success", sms_upserted=4, sms_deleted=1, requests=7, lag_seconds=1.0),
        run(5, minutes(16), "locked", lag_seconds=70.0),
        run(6, DAY2, "interrupted", rate_limit_wait_seconds=1.5),
        run(
            7,
            dt.datetime(2024, 3, 1, 23, 50, tzinfo=UTC),
            "success",
            sms_deleted=2,
            lag_seconds=0.5,
        ),
    ]
