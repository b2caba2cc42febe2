"""Seeded synthetic account: leads, contacts, users and N SMS shaped like a real one.

Everything derives from `random.Random(seed)`, so one seed always gives the same account
(ids included). `AccountGenerator` works in stages, each drawing from that generator in turn:
the people (account_people.py), the pools of texts and other values, the plan of the SMS in
time (sms_plan.py), then the rows, made newest first with their events. The objects the SMS
point to come last, from a generator of their own (context_generator.py).
"""

from __future__ import annotations

import random
from array import array

from .account_people import AccountPeople
from .context_generator import generate_context
from .events import Event
from .ids import IdCodec
from .lifecycle import OPTED_OUT_MESSAGE, opt_out_turn
from .sample_data import ERROR_MESSAGES, SEQUENCES, TEMPLATES, hostile_pool, text_pool
from .schema import (
    CLOSE_IO,
    DRAFT,
    ERROR,
    EXTERNAL,
    INBOUND,
    INBOX,
    MMS_COST_CENTS,
    OUTBOUND,
    OUTBOX,
    SCHEDULED,
    SENT,
    sms_cost,
)
from .sms_plan import (
    INBOUND_SHARE,
    KIND_BURST,
    KIND_IMPORTED,
    KIND_INBOUND,
    KIND_REPLY,
    KIND_SINGLE,
    SmsPlan,
)
from .store import SmsStore
from .timefmt import NO_TS

_MINUTE, _HOUR, _DAY = 60_000, 3_600_000, 86_400_000
# Share of the SMS given a hostile text when the switch is on.
_HOSTILE_SHARE = 0.05


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
    With `imported_history`, some SMS are dated outside that range (see `sms_plan`); they
    were imported at a time inside it. `now_ms` (default `end_ms`) anchors future dates.
    With `hostile_texts`, about 5% of the SMS that are not bulk sends get a hard text.
    """
    if end_ms < start_ms:
        raise ValueError("end must not be before start")
    generator = AccountGenerator(store, seed, start_ms, end_ms, horizon_ms, consolidation_ms)
    generator.run(n, imported_history, max(end_ms, now_ms or end_ms), hostile_texts)


class AccountGenerator:
    """One account in the making; `run` calls the stages in the order they draw numbers.

    Users, leads, contacts, phones, texts ... are indexes into the store's pools throughout.
    """

    def __init__(
        self,
        store: SmsStore,
        seed: int,
        start_ms: int,
        end_ms: int,
        horizon_ms: int,
        consolidation_ms: int,
    ) -> None:
        self.store = store
        self.seed = seed
        self.start_ms, self.end_ms, self.span = start_ms, end_ms, end_ms - start_ms
        self.horizon_ms = horizon_ms
        self.consolidation_ms = consolidation_ms
        self.rng = random.Random(seed)
        self.rnd = self.rng.random
        self.randrange = self.rng.randrange
        # Its own generator, so that the SMS stream's draws stay those of accounts made before.
        self.context_rng = random.Random(f"context:{seed}")
        # What the rows make: live rows in listing order, sends to schedule, events.
        self.live = array("i")
        # Conversations with a row made already: a newer one, as rows are made newest first.
        self.continued_conversations: set[int] = set()
        # Each row's plan kind and deletion time (NO_TS: none), for its events.
        self.row_kinds = bytearray()
        self.row_deleted_at = array("q")
        self.pending: list[tuple[int, int]] = []  # (due, row)
        self.events: list[Event] = []

    def run(self, n: int, imported_history: bool, now_ms: int, hostile_texts: bool) -> None:
        """Every stage, in order; `now_ms` anchors the dates of imports from the future."""
        store = self.store
        store.seed = self.seed
        store.ids = IdCodec("acti_", f"{store.organization_id}:{self.seed}")
        store.events.reseed(self.seed)
        people = self.people = AccountPeople(store, n, self.seed, self.rng, self.context_rng)
        self._add_pools(hostile_texts)
        plan = self.plan = SmsPlan(n, self.start_ms, self.end_ms, self.rng, people)
        plan.add_bursts(self.normal_texts)
        if imported_history:
            plan.add_imports(now_ms)
        plan.add_conversations_and_singles()
        keys, shift = plan.sorted_keys()
        plan.force_statuses()
        self._make_rows(keys, shift)
        store.build_index(self.live)
        generate_context(
            store,
            self.context_rng,
            self.seed,
            people.user_defs,
            people.lead_user,
            people.lead_contact_count,
            people.contact_phone,
            self.start_ms,
        )
        for due, row in self.pending:
            if not store.deleted[row]:
                store.schedule_send(row, due)
        store.events.append_sorted_bulk(self.events)

    # ---- pools --------------------------------------------------------------------------

    def _add_pools(self, hostile_texts: bool) -> None:
        """Texts, error messages, costs, templates and sequences the rows point to."""
        store = self.store
        # Its own generator, so that the switch leaves every other value as it is.
        self.hostile_rng = random.Random(f"hostile:{self.seed}") if hostile_texts else None
        normal, long_texts = text_pool(self.rng, 600)
        self.normal_texts = [store.texts.add(t) for t in normal]
        self.long_texts = [store.texts.add(t) for t in long_texts]
        self.error_messages = [store.errors.add(e) for e in ERROR_MESSAGES]
        self.one_segment_cost = store.costs.add(sms_cost(""))
        self.mms_cost = store.costs.add(MMS_COST_CENTS)
        self.cost_of_text: dict[int, int] = {}  # text pool index -> cost pool index
        self.template_choices = [store.templates.add(t[0]) for t in TEMPLATES]
        hostile = self.hostile_rng
        self.hostile_texts = [store.texts.add(t) for t in hostile_pool(hostile)] if hostile else []
        self.sequence_choices = [store.sequences.add(s) for s in SEQUENCES]
        self.keyword_texts = {
            t
            for t in (*self.normal_texts, *self.hostile_texts)
            if opt_out_turn(store.texts.values[t]) is not None
        }
        self.quiet_texts = [t for t in self.normal_texts if t not in self.keyword_texts]

    # ---- the rows -----------------------------------------------------------------------

    def _make_rows(self, keys: list[int], shift: int) -> None:
        """The rows, the carrier's refusals among them, then every row's events."""
        mask = (1 << shift) - 1
        make_row = self._make_row
        for row, key in enumerate(keys):
            make_row(row, key & mask, key >> shift)
        self._refuse_sends_to_opted_out()
        row_events = self._row_events
        for row, (kind, deleted_at) in enumerate(
            zip(self.row_kinds, self.row_deleted_at, strict=True)
        ):
            row_events(row, kind, deleted_at)

    def _make_row(self, row: int, i: int, created: int) -> None:
        """SMS number `i` of the plan as `row`: its values drawn, its row stored."""
        kind = self.plan.kinds[i]
        lead, contact, remote, user, local, direction, burst_text = self._row_people(kind, i)
        status = self.plan.forced.get(i)
        if status is not None:
            direction = INBOUND if status == INBOX else OUTBOUND
        else:
            status = self._row_status(kind, direction)
        created_by = user if direction == OUTBOUND else -1
        attachments = 1 + self.randrange(3) if self.rnd() < 0.1 else 0
        text = self._row_text(attachments, burst_text)
        if kind in (KIND_INBOUND, KIND_REPLY):
            text = self._conversation_text(self.plan.who[i], row, text)
        sent, scheduled, updated, cost, error = self._row_outcome(
            row, kind, status, created, attachments, text
        )
        activity_at = sent if status == SENT else created
        source, template, sequence = self._row_outbound_extras(direction, kind)
        deleted_at = NO_TS
        updated_by = created_by
        if kind == KIND_IMPORTED:
            # Logged by an import run at some time of the account's history.
            source = EXTERNAL
            updated = self.start_ms + self.randrange(self.span + 1)
        else:
            updated, deleted_at, updated_by = self._later_changes(
                i, status, created, updated, created_by
            )
        deleted = deleted_at != NO_TS
        self.store.append_row(
            date_created=created,
            date_updated=updated,
            activity_at=activity_at,
            date_sent=sent,
            date_scheduled=scheduled,
            status=status,
            direction=direction,
            source=source,
            lead=lead,
            contact=contact,
            user=user,
            created_by=created_by,
            updated_by=updated_by,
            local_phone=local,
            remote_phone=remote,
            text=text,
            cost=cost,
            error=error,
            template=template,
            attachment_count=attachments,
            sequence=sequence,
            deleted=deleted,
        )
        if not deleted:
            self.live.append(row)
        self.row_kinds.append(kind)
        self.row_deleted_at.append(deleted_at)

    def _refuse_sends_to_opted_out(self) -> None:
        """The carrier's part: a send to a phone whose last keyword opted it out failed.

        Rows are newest first, so they are walked backwards, in time. Imported SMS were sent
        by another system and stay as logged.
        """
        store = self.store
        refused = store.errors.add(OPTED_OUT_MESSAGE)
        turns = {}
        for index, value in enumerate(store.texts.values):
            turn = opt_out_turn(value) if isinstance(value, str) else None
            if turn is not None:
                turns[index] = turn
        status, direction, remote, text = (
            store.status,
            store.direction,
            store.remote_phone,
            store.text,
        )
        opted_out = store.opted_out_phones
        kinds = self.row_kinds
        for row in range(len(status) - 1, -1, -1):
            if direction[row] == INBOUND:
                turn = turns.get(text[row])
                if turn is not None:
                    store.turn_phone(remote[row], turn)
            elif status[row] == SENT and remote[row] in opted_out and kinds[row] != KIND_IMPORTED:
                status[row] = ERROR
                store.error[row] = refused
                store.cost[row] = 0
                store.date_sent[row] = NO_TS
                store.activity_at[row] = store.date_created[row]

    def _row_people(self, kind: int, i: int) -> tuple[int, int, int, int, int, int, int]:
        """Lead, contact, remote and local phone, user, direction, and the bulk text (-1)."""
        plan, people = self.plan, self.people
        burst_text = -1
        if kind in (KIND_INBOUND, KIND_REPLY):
            lead, contact, remote, user = plan.conversations[plan.who[i]]
            local = plan.thread_local[plan.who[i]]
            if kind == KIND_INBOUND:
                direction = INBOUND
                if self.rnd() < 0.1:
                    user = -1  # not assigned to anyone, though it came in on a user's number
            else:
                direction = OUTBOUND
            return lead, contact, remote, user, local, direction, burst_text
        lead, contact, remote = people.pick_owner()
        if kind == KIND_BURST:
            user, burst_text = plan.bursts[plan.who[i]]
            direction = OUTBOUND
        elif kind == KIND_IMPORTED:
            direction = INBOUND if self.rnd() < INBOUND_SHARE else OUTBOUND
            user = people.pick_user()
        else:
            direction = OUTBOUND
            user = people.pick_user()
        local = people.user_phone[user]
        if kind == KIND_SINGLE:
            local = people.local_number(local)
        return lead, contact, remote, user, local, direction, burst_text

    def _row_status(self, kind: int, direction: int) -> int:
        if direction == INBOUND:
            return INBOX
        if kind in (KIND_BURST, KIND_IMPORTED):
            return SENT
        if kind == KIND_REPLY:
            return SENT if self.rnd() < 0.94 else ERROR
        # Single outbound SMS carry the drafts, scheduled and outbox SMS of the account.
        y = self.rnd()
        if y < 0.75:
            return SENT
        if y < 0.81:
            return ERROR
        if y < 0.905:
            return DRAFT
        return SCHEDULED if y < 0.9525 else OUTBOX

    def _row_text(self, attachments: int, burst_text: int) -> int:
        t = self.rnd()
        if burst_text >= 0:
            text = burst_text
        elif attachments and t < 0.3:
            text = 0  # an MMS with only a picture has no text
        elif t < 0.01:
            text = self.long_texts[self.randrange(len(self.long_texts))]
        elif t < 0.015:
            text = 0
        else:
            text = self.normal_texts[self.randrange(len(self.normal_texts))]
        hostile = self.hostile_rng
        if hostile is not None and burst_text < 0 and hostile.random() < _HOSTILE_SHARE:
            text = self.hostile_texts[hostile.randrange(len(self.hostile_texts))]
        return text

    def _conversation_text(self, conversation: int, row: int, text: int) -> int:
        """`text`, unless it is an opt-out or opt-in keyword in a conversation that goes on.

        A lead who texts STOP ends the conversation: its rep does not answer, as reps of a
        real account do not. The text put in its place is drawn without the generator, so
        the account's other values stay as they were.
        """
        continued = conversation in self.continued_conversations
        self.continued_conversations.add(conversation)
        if continued and text in self.keyword_texts:
            return self.quiet_texts[row % len(self.quiet_texts)]
        return text

    def _row_outcome(
        self, row: int, kind: int, status: int, created: int, attachments: int, text: int
    ) -> tuple[int, int, int, int, int]:
        """date_sent, date_scheduled, date_updated, cost and error message of a new SMS."""
        rnd, randrange = self.rnd, self.randrange
        sent = scheduled = NO_TS
        error = cost = 0
        updated = created
        if status == SENT:
            # An import logs it as sent when it was created; a bulk send takes 1.5 s.
            delay = (
                0 if kind == KIND_IMPORTED else 1_500 if kind == KIND_BURST else randrange(4_000)
            )
            sent = updated = created + delay
            cost = self.mms_cost if attachments else self._cost_of(text)
        elif status == ERROR:
            updated = created + 500 + randrange(5_000)
            error = self.error_messages[randrange(len(self.error_messages))]
            cost = self.one_segment_cost if rnd() < 0.5 else 0
        elif status == INBOX:
            cost = self.one_segment_cost if rnd() < 0.7 else 0
        elif status == SCHEDULED:
            scheduled = self.end_ms + _HOUR + randrange(30 * _DAY)
            self.pending.append((scheduled, row))
        return sent, scheduled, updated, cost, error

    def _cost_of(self, text: int) -> int:
        """The cost pool index of sending text `text` as an SMS."""
        cost = self.cost_of_text.get(text, -1)
        if cost < 0:
            store = self.store
            cost = self.cost_of_text[text] = store.costs.add(sms_cost(store.texts.values[text]))
        return cost

    def _row_outbound_extras(self, direction: int, kind: int) -> tuple[int, int, int]:
        """Source, template and sequence: outbound SMS may be external, templated, sequenced.

        A template answers a customer (a rep's reply in a conversation), so the customer's
        answer to it comes within minutes to hours, as to any reply; the draw is made for every
        outbound SMS all the same, so an account's other values stay as they were.
        """
        rnd, randrange = self.rnd, self.randrange
        outbound = direction == OUTBOUND
        source = EXTERNAL if outbound and rnd() < 0.1 else CLOSE_IO
        templates, sequences = self.template_choices, self.sequence_choices
        template = templates[randrange(len(templates))] if outbound and rnd() < 0.05 else 0
        if kind != KIND_REPLY:
            template = 0
        sequence = sequences[randrange(len(sequences))] if outbound and rnd() < 0.04 else -1
        return source, template, sequence

    def _later_changes(
        self, i: int, status: int, created: int, updated: int, created_by: int
    ) -> tuple[int, int, int]:
        """date_updated, deletion time (NO_TS: none) and updated_by after later changes.

        A change or delete that would fall after end_ms has not happened yet: clamping it to
        end_ms instead would pile them all at one instant the feed of a sync reads.
        """
        rnd, randrange = self.rnd, self.randrange
        updated_later = rnd() < 0.06 and status not in (SCHEDULED, OUTBOX)
        if updated_later:
            changed_at = max(updated, created + _MINUTE + randrange(20 * _DAY))
            updated_later = changed_at <= self.end_ms
            updated = changed_at if updated_later else updated
        deleted_at = NO_TS
        if rnd() < 0.015 and i not in self.plan.forced:
            deleted_at = max(updated, created) + _HOUR + randrange(40 * _DAY)
            if deleted_at > self.end_ms:
                deleted_at = NO_TS
        updated_by = created_by
        if updated_later and rnd() < 0.5:
            updated_by = randrange(self.people.user_count)
        return updated, deleted_at, updated_by

    # ---- events -------------------------------------------------------------------------

    def _row_events(self, row: int, kind: int, deleted_at: int) -> None:
        """The events inside retention of a stored row (deleted at `deleted_at`, or NO_TS),
        following the same consolidation rule as the API."""
        store, horizon = self.store, self.horizon_ms
        lead, user, updated = store.lead[row], store.user[row], store.date_updated[row]
        if kind == KIND_IMPORTED:
            if updated >= horizon:  # the import created it then (and logged it sent)
                self._event(row, lead, "created", updated, user, data_row=row)
                if store.direction[row] == OUTBOUND:
                    self._event(row, lead, "sent", updated, user, data_row=row)
            return
        created, sent = store.date_created[row], store.date_sent[row]
        if max(updated, created, deleted_at) < horizon:
            return
        status, updated_by = store.status[row], store.updated_by[row]
        first = None
        if created >= horizon:
            first = self._event(row, lead, "created", created, user, data_row=row)
        if status == SENT and store.direction[row] == OUTBOUND and sent >= horizon:
            self._event(row, lead, "sent", sent, user, data_row=row)
        if updated > max(created, sent) and updated >= horizon:
            changed = ["status", "error_message"] if status == ERROR else ["cost", "date_updated"]
            if first is not None and updated - created <= self.consolidation_ms and status != SENT:
                first.date_updated = updated
                first.changed_fields = sorted(set(changed))
            else:
                event = self._event(row, lead, "updated", updated, updated_by, data_row=row)
                event.changed_fields = changed
                event.previous_data = {name: None for name in changed}
        if deleted_at != NO_TS and deleted_at >= horizon:
            self._event(
                row, lead, "deleted", deleted_at, updated_by, prev_row=row, changed_fields=[]
            )

    def _event(
        self, row: int, lead: int, action: str, at: int, user: int, **extra: object
    ) -> Event:
        """An SMS event of the account, with a request id of its own."""
        store = self.store
        event = store.events.new_event(
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
        event.request_id = "req_" + event.id[3:]
        for name, value in extra.items():
            setattr(event, name, value)
        self.events.append(event)
        return event
