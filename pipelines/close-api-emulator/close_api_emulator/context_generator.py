"""The objects a generated account's SMS point to: users, lead statuses, custom fields,
templates, phone numbers, leads and contacts, put into the store's Crm.

They are drawn from their own random generator (not the SMS stream's), so that adding to them
leaves every SMS of an account as it was.
"""

from __future__ import annotations

import random
from array import array

from .auth import PRINCIPALS
from .crm import Contact, Crm, CustomField, Lead, LeadStatus, PhoneNumber, SmsTemplate, User
from .ids import random_like_id
from .sample_data import (
    COMPANY_KINDS,
    COMPANY_WORDS,
    CUSTOM_FIELDS,
    FIRST_NAMES,
    GROUP_NUMBERS,
    INDUSTRIES,
    LAST_NAMES,
    LEAD_STATUSES,
    TEMPLATES,
    TITLES,
)
from .store import SmsStore

# The last generated users left the organization; they keep their SMS.
_INACTIVE_USERS = 2
_YEAR = 365 * 86_400_000


def generate_context(
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
    for k, label in enumerate(LEAD_STATUSES):
        status_id = random_like_id("stat_", seed, k)
        crm.statuses[status_id] = LeadStatus(status_id, label)
    for k, (name, kind, choices) in enumerate(CUSTOM_FIELDS):
        field_id = random_like_id("cf_", seed, k)
        crm.fields[field_id] = CustomField(field_id, name, kind, before, choices)
    for template_id, name, text in TEMPLATES:
        at = before + rng.randrange(_YEAR)
        crm.templates[template_id] = SmsTemplate(
            template_id, name, text, user_ids[0], at, at + rng.randrange(_YEAR // 4)
        )
    for k, user_id in enumerate(user_ids):
        number = store.phones.values[store.phones.index[f"+1650555{1000 + k:04d}"]]
        _add_number(crm, seed, number, f"{user_defs[k][1]}'s line", user_id, [user_id], before)
    for label, number in GROUP_NUMBERS:
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
            custom[text_f] = choice(INDUSTRIES)
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
            name=f"{choice(COMPANY_WORDS)} {choice(COMPANY_KINDS)} {k}",
            status_id=statuses[randrange(len(statuses))],
            created_by=created_by,
            date_created=created,
            date_updated=created + randrange(30 * 86_400_000),
            custom=custom,
        )
        crm.leads[lead_id] = lead
        for _ in range(lead_contact_count[k]):
            contact_id = contact_ids[contact]
            name = f"{choice(FIRST_NAMES)} {choice(LAST_NAMES)}"
            crm.contacts[contact_id] = Contact(
                id=contact_id,
                lead_id=lead_id,
                name=name,
                title=choice(TITLES),
                phone=phones[contact_phone[contact]],
                email=f"contact{contact}@example.com" if rnd() < 0.7 else None,
                created_by=created_by,
                date_created=created,
                date_updated=created + randrange(_YEAR // 4),
            )
            lead.contact_ids.append(contact_id)
            contact += 1
