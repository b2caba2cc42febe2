"""Seeded synthetic account: leads, contacts, users and N SMS shaped like a real one.

Everything derives from `random.Random(seed)`, so one seed always gives the same account
(ids included). Rows are produced already sorted newest first, so no index sort is needed.
"""

from __future__ import annotations

import random
from array import array

from .auth import ADMIN_USER_ID, MEMBER_USER_ID, PRINCIPALS
from .events import Event
from .ids import IdCodec, random_like_id
from .schema import DIRECTION_CODE, SOURCE_CODE, STATUS_CODE
from .store import SmsStore
from .timefmt import NO_TS

_INBOX, _DRAFT, _SCHEDULED, _OUTBOX, _SENT, _ERROR = (
    STATUS_CODE[s] for s in ("inbox", "draft", "scheduled", "outbox", "sent", "error")
)
_MINUTE, _HOUR, _DAY = 60_000, 3_600_000, 86_400_000

_FIRST = [
    "Ana",
    "Bob",
    "Chen",
    "Dmitri",
    "Zoë",
    "José",
    "Aoife",
    "Łukasz",
    "Søren",
    "Nguyễn",
    "Fatima",
    "Kwame",
    "Yuki",
    "Priya",
    "Oğuz",
    "Björk",
    "李",
    "Марина",
]
_LAST = [
    "Smith",
    "Núñez",
    "Ångström",
    "O'Brien",
    "Müller",
    "Kowalski",
    "Okafor",
    "Tanaka",
    "Gupta",
    "Þórsson",
    "王",
    "Иванова",
    "García-López",
    "van der Berg",
]
_PHRASES = [
    "Hi {name}, just following up on our call.",
    "Your appointment is confirmed for {day} at {hour}:00.",
    "Thanks! I'll send the contract over today.",
    "Can you talk tomorrow at {hour}?",
    "Reminder: your invoice #{num} is due on {day}.",
    "Got it, thanks {name}.",
    "Please call me back when you can.",
    "STOP",
    "Yes, that works for me.",
    "Here is the link we discussed: https://example.com/d/{num}",
    "Quote #{num}: $1,{num3}.00 — valid for 30 days.",
    "¿Podemos hablar mañana a las {hour}?",
    "Danke für Ihre Nachricht! Wir melden uns.",
    "お問い合わせありがとうございます。",
    "谢谢！我们明天见。",
    "Спасибо, договорились.",
    "شكرا لك، سأتصل بك غدا",
    "Great news 🎉🎉 the deal is approved! 👍🏽",
    "On my way 🚗💨 ETA {hour} min",
    "❤️ Thank you so much, {name}! 🙏",
    "Family pack 👨‍👩‍👧‍👦 order #{num} shipped 📦",
    "Line one\nLine two\n\tIndented line three",
    'Quote "{name}" said: it\'s 100% <fine> & done',
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "2026-07-01", "01/02"]
_ERRORS = [
    "Message blocked by carrier.",
    "Unreachable destination handset.",
    "Invalid 'To' Phone Number",
    "Message filtered as spam by the carrier.",
    "Landline or unreachable carrier.",
    "Queue overflow: too many messages to this number.",
]
_SEQUENCES = [
    ("seq_onboarding", "Onboarding 🚀"),
    ("seq_followup", "Follow-up (5 steps)"),
    ("seq_renewal", "Renewal — Q3"),
    ("seq_reactivation", "Réactivation"),
]
_TEMPLATES = ["smstmpl_welcome", "smstmpl_reminder", "smstmpl_quote", "smstmpl_thanks"]


def _phone(rng: random.Random, country: int) -> str:
    if country == 0:
        return f"+1{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
    if country == 1:
        return f"+447{rng.randint(100_000_000, 999_999_999)}"
    return f"+4915{rng.randint(10_000_000, 99_999_999)}"


def _text_pool(rng: random.Random, size: int) -> tuple[list[str], list[str]]:
    """Ordinary texts and very long texts (Close splits long SMS into segments)."""
    names = [f"{f}" for f in _FIRST]
    normal = []
    for _ in range(size):
        phrase = rng.choice(_PHRASES)
        normal.append(
            phrase.format(
                name=rng.choice(names),
                day=rng.choice(_DAYS),
                hour=rng.randint(1, 12),
                num=rng.randint(1000, 99999),
                num3=f"{rng.randint(0, 999):03d}",
            )
        )
    long_texts = []
    for length in (1_600, 3_000, 5_000, 10_000):
        words = []
        total = 0
        while total < length:
            word = rng.choice(normal)
            words.append(word)
            total += len(word) + 1
        long_texts.append(" ".join(words)[:length])
    return normal, long_texts


def generate(
    store: SmsStore,
    n: int,
    seed: int,
    start_ms: int,
    end_ms: int,
    horizon_ms: int,
    consolidation_ms: int,
) -> None:
    """Fill an empty store with `n` SMS created in [start_ms, end_ms] and their recent events.

    Events exist only for actions at or after `horizon_ms` (older ones fell out of retention).
    """
    if end_ms < start_ms:
        raise ValueError("end must not be before start")
    rng = random.Random(seed)
    rnd = rng.random
    store.seed = seed
    store.ids = IdCodec("acti_", f"{store.organization_id}:{seed}")
    store.events.reseed(seed)

    # Users: the two key owners first, then generated ones with Unicode names.
    user_defs = [
        (p.user_id, p.user_name)
        for p in PRINCIPALS.values()
        if p.organization_id == store.organization_id
    ]
    n_users = max(4, min(40, n // 5_000 + 6))
    while len(user_defs) < n_users:
        idx = len(user_defs)
        user_defs.append(
            (random_like_id("user_", seed, idx), f"{rng.choice(_FIRST)} {rng.choice(_LAST)}")
        )
    for user_id, name in user_defs:
        store.user_by_id[user_id] = store.users.add((user_id, name))
    user_count = len(store.users)
    admin_idx = store.user_by_id.get(ADMIN_USER_ID, 0)
    member_idx = store.user_by_id.get(MEMBER_USER_ID, 0)
    user_phone = [store.phones.add(f"+1650555{1000 + i:04d}") for i in range(user_count)]

    # Leads with 1-3 contacts each; every contact has its own remote number.
    n_leads = max(3, n // 20)
    lead_contact_start = array("i")
    lead_contact_count = array("b")
    contact_phone = array("i")
    for lead in range(n_leads):
        store.leads.add(random_like_id("lead_", seed, lead))
        count = 1 + (lead % 3 if rnd() < 0.6 else 0)
        lead_contact_start.append(len(store.contacts))
        lead_contact_count.append(count)
        for _ in range(count):
            store.contacts.add(random_like_id("cont_", seed, len(store.contacts)))
            country = 0 if rnd() < 0.8 else (1 if rnd() < 0.5 else 2)
            contact_phone.append(store.phones.add(_phone(rng, country)))

    normal, long_texts = _text_pool(rng, 600)
    normal_idx = [store.texts.add(t) for t in normal]
    long_idx = [store.texts.add(t) for t in long_texts]
    error_idx = [store.errors.add(e) for e in _ERRORS]
    cost_idx = [store.costs.add(f"{0.0079 * k:.4f}") for k in range(1, 5)]
    mms_cost = store.costs.add("0.0200")
    tmpl_idx = [store.templates.add(t) for t in _TEMPLATES]
    seq_idx = [store.sequences.add(s) for s in _SEQUENCES]

    # date_created values: bulk-send bursts share one instant, the rest spread uniformly.
    span = end_ms - start_ms
    dcs: list[int] = []
    bursts: dict[int, tuple[int, int]] = {}
    if n >= 300:
        n_bursts = max(1, n // 4_000)
        budget = n // 3
        for _ in range(n_bursts):
            size = min(rng.randint(150, 400), budget)
            if size < 150:
                break
            budget -= size
            at = start_ms + int(rnd() * span)
            # A bulk send: one user, one text, many leads.
            bursts[at] = (rng.randrange(user_count), normal_idx[rng.randrange(len(normal_idx))])
            dcs.extend([at] * size)
    randrange = rng.randrange
    dcs.extend(start_ms + randrange(span + 1) for _ in range(n - len(dcs)))
    dcs.sort(reverse=True)

    # Make sure every status appears at least once.
    forced: dict[int, int] = {}
    if n >= 12:
        for status in (_INBOX, _DRAFT, _SCHEDULED, _OUTBOX, _SENT, _ERROR):
            row = randrange(n)
            while row in forced:
                row = randrange(n)
            forced[row] = status

    inbound_code, outbound_code = DIRECTION_CODE["inbound"], DIRECTION_CODE["outbound"]
    close_src, external_src = SOURCE_CODE["Close.io"], SOURCE_CODE["External"]
    append = store.append_row
    pending: list[tuple[int, int]] = []
    live = array("i")
    events: list[Event] = []
    new_event = store.events.new_event
    n_normal, n_long = len(normal_idx), len(long_idx)

    def event(row: int, action: str, at: int, user: int, **extra: object) -> Event:
        ev = new_event(
            at,
            user_id=store.users.values[user][0] if user >= 0 else None,
            request_id=None,
            api_key_id=None,
            object_type="activity.sms",
            object_id=store.sms_id(row),
            lead_id=store.leads.values[lead] if lead >= 0 else None,
            action=action,
            changed_fields=[],
            data=None,
            previous_data=None,
            meta={},
        )
        ev.request_id = "req_" + ev.id[3:]
        for name, value in extra.items():
            setattr(ev, name, value)
        events.append(ev)
        return ev

    for row in range(n):
        dc = dcs[row]
        burst = bursts.get(dc)
        x = rnd()
        status = forced.get(row)
        if burst is not None and status is None:
            direction, status = outbound_code, _SENT
        elif status is not None:
            direction = inbound_code if status == _INBOX else outbound_code
        elif x < 0.42:
            direction, status = inbound_code, _INBOX
        else:
            direction = outbound_code
            y = rnd()
            status = (
                _SENT
                if y < 0.86
                else _ERROR
                if y < 0.92
                else _DRAFT
                if y < 0.96
                else _SCHEDULED
                if y < 0.98
                else _OUTBOX
            )
        lead = randrange(n_leads) if rnd() >= 0.005 else -1
        if lead >= 0 and rnd() >= 0.03:
            contact = lead_contact_start[lead] + randrange(lead_contact_count[lead])
            remote = contact_phone[contact]
        else:
            contact = -1
            remote = contact_phone[randrange(len(contact_phone))] if rnd() >= 0.2 else -1
        if burst is not None:
            user = burst[0]
        elif direction == inbound_code and rnd() < 0.1:
            user = -1
        else:
            # The key owners get a fair share, so owner-scoped tests find SMS.
            z = rnd()
            user = admin_idx if z < 0.15 else member_idx if z < 0.3 else randrange(user_count)
        created_by = user if direction == outbound_code else -1
        local = user_phone[user] if user >= 0 else user_phone[0]
        natt = 0
        if rnd() < 0.1:
            natt = 1 + randrange(3)
        t = rnd()
        if burst is not None:
            text = burst[1]
        elif natt and t < 0.3:
            text = 0  # an MMS with only a picture has no text
        elif t < 0.01:
            text = long_idx[randrange(n_long)]
        elif t < 0.015:
            text = 0
        else:
            text = normal_idx[randrange(n_normal)]
        dsent = dsched = NO_TS
        err = cost = 0
        aa = du = dc
        if status == _SENT:
            dsent = dc + (randrange(4_000) if burst is None else 1_500)
            aa = du = dsent
            cost = (
                mms_cost if natt else cost_idx[min(3, len(store.texts.values[text] or "") // 160)]
            )
        elif status == _ERROR:
            du = dc + 500 + randrange(5_000)
            err = error_idx[randrange(len(error_idx))]
            cost = cost_idx[0] if rnd() < 0.5 else 0
        elif status == _INBOX:
            cost = cost_idx[0] if rnd() < 0.7 else 0
        elif status == _SCHEDULED:
            dsched = end_ms + _HOUR + randrange(30 * _DAY)
            pending.append((dsched, row))
        source = external_src if direction == outbound_code and rnd() < 0.1 else close_src
        tmpl = (
            tmpl_idx[randrange(len(tmpl_idx))] if direction == outbound_code and rnd() < 0.05 else 0
        )
        seq = (
            seq_idx[randrange(len(seq_idx))] if direction == outbound_code and rnd() < 0.04 else -1
        )
        updated_later = rnd() < 0.06 and status not in (_SCHEDULED, _OUTBOX)
        if updated_later:
            du = min(end_ms, max(du, dc + _MINUTE + randrange(20 * _DAY)))
        deleted = rnd() < 0.015 and row not in forced
        dd = min(end_ms, max(du, dc) + _HOUR + randrange(40 * _DAY)) if deleted else NO_TS
        updated_by = created_by
        if updated_later and rnd() < 0.5:
            updated_by = randrange(user_count)
        append(
            dc=dc,
            du=du,
            aa=aa,
            dsent=dsent,
            dsched=dsched,
            status=status,
            direction=direction,
            source=source,
            lead=lead,
            contact=contact,
            user=user,
            created_by=created_by,
            updated_by=updated_by,
            local=local,
            remote=remote,
            text=text,
            cost=cost,
            err=err,
            tmpl=tmpl,
            natt=natt,
            seq=seq,
            deleted=deleted,
        )
        if not deleted:
            live.append(row)

        # Events inside retention, following the same consolidation rule as the API.
        if max(du, dc, dd) < horizon_ms:
            continue
        created = None
        if dc >= horizon_ms:
            created = event(row, "created", dc, user, data_row=row)
        if status == _SENT and direction == outbound_code and dsent >= horizon_ms:
            event(row, "sent", dsent, user, data_row=row)
        if du > max(dc, dsent) and du >= horizon_ms:
            changed = ["status", "error_message"] if status == _ERROR else ["cost", "date_updated"]
            if created is not None and du - dc <= consolidation_ms and status != _SENT:
                created.date_updated = du
                created.changed_fields = sorted(set(changed))
            else:
                ev = event(row, "updated", du, updated_by, data_row=row)
                ev.changed_fields = changed
                ev.previous_data = {name: None for name in changed}
        if deleted and dd >= horizon_ms:
            event(row, "deleted", dd, updated_by, prev_row=row, changed_fields=[])

    store.build_index(live)
    for due, row in pending:
        if not store.deleted[row]:
            store._schedule(row, due)
    store.events.append_sorted_bulk(events)
