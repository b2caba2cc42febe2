"""The people of a generated account: users, leads and contacts with their phone numbers, put
into the store's pools, and the draws that pick the people of one SMS."""

from __future__ import annotations

import random
from array import array

from .auth import ADMIN_USER_ID, MEMBER_USER_ID, PRINCIPALS
from .ids import random_like_id
from .sample_data import FIRST_NAMES, GROUP_NUMBERS, LAST_NAMES, phone_number
from .store import SmsStore

# Share of the SMS (conversations and single outbound SMS) sent or received on a group
# number instead of the user's own.
_GROUP_SHARE = 0.15


class AccountPeople:
    """Users, leads and contacts as pool indexes; made from `rng` on creation.

    `context_rng` only picks group numbers (see `local_number`).
    """

    def __init__(
        self,
        store: SmsStore,
        n: int,
        seed: int,
        rng: random.Random,
        context_rng: random.Random,
    ) -> None:
        self.rng = rng
        self.rnd = rng.random
        self.randrange = rng.randrange
        self.context_rng = context_rng
        self._add_users(store, n, seed)
        self._add_leads(store, n, seed)

    def _add_users(self, store: SmsStore, n: int, seed: int) -> None:
        """The two key owners first, then generated ones with Unicode names; a number each."""
        rng = self.rng
        user_defs = [
            (p.user_id, p.user_name)
            for p in PRINCIPALS.values()
            if p.organization_id == store.organization_id
        ]
        n_users = max(4, min(40, n // 5_000 + 6))
        while len(user_defs) < n_users:
            idx = len(user_defs)
            user_defs.append(
                (
                    random_like_id("user_", seed, idx),
                    f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                )
            )
        for user_id, name in user_defs:
            store.user_by_id[user_id] = store.users.add((user_id, name))
        # (id, name) of every user, in the order of the users pool.
        self.user_defs = user_defs
        self.user_count = len(store.users)
        self.admin = store.user_by_id.get(ADMIN_USER_ID, 0)
        self.member = store.user_by_id.get(MEMBER_USER_ID, 0)
        # Each user's own number, and the numbers shared by groups of users (phones pool).
        self.user_phone = [
            store.phones.add(f"+1650555{1000 + i:04d}") for i in range(self.user_count)
        ]
        self.group_phone = [store.phones.add(number) for _, number in GROUP_NUMBERS]

    def _add_leads(self, store: SmsStore, n: int, seed: int) -> None:
        """Leads with an owner and 1-3 contacts each; every contact has its own number."""
        rnd = self.rnd
        self.n_leads = max(3, n // 20)
        self.lead_user = array("i")  # the owner of each lead
        self.lead_contact_start = array("i")  # the first contact of each lead
        self.lead_contact_count = array("b")
        self.contact_phone = array("i")  # the number of each contact
        for lead in range(self.n_leads):
            store.leads.add(random_like_id("lead_", seed, lead))
            self.lead_user.append(self.pick_user())
            count = 1 + (lead % 3 if rnd() < 0.6 else 0)
            self.lead_contact_start.append(len(store.contacts))
            self.lead_contact_count.append(count)
            for _ in range(count):
                store.contacts.add(random_like_id("cont_", seed, len(store.contacts)))
                country = 0 if rnd() < 0.8 else (1 if rnd() < 0.5 else 2)
                self.contact_phone.append(store.phones.add(phone_number(self.rng, country)))
        self.n_contacts = len(self.contact_phone)

    def pick_user(self) -> int:
        """Any user; the key owners get a fair share, so owner-scoped tests find SMS."""
        z = self.rnd()
        if z < 0.15:
            return self.admin
        return self.member if z < 0.3 else self.randrange(self.user_count)

    def pick_owner(self) -> tuple[int, int, int]:
        """Lead, contact and remote phone of an SMS (-1: none)."""
        rnd, randrange = self.rnd, self.randrange
        lead = randrange(self.n_leads) if rnd() >= 0.005 else -1
        if lead >= 0 and rnd() >= 0.03:
            contact = self.lead_contact_start[lead] + randrange(self.lead_contact_count[lead])
            return lead, contact, self.contact_phone[contact]
        remote = self.contact_phone[randrange(self.n_contacts)] if rnd() >= 0.2 else -1
        return lead, -1, remote

    def local_number(self, user_local: int) -> int:
        """The user's own number, or now and then a group number."""
        if self.context_rng.random() < _GROUP_SHARE:
            return self.group_phone[self.context_rng.randrange(len(self.group_phone))]
        return user_local
