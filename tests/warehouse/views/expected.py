"""The views' answers computed in plain Python from the rows a test loaded.

Independent of the SQL: each rule is written out the way the view's comment states it.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from close_sms.warehouse.ledger import SyncRun
from tests.warehouse.views.dataset import UTC, message_at

UNSENT = ("draft", "scheduled")


def utc_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(UTC).date()


def messages(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        row["id"]: {
            "attachment_count": len(row["attachments"]),
            "has_attachments": bool(row["attachments"]),
            "is_failed": row["status"] == "error",
            "message_at": message_at(row),
            "message_date": utc_date(message_at(row)),
        }
        for row in rows
    }


def attachments_flat(rows: list[dict[str, Any]]) -> set[tuple]:
    return {
        (
            row["id"],
            a["media_id"],
            a["content_type"],
            a["filename"],
            a["size"],
            a["url"],
            row["lead_id"],
            row["direction"],
            message_at(row),
        )
        for row in rows
        for a in row["attachments"]
    }


def daily(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(utc_date(message_at(row)), row["direction"], row["status"])].append(row)
    return {
        key: {
            "message_count": len(group),
            "attachment_count": sum(len(r["attachments"]) for r in group),
            "total_cost_cents": sum((r["cost"] or Decimal(0) for r in group), Decimal(0)),
            "lead_count": len({r["lead_id"] for r in group if r["lead_id"] is not None}),
        }
        for key, group in groups.items()
    }


def user_daily(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["user_id"], utc_date(message_at(row)))].append(row)
    return {
        key: {
            "sent_count": sum(
                r["direction"] == "outbound" and r["status"] == "sent" for r in group
            ),
            "received_count": sum(r["direction"] == "inbound" for r in group),
            "failed_count": sum(r["status"] == "error" for r in group),
            "total_cost_cents": sum((r["cost"] or Decimal(0) for r in group), Decimal(0)),
        }
        for key, group in groups.items()
    }


def response_times(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    answers = {}
    for inbound in rows:
        if inbound["direction"] != "inbound":
            continue
        at = message_at(inbound)
        replies = [
            r
            for r in rows
            if r["direction"] == "outbound"
            and r["status"] not in UNSENT
            and inbound["lead_id"] is not None
            and r["lead_id"] == inbound["lead_id"]
            and message_at(r) > at
        ]
        reply = min(replies, key=lambda r: (message_at(r), r["id"]), default=None)
        answers[inbound["id"]] = {
            "lead_id": inbound["lead_id"],
            "inbound_at": at,
            "reply_id": reply and reply["id"],
            "replied_at": reply and message_at(reply),
            "replied_by_user_id": reply and reply["user_id"],
            "response_seconds": reply and (message_at(reply) - at).total_seconds(),
        }
    return answers


def _conversation_groups(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """The SMS that reached a phone, by lead_id x remote_phone (drafts and scheduled left out)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row["status"] not in UNSENT:
            groups[(row["lead_id"], row["remote_phone"])].append(row)
    return groups


def conversations(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    answers = {}
    for key, group in _conversation_groups(rows).items():
        last = max(group, key=lambda r: (message_at(r), r["direction"] == "inbound", r["id"]))
        answers[key] = {
            "first_message_at": min(message_at(r) for r in group),
            "last_message_at": max(message_at(r) for r in group),
            "inbound_count": sum(r["direction"] == "inbound" for r in group),
            "outbound_count": sum(r["direction"] == "outbound" for r in group),
            "last_direction": last["direction"],
            "awaiting_reply": last["direction"] == "inbound",
        }
    return answers


def delivery(rows: list[dict[str, Any]]) -> dict[dt.date, dict[str, Any]]:
    groups: dict[dt.date, list[dict]] = defaultdict(list)
    for row in rows:
        if row["direction"] == "outbound":
            groups[utc_date(message_at(row))].append(row)
    answers = {}
    for day, group in groups.items():
        sent = sum(r["status"] == "sent" for r in group)
        failed = sum(r["status"] == "error" for r in group)
        errors = Counter(r["error_message"] for r in group if r["error_message"] is not None)
        top = min(errors, key=lambda m: (-errors[m], m)) if errors else None
        answers[day] = {
            "outbound_count": len(group),
            "sent_count": sent,
            "failed_count": failed,
            "failure_rate": failed / (sent + failed) if sent + failed else None,
            "top_error_message": top,
        }
    return answers


def status_changes(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    per_sms: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        per_sms[event["object_id"]].append(event)
    answers = {}
    for group in per_sms.values():
        group.sort(key=lambda e: (e["date_updated"], e["date_created"], e["id"]))
        previous = None
        for number, event in enumerate(group, start=1):
            answers[event["id"]] = {
                "object_id": event["object_id"],
                "action": event["action"],
                "date_updated": event["date_updated"],
                "event_number": number,
                "previous_event_at": previous and previous["date_updated"],
                "seconds_since_previous": previous
                and (event["date_updated"] - previous["date_updated"]).total_seconds(),
            }
            previous = event
    return answers


def sync_health(runs: list[SyncRun]) -> dict[dt.date, dict[str, Any]]:
    days: dict[dt.date, list[SyncRun]] = defaultdict(list)
    for run in runs:
        days[utc_date(run.started_at)].append(run)
    answers = {}
    for day, group in days.items():
        outcomes = Counter(run.outcome for run in group)
        successes = [run.ended_at for run in group if run.outcome == "success"]
        failures = sorted(
            (run for run in group if run.outcome == "failed"), key=lambda r: r.started_at
        )
        answers[day] = {
            "runs": len(group),
            "successful_runs": outcomes["success"],
            "failed_runs": outcomes["failed"],
            "interrupted_runs": outcomes["interrupted"],
            "locked_runs": outcomes["locked"],
            "last_success_at": max(successes, default=None),
            "last_failure_at": failures[-1].ended_at if failures else None,
            "last_error": failures[-1].error if failures else None,
            "max_lag_seconds": max(
                (r.lag_seconds for r in group if r.lag_seconds is not None), default=None
            ),
            "sms_upserted": sum(run.sms_upserted for run in group),
            "sms_deleted": sum(run.sms_deleted for run in group),
            "requests": sum(run.requests for run in group),
            "responses_429": sum(run.responses_429 for run in group),
            "rate_limit_wait_seconds": sum(run.rate_limit_wait_seconds for run in group),
        }
    return answers


OPT_OUT_KEYWORDS = {
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPT OUT",
    "OPTOUT",
}
OPT_IN_KEYWORDS = {"START", "YES", "UNSTOP"}


def _keyword(row: dict[str, Any]) -> str | None:
    if row["direction"] != "inbound" or row["text"] is None:
        return None
    word = re.sub(r"[^A-Z0-9]+", " ", row["text"].upper()).strip(" ")
    return word if word in OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS else None


def opt_outs(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """By (lead_id, remote_phone, opted_out_at): each opt-out, and the opt-in that revoked it."""

    def order(r: dict[str, Any]) -> tuple:
        return (message_at(r), r["id"])

    keywords: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if _keyword(row):
            keywords[(row["lead_id"], row["remote_phone"])].append(row)
    answers = {}
    for phone, group in keywords.items():
        # [opt-out, the opt-in after it or None]; a keyword repeating the state is no turn.
        turns: list[list[dict | None]] = []
        for row in sorted(group, key=order):
            if _keyword(row) in OPT_OUT_KEYWORDS:
                if not turns or turns[-1][1] is not None:
                    turns.append([row, None])
            elif turns and turns[-1][1] is None:
                turns[-1][1] = row
        sends = [
            r
            for r in rows
            if r["direction"] == "outbound"
            and r["status"] in ("sent", "error")
            and (r["lead_id"], r["remote_phone"]) == phone
        ]
        for first, revoking in turns:
            end = revoking and message_at(revoking)
            before_end = [r for r in sends if end is None or message_at(r) < end]
            sent = [r for r in before_end if r["status"] == "sent"]
            after = [r for r in sent if message_at(r) > message_at(first)]
            refused = [
                r
                for r in before_end
                if r["status"] == "error" and message_at(r) > message_at(first)
            ]
            last_user = max((r for r in sent if r["user_id"]), key=order, default=None)
            last_after = max(after, key=order, default=None)
            answers[(*phone, message_at(first))] = {
                "opt_out_sms_id": first["id"],
                "opt_out_keyword": _keyword(first),
                "is_active": revoking is None,
                "revoked_at": end,
                "revoked_by_sms_id": revoking and revoking["id"],
                "revoked_by_keyword": revoking and _keyword(revoking),
                "last_user_id": last_user and last_user["user_id"],
                "last_user_name": last_user and last_user["user_name"],
                "sent_after_opt_out_count": len(after),
                "refused_after_opt_out_count": len(refused),
                "last_sent_after_opt_out_at": last_after and message_at(last_after),
                "last_sent_after_opt_out_id": last_after and last_after["id"],
            }
    return answers


def sender_kind(row: dict[str, Any]) -> str:
    if row.get("source") == "ai" or row.get("agent_config_id") or row.get("agent_action_reason"):
        return "ai_agent"
    return "sequence" if row.get("sequence_id") else "rep"


def reply_seconds(row: dict[str, Any], rows: list[dict[str, Any]]) -> float | None:
    """Seconds until the customer answered a sent SMS: the lead's next SMS, among inbound and
    sent ones, is inbound (at the same instant an inbound SMS comes first)."""
    if row["status"] != "sent" or row["lead_id"] is None:
        return None

    def order(r: dict[str, Any]) -> tuple:
        return (message_at(r), r["direction"] == "outbound", r["id"])

    later = [
        r
        for r in rows
        if r["lead_id"] == row["lead_id"]
        and (r["direction"] == "inbound" or r["status"] == "sent")
        and order(r) > order(row)
    ]
    following = min(later, key=order, default=None)
    if following is None or following["direction"] != "inbound":
        return None
    return (message_at(following) - message_at(row)).total_seconds()


def delivery_outcomes(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """sms_delivery_outcomes.failed per SMS: 1 failed, 0 sent, None without an outcome."""
    return {
        row["id"]: {"error": 1.0, "sent": 0.0}.get(row["status"])
        if row["direction"] == "outbound"
        else None
        for row in rows
    }


def reply_outcomes(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """sms_reply_outcomes' own columns per outbound SMS that left drafts."""
    failed = delivery_outcomes(rows)
    answers = {}
    for row in rows:
        if row["direction"] != "outbound" or row["status"] in UNSENT:
            continue
        seconds = reply_seconds(row, rows)
        answers[row["id"]] = {
            "failed": failed[row["id"]],
            "sender_kind": sender_kind(row),
            "reply_seconds": seconds,
            "replied": None if row["status"] != "sent" else float(seconds is not None),
        }
    return answers


def ai_vs_human(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row["direction"] == "outbound" and row["status"] not in UNSENT:
            groups[(utc_date(message_at(row)), sender_kind(row))].append(row)
    return {
        key: {
            "outbound_count": len(group),
            **_outcomes(group, rows),
            "total_cost_cents": sum((r["cost"] or Decimal(0) for r in group), Decimal(0)),
        }
        for key, group in groups.items()
    }


def _by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in rows}


def _full_name(user: dict[str, Any] | None) -> str | None:
    if user is None:
        return None
    return " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p) or None


def names(
    rows: list[dict[str, Any]], context: dict[str, list[dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """sms_messages' context columns per SMS; an empty `context` is the context turned off."""
    users = _by_id(context.get("users", []))
    leads = _by_id(context.get("leads", []))
    statuses = _by_id(context.get("lead_statuses", []))
    contacts = _by_id(context.get("contacts", []))
    templates = _by_id(context.get("sms_templates", []))
    numbers: dict[str, dict[str, Any]] = {}
    # A number listed twice: the row updated last wins.
    for number in sorted(context.get("phone_numbers", []), key=lambda n: n["date_updated"]):
        numbers[number["number"]] = number
    answers = {}
    for row in rows:
        lead = leads.get(row["lead_id"]) or {}
        status = statuses.get(lead.get("status_id")) or {}
        number = numbers.get(row["local_phone"]) or {}
        answers[row["id"]] = {
            "user_email": (users.get(row["user_id"]) or {}).get("email"),
            "lead_name": lead.get("name"),
            "lead_status_id": lead.get("status_id"),
            "lead_status_label": status.get("label") or lead.get("status_label"),
            "contact_name": (contacts.get(row["contact_id"]) or {}).get("name"),
            "template_name": (templates.get(row.get("template_id")) or {}).get("name"),
            "local_phone_label": number.get("label"),
            "local_phone_owner_id": number.get("user_id"),
            "local_phone_owner_name": _full_name(users.get(number.get("user_id"))),
        }
    return answers


def response_names(
    rows: list[dict[str, Any]], context: dict[str, list[dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """sms_response_times' names per inbound SMS: its lead's and contact's, the reply's user."""
    named = names(rows, context)
    by_id = {row["id"]: row for row in rows}
    answers = {}
    for inbound_id, answer in response_times(rows).items():
        reply = by_id.get(answer["reply_id"]) or {}
        answers[inbound_id] = {
            "lead_name": named[inbound_id]["lead_name"],
            "contact_name": named[inbound_id]["contact_name"],
            "replied_by_user_name": reply.get("user_name"),
        }
    return answers


def conversation_names(
    rows: list[dict[str, Any]], context: dict[str, list[dict[str, Any]]]
) -> dict[tuple, dict[str, Any]]:
    """sms_conversations' names: the lead's, the latest contact named, the user of the latest
    outbound SMS that has one."""
    named = names(rows, context)

    def order(r: dict[str, Any]) -> tuple:
        return (message_at(r), r["direction"] == "inbound", r["id"])

    answers = {}
    for key, group in _conversation_groups(rows).items():
        contacts = [r for r in group if named[r["id"]]["contact_name"]]
        users = [r for r in group if r["direction"] == "outbound" and r["user_name"]]
        answers[key] = {
            "lead_name": named[group[0]["id"]]["lead_name"],
            "contact_name": contacts and named[max(contacts, key=order)["id"]]["contact_name"],
            "last_user_name": users and max(users, key=order)["user_name"],
        }
        answers[key] = {k: v or None for k, v in answers[key].items()}
    return answers


def event_names(
    events: list[dict[str, Any]], context: dict[str, list[dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """sms_status_changes' names per event: its user's full name and its lead's name."""
    users = _by_id(context.get("users", []))
    leads = _by_id(context.get("leads", []))
    return {
        event["id"]: {
            "user_name": _full_name(users.get(event.get("user_id"))),
            "lead_name": (leads.get(event.get("lead_id")) or {}).get("name"),
        }
        for event in events
    }


def _outcomes(group: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Sent, failed and replied counts and rates of outbound SMS (others in `group` ignored)."""
    outbound = [r for r in group if r["direction"] == "outbound" and r["status"] not in UNSENT]
    sent = sum(r["status"] == "sent" for r in outbound)
    failed = sum(r["status"] == "error" for r in outbound)
    replies = [s for r in outbound if (s := reply_seconds(r, rows)) is not None]
    return {
        "sent_count": sent,
        "failed_count": failed,
        "failure_rate": failed / (sent + failed) if sent + failed else None,
        "replied_count": len(replies),
        "reply_rate": len(replies) / sent if sent else None,
        "median_reply_seconds": statistics.median(replies) if replies else None,
    }


def template_performance(
    rows: list[dict[str, Any]], context: dict[str, list[dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    named = names(rows, context)
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if (
            row["direction"] == "outbound"
            and row["status"] not in UNSENT
            and row.get("template_id")
        ):
            groups[row["template_id"]].append(row)
    return {
        template: {
            "template_name": named[group[0]["id"]]["template_name"],
            "outbound_count": len(group),
            **_outcomes(group, rows),
            "lead_count": len({r["lead_id"] for r in group if r["lead_id"] is not None}),
        }
        for template, group in groups.items()
    }


def by_lead_status(
    rows: list[dict[str, Any]], context: dict[str, list[dict[str, Any]]]
) -> dict[str | None, dict[str, Any]]:
    named = names(rows, context)
    groups: dict[str | None, list[dict]] = defaultdict(list)
    for row in rows:
        groups[named[row["id"]]["lead_status_id"]].append(row)
    return {
        status: {
            "lead_status_label": named[group[0]["id"]]["lead_status_label"],
            "message_count": len(group),
            "inbound_count": sum(r["direction"] == "inbound" for r in group),
            "outbound_count": sum(r["direction"] == "outbound" for r in group),
            **_outcomes(group, rows),
            "lead_count": len({r["lead_id"] for r in group if r["lead_id"] is not None}),
        }
        for status, group in groups.items()
    }


def numbers(
    rows: list[dict[str, Any]], context: dict[str, list[dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    named = names(rows, context)
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["local_phone"]].append(row)
    answers = {}
    for phone, group in groups.items():
        outbound = [r for r in group if r["direction"] == "outbound"]
        sent = sum(r["status"] == "sent" for r in outbound)
        failed = sum(r["status"] == "error" for r in outbound)
        errors = Counter(r["error_message"] for r in outbound if r["error_message"] is not None)
        top = min(errors, key=lambda m: (-errors[m], m)) if errors else None
        first = named[group[0]["id"]]
        answers[phone] = {
            "local_phone_label": first["local_phone_label"],
            "owner_user_id": first["local_phone_owner_id"],
            "owner_name": first["local_phone_owner_name"],
            "message_count": len(group),
            "inbound_count": len(group) - len(outbound),
            "outbound_count": len(outbound),
            "sent_count": sent,
            "failed_count": failed,
            "failure_rate": failed / (sent + failed) if sent + failed else None,
            "top_error_message": top,
            "top_error_count": errors[top] if top else None,
            "remote_phone_count": len({r["remote_phone"] for r in group if r["remote_phone"]}),
            "last_message_at": max(message_at(r) for r in group),
        }
    return answers
