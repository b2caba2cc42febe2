"""Seeded synthetic account: leads, contacts, users and N SMS shaped like a real one.

Everything derives from `random.Random(seed)`, so one seed always gives the same account
(ids included). The SMS are first planned in time (bulk sends, conversations, single outbound
SMS, imports), then sorted newest first once and made into rows in that order.
"""

from __future__ import annotations

import math
import random
from array import array
from datetime import datetime, timezone

from .auth import ADMIN_USER_ID, MEMBER_USER_ID, PRINCIPALS
from .crm import Contact, Crm, CustomField, Lead, LeadStatus, PhoneNumber, SmsTemplate, User
from .events import Event
from .ids import IdCodec, random_like_id
from .schema import DIRECTION_CODE, MMS_COST_CENTS, SOURCE_CODE, STATUS_CODE, sms_cost
from .store import SmsStore
from .timefmt import NO_TS, dt_to_ms

_INBOX, _DRAFT, _SCHEDULED, _OUTBOX, _SENT, _ERROR = (
    STATUS_CODE[s] for s in ("inbox", "draft", "scheduled", "outbox", "sent", "error")
)
_MINUTE, _HOUR, _DAY = 60_000, 3_600_000, 86_400_000

# What a planned SMS is; the kind decides its direction and status.
_SINGLE, _BURST, _INBOUND, _REPLY, _IMPORTED = range(5)
# Conversations: the share of inbound SMS among the SMS that are neither bulk sends nor
# imports; inbound SMS a user answers; answers the customer writes back to.
_INBOUND_SHARE = 0.42
_REPLY_RATE = 0.8
_FOLLOW_UP_RATE = 0.35
# Delays are log-normal (a skewed distribution): (median, sigma, shortest, longest) in ms.
_REPLY_DELAY = (20 * _MINUTE, 1.1, _MINUTE, 12 * _HOUR)
_FOLLOW_UP_DELAY = (15 * _MINUTE, 1.2, 30_000, _DAY)
# Imported history: a share before Close existed, a share dated up to a year ahead.
_IMPORTED_OLD_SHARE, _IMPORTED_FUTURE_SHARE = 0.02, 0.01
_IMPORTED_OLD_RANGE = (
    dt_to_ms(datetime(1995, 1, 1, tzinfo=timezone.utc)),
    dt_to_ms(datetime(2013, 1, 1, tzinfo=timezone.utc)),
)

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
# Texts that break careless code: empty, NUL bytes, emoji sequences, combining marks,
# right-to-left and bidi controls, CR LF, tabs, quotes, backslashes, invisible characters.
_HOSTILE_TEXTS = [
    "",
    "\x00",
    "before\x00after",
    "NUL at the end\x00",
    "👩🏽‍💻👨‍👩‍👧‍👦🏳️‍🌈 🇩🇪🇯🇵 1️⃣",
    "Z\u0351\u0357a\u0310\u036clg\u0306\u0352o\u0308\u0301 e\u0301 n\u0303",
    "שלום, מה שלומך? مرحبا بك 123",
    "\u202eevil.exe\u202c txt \u2066isolated\u2069",
    "line one\r\nline two\r\n\r\nline four",
    "col1\tcol2\t\tcol4\t",
    "She said \"hi\" and 'bye' `ok`",
    "C:\\Users\\temp\\new \\n is not a newline \\",
    '{"data": [], "has_more": false}',
    "'); DROP TABLE sms; --",
    "\ufeffBOM first, zero\u200bwidth, line\u2028separator\u2029end",
    "   leading and trailing spaces   ",
]
# Very long hostile text: mixed multi-byte characters far beyond any SMS segment count.
_HOSTILE_LONG_CHARS = 100_000
# Share of the SMS given a hostile text when the switch is on.
_HOSTILE_SHARE = 0.05

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
# SMS templates: (id, name, text); the ids are the template_id values of generated SMS.
_TEMPLATES = [
    ("smstmpl_welcome", "Welcome 👋", "Hi {{ contact.first_name }}, welcome aboard!"),
    ("smstmpl_reminder", "Reminder", "Reminder: we talk on {{ date }}."),
    ("smstmpl_quote", "Quote sent", "Your quote from {{ organization.name }} is ready."),
    ("smstmpl_thanks", "Thank you", "Thanks {{ contact.first_name }}!"),
]
_STATUSES = ["Potential", "Bad Fit", "Qualified", "Customer", "Not Interested"]
_COMPANY_WORDS = ["Bluth", "Acme", "Sitwell", "Nord", "Øresund", "Saint-Étienne", "東京", "Vega"]
_COMPANY_KINDS = ["Holdings", "Realty", "Bakery", "Logistics", "GmbH", "& Söhne", "Labs", "Ltd."]
_TITLES = ["CEO", "Buyer", "Office manager", "Einkäufer", "Director of Operations", None]
_INDUSTRIES = ["Construction", "Retail", "Software", "Food & Drink", "Logística"]
# Lead custom fields: (name, type, choices).
_CUSTOM_FIELDS = [
    ("Industry", "text", None),
    ("Employees", "number", None),
    ("Renewal date", "date", None),
    ("Plan", "choices", ["Free", "Starter", "Pro", "Enterprise"]),
]
# Numbers shared by a group of users, and the share of the SMS (conversations and single
# outbound SMS) sent or received on one of them instead of the user's own number.
_GROUP_NUMBERS = [("Support line", "+16505552000"), ("Sales team", "+16505552001")]
_GROUP_SHARE = 0.15
# The last generated users left the organization; they keep their SMS.
_INACTIVE_USERS = 2
_YEAR = 365 * 86_400_000


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


def _hostile_pool(rng: random.Random) -> list[str]:
    """The hostile texts plus one very long text of them, shuffled by the seed."""
    pieces = [t for t in _HOSTILE_TEXTS if t] + ["ü€𝄞"]
    long_text = ""
    while len(long_text) < _HOSTILE_LONG_CHARS:
        long_text += rng.choice(pieces)
    return [*_HOSTILE_TEXTS, long_text[:_HOSTILE_LONG_CHARS]]


def _delay(rng: random.Random, shape: tuple[int, float, int, int]) -> int:
    """A log-normal delay in ms, clamped to the shape's shortest and longest."""
    median, sigma, shortest, longest = shape
    return max(shortest, min(longest, int(median * math.exp(rng.gauss(0.0, sigma)))))


def _imported_dates(rng: random.Random, n: int, start_ms: int, now_ms: int) -> list[int]:
    """date_created of imported SMS: one in the first day after the epoch, about 2% between
    1995 and 2012 (before `start_ms`), about 1% up to a year after `now_ms`."""
    if n < 2:
        return []
    old_lo, old_hi = _IMPORTED_OLD_RANGE
    old_hi = min(old_hi, start_ms)
    dates = [rng.randrange(1, _DAY)]
    if old_hi > old_lo:
        dates += [rng.randrange(old_lo, old_hi) for _ in range(int(n * _IMPORTED_OLD_SHARE))]
    future = max(1, int(n * _IMPORTED_FUTURE_SHARE))
    dates += [now_ms + rng.randrange(1, 365 * _DAY) for _ in range(future)]
    return dates[: n // 2]


def generate(
    store: SmsStore,
    n: int,
    seed: int,
    start_ms: int,
    end_ms: int,
    horizon_ms: int,
    consolidation_ms: int,
    imported_history: bool = False,
    now_ms: int | None = None,
    hostile_texts: bool = False,
) -> None:
    """Fill an empty store with `n` SMS created in [start_ms, end_ms] and their recent events.

    Events exist only for actions at or after `horizon_ms` (older ones fell out of retention).
    With `imported_history`, some SMS are dated outside that range (see `_imported_dates`);
    they were imported at a time inside it. `now_ms` (default `end_ms`) anchors future dates.
    With `hostile_texts`, about 5% of the SMS that are not bulk sends get a hard text.
    """
    if end_ms < start_ms:
        raise ValueError("end must not be before start")
    rng = random.Random(seed)
    rnd = rng.random
    randrange = rng.randrange
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
    group_phone = [store.phones.add(number) for _, number in _GROUP_NUMBERS]
    # Its own generator, so that the SMS stream's draws stay those of accounts made before.
    context_rng = random.Random(f"context:{seed}")
    context_rnd = context_rng.random

    def local_number(user_local: int) -> int:
        """The user's own number, or now and then a group number."""
        if context_rnd() < _GROUP_SHARE:
            return group_phone[context_rng.randrange(len(group_phone))]
        return user_local

    def pick_user() -> int:
        # The key owners get a fair share, so owner-scoped tests find SMS.
        z = rnd()
        return admin_idx if z < 0.15 else member_idx if z < 0.3 else randrange(user_count)

    # Leads with an owner and 1-3 contacts each; every contact has its own remote number.
    n_leads = max(3, n // 20)
    lead_user = array("i")
    lead_contact_start = array("i")
    lead_contact_count = array("b")
    contact_phone = array("i")
    for lead in range(n_leads):
        store.leads.add(random_like_id("lead_", seed, lead))
        lead_user.append(pick_user())
        count = 1 + (lead % 3 if rnd() < 0.6 else 0)
        lead_contact_start.append(len(store.contacts))
        lead_contact_count.append(count)
        for _ in range(count):
            store.contacts.add(random_like_id("cont_", seed, len(store.contacts)))
            country = 0 if rnd() < 0.8 else (1 if rnd() < 0.5 else 2)
            contact_phone.append(store.phones.add(_phone(rng, country)))
    n_contacts = len(contact_phone)

    def pick_owner() -> tuple[int, int, int]:
        """Lead, contact and remote phone of an SMS (-1: none)."""
        lead = randrange(n_leads) if rnd() >= 0.005 else -1
        if lead >= 0 and rnd() >= 0.03:
            contact = lead_contact_start[lead] + randrange(lead_contact_count[lead])
            return lead, contact, contact_phone[contact]
        return lead, -1, (contact_phone[randrange(n_contacts)] if rnd() >= 0.2 else -1)

    normal, long_texts = _text_pool(rng, 600)
    normal_idx = [store.texts.add(t) for t in normal]
    long_idx = [store.texts.add(t) for t in long_texts]
    error_idx = [store.errors.add(e) for e in _ERRORS]
    one_segment_cost = store.costs.add(sms_cost(""))
    mms_cost = store.costs.add(MMS_COST_CENTS)
    cost_of_text: dict[int, int] = {}  # text pool index -> cost pool index
    tmpl_idx = [store.templates.add(t[0]) for t in _TEMPLATES]
    # Its own generator, so that the switch leaves every other value of the account as it is.
    hostile_rng = random.Random(f"hostile:{seed}") if hostile_texts else None
    hostile_idx = [store.texts.add(t) for t in _hostile_pool(hostile_rng)] if hostile_rng else []
    seq_idx = [store.sequences.add(s) for s in _SEQUENCES]

    # The plan: date_created, kind and `who` of every SMS (a burst's or conversation's index).
    span = end_ms - start_ms
    plan_dc: list[int] = []
    kinds = bytearray()
    who = array("i")
    bursts: list[tuple[int, int]] = []  # (user, text) of one bulk send
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
            plan_dc.extend([at] * size)
            kinds.extend(bytes([_BURST]) * size)
            who.extend([len(bursts)] * size)
            bursts.append((randrange(user_count), normal_idx[randrange(len(normal_idx))]))
    if imported_history:
        for at in _imported_dates(rng, n - len(plan_dc), start_ms, max(end_ms, now_ms or end_ms)):
            plan_dc.append(at)
            kinds.append(_IMPORTED)
            who.append(-1)

    # Conversations: an inbound SMS, answered or not by the lead's user on the same phones,
    # and sometimes more exchanges, until the inbound share is reached; then single outbound
    # SMS fill the rest.
    conversations: list[tuple[int, int, int, int]] = []  # (lead, contact, remote, user)
    thread_local = array("i")  # the local number of each conversation
    regular = n - len(plan_dc)
    inbound_target = round(_INBOUND_SHARE * regular)
    produced = inbound = 0
    add_dc, add_kind, add_who = plan_dc.append, kinds.append, who.append
    while inbound < inbound_target and produced < regular:
        at = start_ms + int(rnd() * (span + 1))
        lead, contact, remote = pick_owner()
        thread = len(conversations)
        conversations.append((lead, contact, remote, lead_user[lead] if lead >= 0 else pick_user()))
        thread_local.append(local_number(user_phone[conversations[-1][3]]))
        while True:
            add_dc(at), add_kind(_INBOUND), add_who(thread)
            produced += 1
            inbound += 1
            if produced >= regular or lead < 0 or rnd() >= _REPLY_RATE:
                break
            at += _delay(rng, _REPLY_DELAY)
            if at > end_ms:
                break
            add_dc(at), add_kind(_REPLY), add_who(thread)
            produced += 1
            if produced >= regular or rnd() >= _FOLLOW_UP_RATE:
                break
            at += _delay(rng, _FOLLOW_UP_DELAY)
            if at > end_ms:
                break
    singles = regular - produced
    plan_dc.extend([start_ms + int(rnd() * (span + 1)) for _ in range(singles)])
    kinds.extend(bytes([_SINGLE]) * singles)
    who.extend(array("i", [-1]) * singles)

    # Newest first, in one sort of plain ints: date_created above the plan index.
    total = len(plan_dc)
    shift = max(1, total.bit_length())
    mask = (1 << shift) - 1
    keys = [dc << shift | i for i, dc in enumerate(plan_dc)]
    del plan_dc
    keys.sort(reverse=True)

    # Make sure every status appears at least once.
    forced: dict[int, int] = {}
    if n >= 12:
        answerable = [i for i, k in enumerate(kinds) if k == _INBOUND]
        outbound_specs = [i for i, k in enumerate(kinds) if k in (_SINGLE, _REPLY)]
        if answerable:
            forced[rng.choice(answerable)] = _INBOX
        wanted = (_DRAFT, _SCHEDULED, _OUTBOX, _SENT, _ERROR)
        chosen = rng.sample(outbound_specs, min(len(wanted), len(outbound_specs)))
        forced.update(zip(chosen, wanted, strict=False))

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

    for row, key in enumerate(keys):
        i = key & mask
        dc = key >> shift
        kind = kinds[i]
        status = forced.get(i)
        burst_text = -1
        if kind in (_INBOUND, _REPLY):
            lead, contact, remote, user = conversations[who[i]]
            local = thread_local[who[i]]
            if kind == _INBOUND:
                direction = inbound_code
                if rnd() < 0.1:
                    user = -1  # not assigned to anyone, though it came in on a user's number
            else:
                direction = outbound_code
        else:
            lead, contact, remote = pick_owner()
            if kind == _BURST:
                user, burst_text = bursts[who[i]]
                direction = outbound_code
            elif kind == _IMPORTED:
                direction = inbound_code if rnd() < _INBOUND_SHARE else outbound_code
                user = pick_user()
            else:
                direction = outbound_code
                user = pick_user()
            local = user_phone[user] if kind != _SINGLE else local_number(user_phone[user])
        if status is not None:
            direction = inbound_code if status == _INBOX else outbound_code
        elif direction == inbound_code:
            status = _INBOX
        elif kind in (_BURST, _IMPORTED):
            status = _SENT
        elif kind == _REPLY:
            status = _SENT if rnd() < 0.94 else _ERROR
        else:
            # Single outbound SMS carry the drafts, scheduled and outbox SMS of the account.
            y = rnd()
            status = (
                _SENT
                if y < 0.75
                else _ERROR
                if y < 0.81
                else _DRAFT
                if y < 0.905
                else _SCHEDULED
                if y < 0.9525
                else _OUTBOX
            )
        created_by = user if direction == outbound_code else -1
        natt = 0
        if rnd() < 0.1:
            natt = 1 + randrange(3)
        t = rnd()
        if burst_text >= 0:
            text = burst_text
        elif natt and t < 0.3:
            text = 0  # an MMS with only a picture has no text
        elif t < 0.01:
            text = long_idx[randrange(n_long)]
        elif t < 0.015:
            text = 0
        else:
            text = normal_idx[randrange(n_normal)]
        if hostile_rng is not None and burst_text < 0 and hostile_rng.random() < _HOSTILE_SHARE:
            text = hostile_idx[hostile_rng.randrange(len(hostile_idx))]
        dsent = dsched = NO_TS
        err = cost = 0
        aa = du = dc
        if status == _SENT:
            # An import logs it as sent when it was created; a bulk send takes 1.5 s.
            delay = 0 if kind == _IMPORTED else 1_500 if kind == _BURST else randrange(4_000)
            dsent = dc + delay
            aa = du = dsent
            if natt:
                cost = mms_cost
            else:
                cost = cost_of_text.get(text, -1)
                if cost < 0:
                    cost = cost_of_text[text] = store.costs.add(sms_cost(store.texts.values[text]))
        elif status == _ERROR:
            du = dc + 500 + randrange(5_000)
            err = error_idx[randrange(len(error_idx))]
            cost = one_segment_cost if rnd() < 0.5 else 0
        elif status == _INBOX:
            cost = one_segment_cost if rnd() < 0.7 else 0
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
        updated_later = deleted = False
        dd = NO_TS
        updated_by = created_by
        if kind == _IMPORTED:
            # Logged by an import run at some time of the account's history.
            source = external_src
            du = start_ms + randrange(span + 1)
        else:
            # A change or delete that would fall after end_ms has not happened yet: clamping it
            # to end_ms instead would pile them all at one instant the feed of a sync reads.
            updated_later = rnd() < 0.06 and status not in (_SCHEDULED, _OUTBOX)
            if updated_later:
                changed_at = max(du, dc + _MINUTE + randrange(20 * _DAY))
                updated_later = changed_at <= end_ms
                du = changed_at if updated_later else du
            deleted = rnd() < 0.015 and i not in forced
            if deleted:
                dd = max(du, dc) + _HOUR + randrange(40 * _DAY)
                deleted = dd <= end_ms
                dd = dd if deleted else NO_TS
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
        if kind == _IMPORTED:
            if du >= horizon_ms:  # the import created it then (and logged it sent)
                event(row, "created", du, user, data_row=row)
                if direction == outbound_code:
                    event(row, "sent", du, user, data_row=row)
            continue
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
    _generate_context(
        store,
        context_rng,
        seed,
        user_defs,
        lead_user,
        lead_contact_count,
        contact_phone,
        start_ms,
    )
    for due, row in pending:
        if not store.deleted[row]:
            store._schedule(row, due)
    store.events.append_sorted_bulk(events)


def _generate_context(
    store: SmsStore,
    rng: random.Random,
    seed: int,
    user_defs: list[tuple[str, str]],
    lead_user: array,
    lead_contact_count: bytearray | array,
    contact_phone: array,
    start_ms: int,
) -> None:
    """The objects the SMS point to, drawn from `rng` (not the SMS stream's generator).

    Every one predates the account's first SMS, so none has an event inside retention.
    """
    crm = store.crm
    org = store.organization_id
    owners = {p.user_id: p for p in PRINCIPALS.values() if p.organization_id == org}
    before = start_ms - _YEAR  # the organization's first year, before any SMS
    inactive_from = max(len(owners), len(user_defs) - _INACTIVE_USERS)
    for k, (user_id, name) in enumerate(user_defs):
        first, _, last = name.partition(" ")
        joined = before + rng.randrange(_YEAR // 2)
        owner = owners.get(user_id)
        crm.users[user_id] = User(
            id=user_id,
            first_name=first,
            last_name=last,
            email=owner.email if owner else f"user{k}@bluth.example",
            date_created=joined,
            date_updated=joined,
            active=k < inactive_from,
        )
    user_ids = [user_id for user_id, _ in user_defs]
    for k, label in enumerate(_STATUSES):
        status_id = random_like_id("stat_", seed, k)
        crm.statuses[status_id] = LeadStatus(status_id, label)
    for k, (name, kind, choices) in enumerate(_CUSTOM_FIELDS):
        field_id = random_like_id("cf_", seed, k)
        crm.fields[field_id] = CustomField(field_id, name, kind, before, choices)
    for template_id, name, text in _TEMPLATES:
        at = before + rng.randrange(_YEAR)
        crm.templates[template_id] = SmsTemplate(
            template_id, name, text, user_ids[0], at, at + rng.randrange(_YEAR // 4)
        )
    for k, user_id in enumerate(user_ids):
        number = store.phones.values[store.phones.index[f"+1650555{1000 + k:04d}"]]
        _add_number(crm, seed, number, f"{user_defs[k][1]}'s line", user_id, [user_id], before)
    for label, number in _GROUP_NUMBERS:
        _add_number(crm, seed, number, label, None, user_ids[: max(2, len(user_ids) // 2)], before)
    _generate_leads(store, rng, lead_user, lead_contact_count, contact_phone, before)


def _add_number(
    crm: Crm,
    seed: int,
    number: str,
    label: str,
    user_id: str | None,
    participants: list[str],
    at: int,
) -> None:
    number_id = random_like_id("phon_", seed, len(crm.numbers))
    crm.numbers[number_id] = PhoneNumber(number_id, number, label, user_id, participants, at, at)


def _generate_leads(
    store: SmsStore,
    rng: random.Random,
    lead_user: array,
    lead_contact_count: bytearray | array,
    contact_phone: array,
    before: int,
) -> None:
    """Leads (status, custom fields) and their contacts, in the ids' order of the pools."""
    crm = store.crm
    rnd, randrange, choice = rng.random, rng.randrange, rng.choice
    users = store.users.values
    statuses = list(crm.statuses)
    text_f, number_f, date_f, choice_f = list(crm.fields)
    plans = crm.fields[choice_f].choices or []
    lead_ids, contact_ids, phones = store.leads.values, store.contacts.values, store.phones.values
    contact = 0
    for k, owner in enumerate(lead_user):
        lead_id = lead_ids[k]
        created = before + randrange(_YEAR)
        created_by = users[owner][0]
        custom: dict[str, object] = {}
        if rnd() < 0.7:
            custom[text_f] = choice(_INDUSTRIES)
        if rnd() < 0.6:
            custom[number_f] = randrange(1, 5_000)
        if rnd() < 0.5:
            custom[date_f] = (
                f"{2026 + randrange(2)}-{1 + randrange(12):02d}-{1 + randrange(28):02d}"
            )
        if rnd() < 0.8:
            custom[choice_f] = choice(plans)
        lead = Lead(
            id=lead_id,
            name=f"{choice(_COMPANY_WORDS)} {choice(_COMPANY_KINDS)} {k}",
            status_id=statuses[randrange(len(statuses))],
            created_by=created_by,
            date_created=created,
            date_updated=created + randrange(30 * 86_400_000),
            custom=custom,
        )
        crm.leads[lead_id] = lead
        for _ in range(lead_contact_count[k]):
            contact_id = contact_ids[contact]
            name = f"{choice(_FIRST)} {choice(_LAST)}"
            crm.contacts[contact_id] = Contact(
                id=contact_id,
                lead_id=lead_id,
                name=name,
                title=choice(_TITLES),
                phone=phones[contact_phone[contact]],
                email=f"contact{contact}@example.com" if rnd() < 0.7 else None,
                created_by=created_by,
                date_created=created,
                date_updated=created + randrange(_YEAR // 4),
            )
            lead.contact_ids.append(contact_id)
            contact += 1
