"""The randomized model's SMS changes: creates, draft edits, sends, deletes, bursts, hostile
texts, SMS Close deleted but still lists, and SMS the key may not read."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.reliability.model import Scenario

ATTACHMENT_TYPES = ("image/png", "image/jpeg", "application/pdf", "video/mp4", "text/vcard")
# Texts that break careless code; DuckDB keeps each exactly (PostgreSQL drops the NUL).
HOSTILE_TEXTS = ("", "\x00", "before\x00after", "NUL at the end\x00", "a\r\nb\tc", "\u202eevil")
# SMS changes and their weights (the context's are `context_model.CONTEXT_CHANGES`);
# `forbid_sms` only between syncs (it reads the warehouse).
SMS_CHANGES = {
    "create": 30,
    "update_draft": 10,
    "draft_to_outbox": 8,
    "draft_to_scheduled": 6,
    "cancel_to_draft": 4,
    "delete_sms": 12,
    "burst_same_date_created": 3,
    "clock_advance": 10,
    "ghost_sms": 2,
    "forbid_sms": 2,
    "hostile_text": 4,
}


def new_sms(scenario: Scenario, status: str) -> dict[str, Any]:
    """A new SMS on the template's lead and contact, with `status`, sometimes attachments."""
    rng = scenario.rng
    payload: dict[str, Any] = {
        **scenario.template,
        "status": status,
        "text": rng.choice(["hi", "see you at 5", "ok 👍", "Grüße, 日本", "x" * 300]),
    }
    if rng.random() < 0.3:
        payload["attachments"] = [
            {
                "content_type": rng.choice(ATTACHMENT_TYPES),
                "filename": f"file{k}.bin",
                "url": f"https://example.com/upload/{rng.randint(1, 10**9)}",
            }
            for k in range(rng.randint(1, 3))
        ]
    if status == "scheduled":
        at = scenario.emu.clock.now() + timedelta(seconds=rng.randint(5, 900))
        payload["date_scheduled"] = at.isoformat()
    return payload


def sms_change(
    scenario: Scenario, kind: str, snapshot: dict[str, dict[str, Any]]
) -> list[str] | None:
    """An SMS change; the ids it touched, or None when there was nothing to change."""
    rng = scenario.rng
    emu = scenario.emu
    ids: list[str] = []
    if kind == "create":
        status = rng.choice(["sent", "inbox", "draft", "outbox", "scheduled"])
        ids.append(emu.create_sms(new_sms(scenario, status))["id"])
    elif kind in ("update_draft", "draft_to_outbox", "draft_to_scheduled", "hostile_text"):
        drafts = [i for i, s in snapshot.items() if s["status"] == "draft"]
        if not drafts:
            drafts = [emu.create_sms(new_sms(scenario, "draft"))["id"]]
        sms_id = rng.choice(drafts)
        ids.append(sms_id)
        if kind == "update_draft":
            update: dict[str, Any] = {"text": f"edited {rng.randint(1, 10**6)}"}
            if rng.random() < 0.5:
                update["attachments"] = new_sms(scenario, "draft").get("attachments") or []
            emu.update_sms(sms_id, update)
        elif kind == "hostile_text":
            emu.update_sms(sms_id, {"text": rng.choice(HOSTILE_TEXTS)})
        elif kind == "draft_to_outbox":
            emu.update_sms(sms_id, {"status": "outbox", "text": "sending"})
        else:
            at = emu.clock.now() + timedelta(seconds=rng.randint(5, 900))
            emu.update_sms(
                sms_id,
                {"status": "scheduled", "text": "later", "date_scheduled": at.isoformat()},
            )
    elif kind == "cancel_to_draft":
        waiting = [i for i, s in snapshot.items() if s["status"] in ("scheduled", "outbox")]
        if not waiting:
            return None
        sms_id = rng.choice(waiting)
        ids.append(sms_id)
        emu.update_sms(sms_id, {"status": "draft"})
    elif kind in ("delete_sms", "ghost_sms"):
        if not snapshot:
            return None
        sms_id = rng.choice(sorted(snapshot))
        ids.append(sms_id)
        emu.delete_sms(sms_id, keep_in_index=kind == "ghost_sms")
    elif kind == "forbid_sms":
        readable = sorted(snapshot.keys() - scenario.forbidden.keys())
        if not readable or not scenario.synced:
            return None
        sms_id = rng.choice(readable)
        ids.append(sms_id)
        scenario.forbid(sms_id)
    elif kind == "burst_same_date_created":
        at = emu.clock.now() - timedelta(seconds=rng.randint(0, 3 * 86400))
        at = at.replace(microsecond=rng.choice([0, 123000, 999000]))
        for _ in range(rng.randint(150, 230)):
            payload = new_sms(scenario, rng.choice(["sent", "inbox"]))
            payload["date_created"] = at.isoformat()
            ids.append(emu.create_sms(payload)["id"])
    elif kind == "clock_advance":
        # Due scheduled/outbox SMS are sent on the jump.
        ids.extend(i for i, s in snapshot.items() if s["status"] in ("scheduled", "outbox"))
        emu.clock.advance(rng.uniform(1, 900))
    return ids
