"""The synthetic account: deterministic and shaped like a real one."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from close_api_emulator import Emulator

from .spec import attachment_content_types

END = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _account(n=4000, seed=7):
    emu = Emulator()
    emu.clock.freeze(END)
    emu.generate(n=n, seed=seed, start=END - timedelta(days=120), end=END)
    return emu


def test_deterministic_per_seed():
    a, b, c = _account(seed=1), _account(seed=1), _account(seed=2)
    assert a.snapshot() == b.snapshot()
    assert a.events() == b.events()
    assert a.snapshot() != c.snapshot()


def test_shape_of_the_account():
    emu = _account()
    snap = list(emu.snapshot().values())
    assert 3900 <= len(snap) < 4000  # some were deleted
    assert {s["status"] for s in snap} == {"inbox", "draft", "scheduled", "outbox", "sent", "error"}
    assert {s["direction"] for s in snap} == {"inbound", "outbound"}
    assert all(s["error_message"] for s in snap if s["status"] == "error")
    assert all(isinstance(s["cost"], str) for s in snap if s["cost"] is not None)
    assert any(s["cost"] is None for s in snap)
    assert len({s["lead_id"] for s in snap}) > 100 and len({s["user_id"] for s in snap}) > 3
    assert any(s["contact_id"] is None for s in snap) and any(s["text"] is None for s in snap)
    assert any(len(s["text"] or "") >= 1600 for s in snap)
    assert any(ord(ch) > 0xFFFF for s in snap for ch in (s["text"] or ""))  # emoji
    assert any(s["date_updated"] > s["date_created"] for s in snap if s["status"] == "inbox")
    bursts = Counter(s["date_created"] for s in snap)
    assert bursts.most_common(1)[0][1] >= 150


def test_mms_attachments():
    emu = _account()
    snap = list(emu.snapshot().values())
    mms = [s for s in snap if s["attachments"]]
    assert 0.07 < len(mms) / len(snap) < 0.13
    allowed = set(attachment_content_types())
    for sms in mms:
        assert 1 <= len(sms["attachments"]) <= 3
        for att in sms["attachments"]:
            assert set(att) == {
                "media_id",
                "content_type",
                "filename",
                "size",
                "url",
                "thumbnail_url",
            }
            assert att["content_type"] in allowed and att["media_id"].startswith("media_")
            assert att["url"].startswith("https://") and "@" not in att["url"]
            assert sms["id"] in att["url"]


def test_deleted_and_updated_events_inside_retention():
    emu = _account()
    events = emu.events()
    deleted = [e for e in events if e["action"] == "deleted"]
    assert deleted and all(e["data"] is None and e["previous_data"] for e in deleted)
    live = emu.snapshot()
    assert not {e["object_id"] for e in deleted} & set(live)
    assert any(e["action"] == "updated" for e in events)
    horizon = END - timedelta(days=30)
    assert all(datetime.fromisoformat(e["date_updated"]) >= horizon for e in events)


def test_scheduled_sms_are_sent_when_the_clock_passes():
    emu = _account(n=2000)
    scheduled = [i for i, s in emu.snapshot().items() if s["status"] == "scheduled"]
    assert scheduled
    emu.clock.advance(31 * 86400)
    assert all(emu.get_sms(i)["status"] in ("sent", "error") for i in scheduled)


def _message_at(sms: dict) -> datetime:
    return datetime.fromisoformat(sms["date_sent"] or sms["activity_at"] or sms["date_created"])


def test_conversations_answer_most_inbound_sms_within_hours():
    emu = _account()
    conversations: dict[tuple[str, str], list[dict]] = {}
    for sms in emu.snapshot().values():
        if sms["lead_id"] and sms["status"] not in ("draft", "scheduled"):
            conversations.setdefault((sms["lead_id"], sms["remote_phone"]), []).append(sms)
    inbound, delays, same_phones, follow_ups = 0, [], 0, 0
    for messages in conversations.values():
        messages.sort(key=_message_at)
        for k, sms in enumerate(messages):
            if sms["direction"] != "inbound":
                continue
            inbound += 1
            at = _message_at(sms)
            reply = next(
                (
                    m
                    for m in messages[k + 1 :]
                    if m["direction"] == "outbound" and _message_at(m) > at
                ),
                None,
            )
            if reply is not None:
                delay = (_message_at(reply) - at).total_seconds()
                delays.append(delay)
                same_phones += delay < 86_400 and reply["local_phone"] == sms["local_phone"]
            previous = messages[k - 1] if k else None
            if previous and previous["direction"] == "outbound":
                follow_ups += (at - _message_at(previous)) < timedelta(days=1)
    within_a_day = sorted(d for d in delays if d < 86_400)
    assert all(d > 0 for d in delays)
    assert 0.7 <= len(within_a_day) / inbound <= 0.9  # about 80% answered, the rest never
    # Mostly within a day; later ones answer a conversation that had ended unanswered.
    assert len(within_a_day) / len(delays) >= 0.8
    assert 5 * 60 <= within_a_day[len(within_a_day) // 2] <= 2 * 3600  # median: tens of minutes
    assert same_phones / len(within_a_day) >= 0.95  # the same user's number answers
    assert follow_ups >= 0.15 * inbound  # conversations with several exchanges


def test_cost_is_in_cents():
    emu = _account()
    sent = [
        s for s in emu.snapshot().values() if s["status"] == "sent" and s["direction"] == "outbound"
    ]
    mms = [s for s in sent if s["attachments"]]
    one_segment = [s for s in sent if not s["attachments"] and len(s["text"] or "") <= 160]
    assert mms and one_segment
    assert {s["cost"] for s in mms} == {"2.00"}
    assert {s["cost"] for s in one_segment} == {"0.79"}
    for sms in sent:
        if not sms["attachments"]:
            segments = max(1, -(-len(sms["text"] or "") // 160))
            assert Decimal(sms["cost"]) == Decimal("0.79") * segments


def test_the_demo_account_answers_its_templates_within_hours():
    # The demo's account (close-sms demo: 10,000 SMS over a year, seed 7).
    emu = Emulator()
    emu.clock.freeze(END)
    emu.generate(n=10_000, seed=7, end=END)

    def at(item: dict) -> datetime:
        return datetime.fromisoformat(item["date_sent"] or item["activity_at"])

    # As sms_reply_outcomes reads replies: the lead's next SMS among inbound and sent ones.
    turns = [s for s in emu.snapshot().values() if s["status"] in ("inbox", "sent")]
    turns.sort(key=lambda s: (at(s), s["direction"] == "outbound", s["id"]))
    by_lead: dict[str, list[dict]] = {}
    for item in turns:
        by_lead.setdefault(item["lead_id"], []).append(item)
    waits = []
    for lead in by_lead.values():
        for item, following in itertools.pairwise(lead):
            if item["template_id"] and following["direction"] == "inbound":
                waits.append(at(following) - at(item))
    assert len(waits) >= 50
    # The median answer to a template: within hours, as a reply in a conversation gets, not the
    # days a cold send waits for an unrelated message (it was 224 to 250 hours).
    assert sorted(waits)[len(waits) // 2] < timedelta(hours=6)


def test_sends_to_a_phone_that_opted_out_are_refused_by_the_carrier():
    emu = _account(n=10_000)
    snap = sorted(emu.snapshot().values(), key=lambda s: (s["date_created"], s["id"]))
    opted_out: set[str] = set()
    refused = sent_after = 0
    for sms in snap:
        keyword = (sms["text"] or "").strip(" .!").upper()
        if sms["direction"] == "inbound" and keyword in ("STOP", "START"):
            (opted_out.add if keyword == "STOP" else opted_out.discard)(sms["remote_phone"])
        elif sms["direction"] == "outbound" and sms["remote_phone"] in opted_out:
            sent_after += sms["status"] == "sent"
            if sms["error_message"] == "Attempt to send to unsubscribed recipient":
                refused += 1
                assert sms["status"] == "error" and sms["date_sent"] is None
                assert sms["cost"] is None and sms["activity_at"] == sms["date_created"]
    # Twilio's 21610: every send after the opt-out failed; none reached the phone.
    assert refused >= 20 and sent_after == 0
