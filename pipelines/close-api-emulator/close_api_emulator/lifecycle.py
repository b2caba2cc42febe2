"""What happens to SMS over time, and the events every change logs.

Outbox and scheduled SMS are sent when they come due, and some sent ones fail later; all of it
lazily, on the next read or clock jump (`tick`). Every change of an SMS, lead or contact is
logged here as Close's event, with the acting request's context.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from dataclasses import dataclass
from typing import Any

from .auth import Principal
from .clock import Clock
from .config import EmulatorConfig
from .events import Event, EventLog
from .rendering import SmsRendering
from .schema import E164, ERROR, MMS_COST_CENTS, OUTBOX, SCHEDULED, SENT, sms_cost

# Outbox sends to numbers ending like this fail, so tests can pick the outcome.
FAILING_NUMBER_SUFFIX = "0000"
SEND_ERROR_MESSAGE = "Message delivery failed: the carrier rejected the destination number."
SILENT_FAILURE_MESSAGE = "Carrier rejected the message"
INVALID_NUMBER_MESSAGE = "The 'To' number is not a valid phone number."
# Twilio's error 21610: the carrier refuses a send to a number that texted an opt-out keyword.
OPTED_OUT_MESSAGE = "Attempt to send to unsubscribed recipient"
# The carrier's keywords (Twilio's defaults, and the FCC's 2025 REVOKE and OPT OUT), matched
# on the whole text in capitals, each run of other characters than letters and digits read as
# one space and those around it dropped ("Stop.", " opt-out ").
_OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPT OUT", "OPTOUT"}
)
_OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
_NOT_LETTERS_OR_DIGITS = re.compile(r"[^A-Z0-9]+")


def opt_out_turn(text: str) -> bool | None:
    """True if an inbound `text` opts its sender out, False if it opts back in, else None."""
    keyword = _NOT_LETTERS_OR_DIGITS.sub(" ", text.upper()).strip()
    if keyword in _OPT_OUT_KEYWORDS:
        return True
    return False if keyword in _OPT_IN_KEYWORDS else None


# Object types the API creates with a `created` event (`LeadWrites.create_lead`).
CREATED_BY_API = frozenset({"lead", "contact"})


@dataclass(frozen=True)
class RequestContext:
    """Who asked, and which request, so events carry request_id/api_key_id/meta."""

    principal: Principal | None
    request_id: str
    method: str
    path: str

    @property
    def user_id(self) -> str | None:
        """The acting user."""
        return self.principal.user_id if self.principal else None


class SmsLifecycle(SmsRendering):
    """Sends that come due, late delivery failures, and the event log of the organization."""

    def __init__(self, organization_id: str, config: EmulatorConfig, clock: Clock) -> None:
        super().__init__(organization_id, config, clock)
        self.events = EventLog(organization_id)
        # Outbox and scheduled SMS to send: (due, row), a heap; a row's current due time.
        self._due_sends: list[tuple[int, int]] = []
        self._send_due_at: dict[int, int] = {}
        # Silent delivery failures to come: (due, row), a heap.
        self._delivery_failures: list[tuple[int, int]] = []
        # Remote phones (pool indexes) whose last keyword opted them out: the carrier refuses.
        self.opted_out_phones: set[int] = set()

    def horizon_ms(self) -> int:
        """Events last updated before this instant are gone (retention)."""
        return self.clock.now_ms() - self.config.event_retention_days * 86_400_000

    # ---- sending --------------------------------------------------------------------------

    def tick(self) -> None:
        """Send due outbox/scheduled SMS; lazy, so it runs on every read and clock jump."""
        now = self.clock.now_ms()
        while self._due_sends and self._due_sends[0][0] <= now:
            due, row = heapq.heappop(self._due_sends)
            if self._send_due_at.get(row) != due:
                continue  # cancelled or rescheduled
            del self._send_due_at[row]
            if self.deleted[row] or self.status[row] not in (OUTBOX, SCHEDULED):
                continue
            self._send(row, due)
        while self._delivery_failures and self._delivery_failures[0][0] <= now:
            due, row = heapq.heappop(self._delivery_failures)
            if not self.deleted[row] and self.status[row] == SENT:
                self.fail_delivery(row, SILENT_FAILURE_MESSAGE, due)

    def hear_inbound(self, row: int) -> None:
        """Let the carrier see an inbound SMS: an opt-out or opt-in keyword turns its phone."""
        turn = opt_out_turn(self.texts.values[self.text[row]])
        if turn is not None:
            self.turn_phone(self.remote_phone[row], turn)

    def turn_phone(self, phone: int, opted_out: bool) -> None:
        """Record a keyword's turn of a remote phone (a pool index): out, or back in."""
        if opted_out:
            self.opted_out_phones.add(phone)
        else:
            self.opted_out_phones.discard(phone)

    def schedule_send(self, row: int, due: int) -> None:
        """Send an outbox or scheduled SMS at `due` (replacing any earlier due time)."""
        self._send_due_at[row] = due
        heapq.heappush(self._due_sends, (due, row))

    def cancel_send(self, row: int) -> None:
        """Forget a row's pending send, if any."""
        self._send_due_at.pop(row, None)

    def _send(self, row: int, at: int) -> None:
        before = self.render(row)
        remote = self.phones.get(self.remote_phone[row])
        if remote is None or not E164.match(remote):
            error = INVALID_NUMBER_MESSAGE
        elif remote.endswith(FAILING_NUMBER_SUFFIX):
            error = SEND_ERROR_MESSAGE
        elif self.remote_phone[row] in self.opted_out_phones:
            error = OPTED_OUT_MESSAGE
        else:
            error = None
        self.date_updated[row] = at
        if error is None:
            self.status[row] = SENT
            self.date_sent[row] = at
            self.activity_at[row] = at
            is_mms = bool(self.attachment_count[row] or self.api_attachments.get(row))
            text = self.texts.values[self.text[row]]
            self.cost[row] = self.costs.add(MMS_COST_CENTS if is_mms else sms_cost(text))
            action = "sent"
            if self._fails_silently(row):
                delay_ms = int(self.config.delivery_outcome_delay_seconds * 1000)
                heapq.heappush(self._delivery_failures, (at + delay_ms, row))
        else:
            self.status[row] = ERROR
            self.error[row] = self.errors.add(error)
            action = "updated"
        after = self.render(row)
        changed = sorted(k for k in after if after[k] != before[k])
        previous = {k: before[k] for k in changed}
        user_id = after["user_id"]
        self.emit_sms_event(
            action,
            row,
            at,
            user_id=user_id,
            data=after,
            previous=previous,
            changed=changed,
            ctx=None,
        )

    def _fails_silently(self, row: int) -> bool:
        """Whether a sent SMS gets a silent delivery failure: a seeded hash, so reproducible."""
        rate = self.config.silent_delivery_failure_rate
        if rate <= 0:
            return False
        digest = hashlib.blake2b(f"delivery:{self.seed}:{row}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < rate * (1 << 64)

    def fail_delivery(self, row: int, error_message: str, at: int) -> None:
        """A carrier's late delivery failure: status error and date_updated move, no event.

        Close logs no event for some outcomes it records itself (README of the Close facts).
        """
        self.status[row] = ERROR
        self.error[row] = self.errors.add(error_message)
        self.date_updated[row] = max(self.date_updated[row], at)

    # ---- events ---------------------------------------------------------------------------

    def emit_sms_event(
        self,
        action: str,
        row: int,
        at: int,
        *,
        user_id: str | None,
        data: dict[str, Any] | None,
        previous: dict[str, Any] | None,
        changed: list[str],
        ctx: RequestContext | None,
        meta: dict[str, Any] | None = None,
    ) -> Event:
        """Log an event of SMS `row` at `at`, unless its action is one never logged."""
        event = self._new_event(
            "activity.sms",
            self.sms_id(row),
            self.leads.get(self.lead[row]),
            action,
            at,
            user_id=user_id,
            data=data,
            previous=previous,
            changed=changed,
            ctx=ctx,
            meta=meta,
        )
        if action in self.config.unlogged_actions:
            return event
        return self.events.emit(event, int(self.config.consolidation_seconds * 1000))

    def emit_object_event(
        self,
        object_type: str,
        object_id: str,
        lead_id: str | None,
        action: str,
        *,
        data: dict[str, Any] | None,
        previous: dict[str, Any] | None,
        changed: list[str],
        ctx: RequestContext | None,
        meta: dict[str, Any] | None = None,
    ) -> Event:
        """Log an event of a lead, contact or other activity, now; an update of a lead or
        contact folds into its `created` event only with `fold_updates_into_created`."""
        event = self._new_event(
            object_type,
            object_id,
            lead_id,
            action,
            self.clock.now_ms(),
            user_id=None,
            data=data,
            previous=previous,
            changed=changed,
            ctx=ctx,
            meta=meta,
        )
        into_created = object_type not in CREATED_BY_API or self.config.fold_updates_into_created
        return self.events.emit(
            event, int(self.config.consolidation_seconds * 1000), into_created=into_created
        )

    def emit_object_change(
        self,
        object_type: str,
        object_id: str,
        lead_id: str | None,
        before: dict[str, Any],
        after: dict[str, Any],
        ctx: RequestContext | None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Log an `updated` event of an object naming the fields that differ."""
        changed = sorted(k for k in after if after.get(k) != before.get(k))
        self.emit_object_event(
            object_type,
            object_id,
            lead_id,
            "updated",
            data=after,
            previous={k: before.get(k) for k in changed},
            changed=changed,
            ctx=ctx,
            meta=meta,
        )

    def _new_event(
        self,
        object_type: str,
        object_id: str,
        lead_id: str | None,
        action: str,
        at: int,
        *,
        user_id: str | None,
        data: dict[str, Any] | None,
        previous: dict[str, Any] | None,
        changed: list[str],
        ctx: RequestContext | None,
        meta: dict[str, Any] | None = None,
    ) -> Event:
        """An event of any object, not yet logged; a request's context names its actor."""
        return self.events.new_event(
            at,
            user_id=ctx.user_id if ctx else user_id,
            request_id=ctx.request_id if ctx else None,
            api_key_id=ctx.principal.key_id if ctx and ctx.principal else None,
            object_type=object_type,
            object_id=object_id,
            lead_id=lead_id,
            action=action,
            changed_fields=changed,
            data=data,
            previous_data=previous,
            meta={
                **({"request_method": ctx.method, "request_path": ctx.path} if ctx else {}),
                **(meta or {}),
            },
        )
