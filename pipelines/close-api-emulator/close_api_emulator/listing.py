"""Pages of an SMS list: filters, order and paging over the columns' indexes.

The common request (newest first, filtered by date_created at most) is answered by binary
search and slicing of the listing index; every other one sorts the rows that match.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .clock import Clock
from .columns import SmsColumns
from .config import EmulatorConfig
from .errors import DeletedInPage
from .timefmt import NO_TS


@dataclass
class SmsQuery:
    """Parsed filters of an SMS list; rows/leads/contacts/users are already pool indexes."""

    rows: list[int] | None = None
    leads: list[int] | None = None
    contacts: list[int] | None = None
    users: list[int] | None = None
    date_created: dict[str, int] = field(default_factory=dict)
    activity_at: dict[str, int] = field(default_factory=dict)
    skip: int = 0
    limit: int = 100
    order_field: str = "date_created"
    descending: bool = True


def _bounds_test(bounds: dict[str, int]) -> Callable[[int], bool]:
    """Whether a timestamp lies within gt/gte/lt/lte `bounds` (never for NO_TS)."""
    gt, gte = bounds.get("gt"), bounds.get("gte")
    lt, lte = bounds.get("lt"), bounds.get("lte")

    def test(value: int) -> bool:
        if value == NO_TS:
            return False
        if gt is not None and value <= gt:
            return False
        if gte is not None and value < gte:
            return False
        if lt is not None and value >= lt:
            return False
        return not (lte is not None and value > lte)

    return test


class SmsListing(SmsColumns):
    """list_rows: the rows of one page of /activity/sms/ or /activity/."""

    def __init__(self, organization_id: str, config: EmulatorConfig, clock: Clock) -> None:
        super().__init__(organization_id, config, clock)
        # Seeds the order of SMS sharing an instant per request (config.unstable_tie_order).
        self._tie_orders = 0

    def list_rows(self, q: SmsQuery) -> tuple[list[int], bool]:
        """Rows of one page and has_more, newest first by date_created (ties by row)."""
        matches = self._row_filter(q)
        tie_order = self._tie_order()
        candidates: Iterable[int] | None = None
        if q.rows is not None:
            candidates = q.rows
        elif q.leads is not None:
            candidates = [r for lead in q.leads for r in self.rows_by_lead.get(lead, ())]
        elif q.contacts is not None:
            candidates = [r for c in q.contacts for r in self.rows_by_contact.get(c, ())]
        if (
            candidates is not None
            or q.order_field != "date_created"
            or tie_order
            or self.ghosts
            or self.forbidden
        ):
            return self._sorted_page(q, candidates, matches, tie_order)
        return self._indexed_page(q, matches)

    def _row_filter(self, q: SmsQuery) -> Callable[[int], bool] | None:
        """The test of the user, contact, lead and activity_at filters; None without any."""
        activity_test = _bounds_test(q.activity_at) if q.activity_at else None
        users = set(q.users) if q.users is not None else None
        contacts = set(q.contacts) if q.contacts is not None else None
        leads = set(q.leads) if q.leads is not None else None
        if users is None and contacts is None and leads is None and activity_test is None:
            return None

        def matches(row: int) -> bool:
            if users is not None and self.user[row] not in users:
                return False
            if contacts is not None and self.contact[row] not in contacts:
                return False
            if leads is not None and self.lead[row] not in leads:
                return False
            return activity_test is None or activity_test(self.activity_at[row])

        return matches

    def _tie_order(self) -> Callable[[int], tuple[int, float]] | None:
        """With `unstable_tie_order`, a sort key ordering SMS of one instant anew each request."""
        if not self.config.unstable_tie_order:
            return None
        self._tie_orders += 1
        shuffled = random.Random(self._tie_orders).random
        ties: dict[int, float] = {}
        return lambda row: (-self.date_created[row], ties.setdefault(row, shuffled()))

    def _sorted_page(
        self,
        q: SmsQuery,
        candidates: Iterable[int] | None,
        matches: Callable[[int], bool] | None,
        tie_order: Callable[[int], tuple[int, float]] | None,
    ) -> tuple[list[int], bool]:
        """A page of the matching candidates (all listed rows by default), sorted."""
        ghosts, hidden = self.ghosts, self.forbidden
        created_test = _bounds_test(q.date_created) if q.date_created else None
        if candidates is None:
            candidates = self.listing_order
        if ghosts and q.rows is None:
            candidates = itertools.chain(candidates, ghosts)
        rows = sorted(
            {
                r
                for r in candidates
                if (not self.deleted[r] or r in ghosts)
                and r not in hidden
                and (created_test is None or created_test(self.date_created[r]))
                and (matches is None or matches(r))
            },
            key=tie_order or self.sort_key(q.order_field),
            reverse=not q.descending,
        )
        page = rows[q.skip : q.skip + q.limit + 1]
        if ghosts and not ghosts.isdisjoint(page[: q.limit]):
            raise DeletedInPage()
        return page[: q.limit], len(page) > q.limit

    def _indexed_page(
        self, q: SmsQuery, matches: Callable[[int], bool] | None
    ) -> tuple[list[int], bool]:
        """A page read off the listing index: the date_created window by binary search."""
        keys = self.listing_keys
        lo, hi = 0, len(keys)
        b = q.date_created
        if "gt" in b:
            hi = min(hi, bisect.bisect_left(keys, -b["gt"]))
        if "gte" in b:
            hi = min(hi, bisect.bisect_right(keys, -b["gte"]))
        if "lt" in b:
            lo = max(lo, bisect.bisect_right(keys, -b["lt"]))
        if "lte" in b:
            lo = max(lo, bisect.bisect_left(keys, -b["lte"]))
        if hi <= lo:
            return [], False
        order = self.listing_order
        want = q.skip + q.limit + 1
        if matches is None:
            if q.descending:
                page = list(order[lo + q.skip : min(hi, lo + want)])
            else:
                start = hi - 1 - q.skip
                stop = max(lo - 1, hi - 1 - want)
                page = [order[p] for p in range(start, stop, -1)] if start >= lo else []
            return page[: q.limit], len(page) > q.limit
        positions = range(lo, hi) if q.descending else range(hi - 1, lo - 1, -1)
        page = []
        seen = 0
        for pos in positions:
            row = order[pos]
            if matches(row):
                seen += 1
                if seen > q.skip:
                    page.append(row)
                    if len(page) > q.limit:
                        break
        return page[: q.limit], len(page) > q.limit
