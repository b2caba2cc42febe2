"""The plan of a generated account's SMS: when each one is created, and what kind it is.

Bulk sends, imports, conversations and single outbound SMS are planned in time first; the
generator then makes the rows from the plan, newest first (generator.py).
"""

from __future__ import annotations

import math
import random
from array import array
from datetime import datetime, timezone

from .account_people import AccountPeople
from .schema import DRAFT, ERROR, INBOX, OUTBOX, SCHEDULED, SENT
from .timefmt import dt_to_ms

_MINUTE, _HOUR, _DAY = 60_000, 3_600_000, 86_400_000

# What a planned SMS is; the kind decides its direction and status.
KIND_SINGLE, KIND_BURST, KIND_INBOUND, KIND_REPLY, KIND_IMPORTED = range(5)
# Conversations: the share of inbound SMS among the SMS that are neither bulk sends nor
# imports; inbound SMS a user answers; answers the customer writes back to.
INBOUND_SHARE = 0.42
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


class SmsPlan:
    """date_created, kind and `who` of each planned SMS (by plan index), drawn from `rng`.

    `who` is the index of the SMS's bulk send (in `bursts`) or conversation (in
    `conversations`), -1 for the others. Call the `add_` stages in order, then `sorted_keys`.
    """

    def __init__(
        self, n: int, start_ms: int, end_ms: int, rng: random.Random, people: AccountPeople
    ) -> None:
        self.n = n
        self.start_ms, self.end_ms, self.span = start_ms, end_ms, end_ms - start_ms
        self.rng = rng
        self.people = people
        self.created: list[int] = []
        self.kinds = bytearray()
        self.who = array("i")
        self.bursts: list[tuple[int, int]] = []  # (user, text) of one bulk send
        self.conversations: list[tuple[int, int, int, int]] = []  # (lead, contact, remote, user)
        self.thread_local = array("i")  # the local number of each conversation
        self.forced: dict[int, int] = {}  # plan index -> the status it must have

    def add_bursts(self, texts: list[int]) -> None:
        """Bulk sends, about a third of the SMS: one user, one of `texts`, many leads, at one
        instant."""
        if self.n < 300:
            return
        rng, rnd, randrange = self.rng, self.rng.random, self.rng.randrange
        budget = self.n // 3
        for _ in range(max(1, self.n // 4_000)):
            size = min(rng.randint(150, 400), budget)
            if size < 150:
                break
            budget -= size
            at = self.start_ms + int(rnd() * self.span)
            self.created.extend([at] * size)
            self.kinds.extend(bytes([KIND_BURST]) * size)
            self.who.extend([len(self.bursts)] * size)
            user = randrange(self.people.user_count)
            self.bursts.append((user, texts[randrange(len(texts))]))

    def add_imports(self, now_ms: int) -> None:
        """Imported SMS dated outside the account's span (see `_imported_dates`)."""
        for at in _imported_dates(self.rng, self.n - len(self.created), self.start_ms, now_ms):
            self.created.append(at)
            self.kinds.append(KIND_IMPORTED)
            self.who.append(-1)

    def add_conversations_and_singles(self) -> None:
        """Conversations until the inbound share of the remaining SMS is reached, then single
        outbound SMS for the rest."""
        regular = self.n - len(self.created)
        conversed = self._add_conversations(regular)
        self._add_singles(regular - conversed)

    def _add_conversations(self, regular: int) -> int:
        """An inbound SMS, answered or not by the lead's user on the same phones, and
        sometimes more exchanges; returns how many SMS the conversations hold."""
        rnd, end_ms, people = self.rng.random, self.end_ms, self.people
        inbound_target = round(INBOUND_SHARE * regular)
        produced = inbound = 0
        add_created, add_kind, add_who = self.created.append, self.kinds.append, self.who.append
        conversations = self.conversations
        while inbound < inbound_target and produced < regular:
            at = self.start_ms + int(rnd() * (self.span + 1))
            lead, contact, remote = people.pick_owner()
            thread = len(conversations)
            user = people.lead_user[lead] if lead >= 0 else people.pick_user()
            conversations.append((lead, contact, remote, user))
            self.thread_local.append(people.local_number(people.user_phone[user]))
            while True:
                add_created(at), add_kind(KIND_INBOUND), add_who(thread)
                produced += 1
                inbound += 1
                if produced >= regular or lead < 0 or rnd() >= _REPLY_RATE:
                    break
                at += _delay(self.rng, _REPLY_DELAY)
                if at > end_ms:
                    break
                add_created(at), add_kind(KIND_REPLY), add_who(thread)
                produced += 1
                if produced >= regular or rnd() >= _FOLLOW_UP_RATE:
                    break
                at += _delay(self.rng, _FOLLOW_UP_DELAY)
                if at > end_ms:
                    break
        return produced

    def _add_singles(self, count: int) -> None:
        start_ms, span, rnd = self.start_ms, self.span, self.rng.random
        self.created.extend([start_ms + int(rnd() * (span + 1)) for _ in range(count)])
        self.kinds.extend(bytes([KIND_SINGLE]) * count)
        self.who.extend(array("i", [-1]) * count)

    def sorted_keys(self) -> tuple[list[int], int]:
        """The plan newest first, in one sort of plain ints: date_created above the plan
        index, which takes the returned number of low bits. The dates are let go."""
        created = self.created
        shift = max(1, len(created).bit_length())
        keys = [at << shift | i for i, at in enumerate(created)]
        self.created = []
        keys.sort(reverse=True)
        return keys, shift

    def force_statuses(self) -> None:
        """Make sure every status appears at least once."""
        if self.n < 12:
            return
        answerable = [i for i, k in enumerate(self.kinds) if k == KIND_INBOUND]
        outbound_specs = [i for i, k in enumerate(self.kinds) if k in (KIND_SINGLE, KIND_REPLY)]
        if answerable:
            self.forced[self.rng.choice(answerable)] = INBOX
        wanted = (DRAFT, SCHEDULED, OUTBOX, SENT, ERROR)
        chosen = self.rng.sample(outbound_specs, min(len(wanted), len(outbound_specs)))
        self.forced.update(zip(chosen, wanted, strict=False))
