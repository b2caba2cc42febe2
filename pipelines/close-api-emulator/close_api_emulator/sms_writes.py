"""SMS created, updated and deleted through the API: Close's validation rules and events."""

from __future__ import annotations

from typing import Any

from .auth import Principal
from .clock import Clock
from .config import EmulatorConfig
from .errors import Forbidden, NotFound, ValidationError
from .ids import random_like_id
from .lifecycle import RequestContext, SmsLifecycle
from .schema import (
    ATTACHMENT_CONTENT_TYPES,
    CREATE_FIELDS,
    DIRECTION_CODE,
    DIRECTIONS,
    DRAFT,
    E164,
    INBOUND,
    INBOX,
    OUTBOUND,
    OUTBOX,
    SCHEDULED,
    SENT,
    SOURCE_CODE,
    SOURCES,
    STATUS_CODE,
    STATUSES,
    UPDATE_FIELDS,
)
from .timefmt import NO_TS, dt_to_ms, parse_datetime

# Fields of a create or update body that must be strings when given.
_STRING_FIELDS = (
    "text",
    "lead_id",
    "contact_id",
    "user_id",
    "created_by_id",
    "template_id",
    "local_phone",
    "remote_phone",
    "organization_id",
)
_DATE_FIELDS = ("activity_at", "date_created", "date_scheduled")


class SmsWrites(SmsLifecycle):
    """POST, PUT and DELETE of /activity/sms/."""

    def __init__(self, organization_id: str, config: EmulatorConfig, clock: Clock) -> None:
        super().__init__(organization_id, config, clock)
        # 404s "deleted mid-query" waiting for offset list requests (empty_query_on_delete).
        self.armed_empty_queries = 0

    # ---- create -------------------------------------------------------------------------

    def create(self, payload: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """POST /activity/sms/: validate, store, emit `created` (and `sent`)."""
        self.tick()
        clean = self._validate(payload, CREATE_FIELDS, creating=True)
        now = self.clock.now_ms()
        status = STATUS_CODE[clean["status"]]
        errors: dict[str, str] = {}
        self._check_sendable(status, clean, errors)
        scheduled = clean.get("date_scheduled")
        if status == SCHEDULED and scheduled is not None and scheduled <= now:
            errors["date_scheduled"] = "The scheduled date must be in the future."
        if errors:
            raise ValidationError(errors)
        principal = ctx.principal
        user_id = clean.get("user_id") or (principal.user_id if principal else None)
        row = self._append_created(clean, status, now, user_id, principal)
        sms_id = self.sms_id(row)
        if clean.get("attachments"):
            self._store_attachments(row, sms_id, clean["attachments"])
        self.index_row(row)
        if self.direction[row] == INBOUND:
            self.hear_inbound(row)
        rendered = self.render(row)
        self.emit_sms_event(
            "created", row, now, user_id=user_id, data=rendered, previous=None, changed=[], ctx=ctx
        )
        if status == SENT and self.direction[row] == OUTBOUND:
            self.emit_sms_event(
                "sent", row, now, user_id=user_id, data=rendered, previous=None, changed=[], ctx=ctx
            )
        if status == OUTBOX:
            self.schedule_send(row, now + int(float(clean.get("send_in") or 0) * 1000))
        elif status == SCHEDULED:
            self.schedule_send(row, scheduled)  # type: ignore[arg-type]
        return rendered

    def _append_created(
        self,
        clean: dict[str, Any],
        status: int,
        now: int,
        user_id: str | None,
        principal: Principal | None,
    ) -> int:
        """The row of a new SMS, with Close's defaults for what the request leaves out."""
        direction = clean.get("direction") or ("inbound" if status == INBOX else "outbound")
        source = clean.get("source") or (
            "Close.io" if status in (OUTBOX, SCHEDULED) else "External"
        )
        # `is None`, not `or`: 1970-01-01T00:00:00Z is 0 ms, a valid imported date.
        created = now if clean.get("date_created") is None else clean["date_created"]
        created_by_id = clean.get("created_by_id") or (principal.user_id if principal else None)
        sent = created if status == SENT else NO_TS
        activity_at = clean.get("activity_at")
        if activity_at is None:
            activity_at = sent if sent != NO_TS else created
        lead = self.leads.add(clean["lead_id"]) if clean.get("lead_id") else -1
        contact = self.contacts.add(clean["contact_id"]) if clean.get("contact_id") else -1
        text = clean.get("text")
        template_id = clean.get("template_id")
        if text is None and template_id:
            text = f"(rendered from template {template_id})"
        return self.append_row(
            date_created=created,
            # Saved now, whatever date_created says (an import may date it in the future).
            date_updated=now,
            activity_at=activity_at,
            date_sent=sent,
            date_scheduled=clean.get("date_scheduled") if status == SCHEDULED else NO_TS,
            status=status,
            direction=DIRECTION_CODE[direction],
            source=SOURCE_CODE[source],
            lead=lead,
            contact=contact,
            user=self.user_index(user_id, principal),
            created_by=self.user_index(created_by_id, principal),
            updated_by=self.user_index(created_by_id, principal),
            local_phone=self.phones.add(clean["local_phone"]) if clean.get("local_phone") else -1,
            remote_phone=(
                self.phones.add(clean["remote_phone"]) if clean.get("remote_phone") else -1
            ),
            text=self.texts.add(text) if text is not None else 0,
            cost=0,
            error=0,
            template=self.templates.add(template_id) if template_id else 0,
        )

    # ---- update -------------------------------------------------------------------------

    def update(self, sms_id: str, payload: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """PUT /activity/sms/{id}/ (a PATCH): drafts only, plus cancelling back to draft."""
        self.tick()
        row = self.row_of(sms_id)
        if row is None:
            raise NotFound()
        clean = self._validate(payload, UPDATE_FIELDS, creating=False)
        now = self.clock.now_ms()
        new_status = self._status_after_update(row, clean)
        before = self.render(row)
        scheduled = self._check_updated_sms(row, new_status, clean, before, now)
        self._apply_update(row, sms_id, clean, ctx)
        self.status[row] = new_status
        self.cancel_send(row)
        if new_status == SCHEDULED:
            self.date_scheduled[row] = scheduled
            self.schedule_send(row, self.date_scheduled[row])
        elif new_status == OUTBOX:
            self.date_scheduled[row] = NO_TS
            self.schedule_send(row, now + int(float(clean.get("send_in") or 0) * 1000))
        else:
            self.date_scheduled[row] = NO_TS
        self.date_updated[row] = max(now, self.date_updated[row])
        if ctx.principal is not None:
            self.updated_by[row] = self.user_index(ctx.principal.user_id, ctx.principal)
        after = self.render(row)
        changed = sorted(k for k in after if after[k] != before[k])
        self.emit_sms_event(
            "updated",
            row,
            self.date_updated[row],
            user_id=after["user_id"],
            data=after,
            previous={k: before[k] for k in changed},
            changed=changed,
            ctx=ctx,
        )
        return after

    def _status_after_update(self, row: int, clean: dict[str, Any]) -> int:
        """The status an update leaves; only drafts change, and scheduled/outbox SMS may go
        back to draft."""
        current = self.status[row]
        new_status = STATUS_CODE[clean["status"]] if "status" in clean else current
        if current != DRAFT:
            cancelling = current in (SCHEDULED, OUTBOX) and new_status == DRAFT
            if not cancelling:
                raise ValidationError({"status": "Only draft SMS can be modified."})
        elif new_status not in (DRAFT, SCHEDULED, OUTBOX):
            raise ValidationError(
                {"status": "A draft can only be changed to draft, scheduled or outbox."}
            )
        return new_status

    def _check_updated_sms(
        self, row: int, new_status: int, clean: dict[str, Any], before: dict[str, Any], now: int
    ) -> int:
        """Whether the SMS as updated can take its new status; returns its date_scheduled."""
        merged = {
            "local_phone": clean.get("local_phone", before["local_phone"]),
            "text": clean.get("text", before["text"]),
            "template_id": clean.get("template_id", before["template_id"]),
            "date_scheduled": clean.get("date_scheduled", self.date_scheduled[row]),
        }
        errors: dict[str, str] = {}
        self._check_sendable(new_status, merged, errors)
        if (
            new_status == SCHEDULED
            and merged["date_scheduled"] not in (None, NO_TS)
            and merged["date_scheduled"] <= now
        ):
            errors["date_scheduled"] = "The scheduled date must be in the future."
        if errors:
            raise ValidationError(errors)
        return merged["date_scheduled"]

    def _apply_update(
        self, row: int, sms_id: str, clean: dict[str, Any], ctx: RequestContext
    ) -> None:
        """Write the updated fields other than status into the row."""
        if "text" in clean:
            self.text[row] = self.texts.add(clean["text"]) if clean["text"] is not None else 0
        if "template_id" in clean:
            tid = clean["template_id"]
            self.template[row] = self.templates.add(tid) if tid else 0
        for name, column in (
            ("local_phone", self.local_phone),
            ("remote_phone", self.remote_phone),
        ):
            if name in clean:
                column[row] = self.phones.add(clean[name]) if clean[name] else -1
        if "activity_at" in clean:
            activity_at = clean["activity_at"]
            self.activity_at[row] = activity_at if activity_at is not None else NO_TS
        if "user_id" in clean:
            self.user[row] = self.user_index(clean["user_id"], ctx.principal)
        if "lead_id" in clean or "contact_id" in clean:
            self.unindex_owner(row)
            if "lead_id" in clean:
                self.lead[row] = self.leads.add(clean["lead_id"]) if clean["lead_id"] else -1
            if "contact_id" in clean:
                cid = clean["contact_id"]
                self.contact[row] = self.contacts.add(cid) if cid else -1
            self.index_owner(row)
        if "attachments" in clean:
            self._store_attachments(row, sms_id, clean["attachments"])

    # ---- delete -------------------------------------------------------------------------

    def delete(self, sms_id: str, ctx: RequestContext, keep_in_index: bool = False) -> None:
        """DELETE /activity/sms/{id}/: emits `deleted` with data null.

        With `keep_in_index`, the SMS stays in the list ordering as a ghost (see DeletedInPage).
        """
        self.tick()
        row = self.row_of(sms_id)
        if row is None:
            raise NotFound()
        principal = ctx.principal
        if principal is not None and not principal.is_admin:
            owner = self.users.get(self.user[row])
            if owner is None or owner[0] != principal.user_id:
                raise Forbidden()
        self.delete_row(row, ctx)
        if keep_in_index:
            self.ghosts.add(row)

    def delete_row(self, row: int, ctx: RequestContext | None) -> None:
        """Delete a live row: out of the indexes, its send cancelled, a `deleted` event."""
        now = self.clock.now_ms()
        previous = self.render(row)
        self.deleted[row] = 1
        self.unindex_row(row)
        self.cancel_send(row)
        if self.config.empty_query_on_delete:
            self.armed_empty_queries += 1
        self.emit_sms_event(
            "deleted",
            row,
            max(now, self.date_updated[row]),
            user_id=previous["user_id"],
            data=None,
            previous=previous,
            changed=[],
            ctx=ctx,
        )

    def take_armed_empty_query(self) -> bool:
        """Use up one armed "deleted mid-query" 404, if any is waiting."""
        if not self.armed_empty_queries:
            return False
        self.armed_empty_queries -= 1
        return True

    # ---- validation ---------------------------------------------------------------------

    def _validate(
        self, payload: dict[str, Any], allowed: frozenset[str], creating: bool
    ) -> dict[str, Any]:
        """Type-check a create/update body; returns the accepted fields."""
        if not isinstance(payload, dict):
            raise ValidationError({}, ["Invalid JSON body: expected an object."])
        # Close ignores fields it does not know.
        clean = {name: value for name, value in payload.items() if name in allowed}
        errors: dict[str, str] = {}
        if creating and "status" not in clean:
            errors["status"] = "This field is required."
        _check_choices_and_strings(clean, errors)
        _parse_dates(clean, errors)
        if "send_in" in clean and clean["send_in"] is not None:
            value = clean["send_in"]
            limit = self.config.send_in_max_seconds
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value < limit
            ):
                errors["send_in"] = f"Ensure this value is a number of seconds less than {limit}."
        if clean.get("organization_id") not in (None, self.organization_id):
            errors["organization_id"] = "Object does not exist."
        _check_attachments(clean, errors)
        if errors:
            raise ValidationError(errors)
        return clean

    @staticmethod
    def _check_sendable(status: int, row_values: dict[str, Any], errors: dict[str, str]) -> None:
        """What an outbox or scheduled SMS needs: a local number, a text, a date."""
        if status in (OUTBOX, SCHEDULED):
            if not row_values.get("local_phone"):
                errors["local_phone"] = "This field is required to send an SMS."
            if not row_values.get("text") and not row_values.get("template_id"):
                errors["text"] = "Provide text or template_id to send an SMS."
        if status == SCHEDULED and row_values.get("date_scheduled") in (None, NO_TS):
            errors["date_scheduled"] = "This field is required for scheduled SMS."

    def _store_attachments(self, row: int, sms_id: str, items: list[dict[str, Any]] | None) -> None:
        """Keep the attachments a request gave (none: the SMS has no attachments)."""
        if not items:
            self.api_attachments[row] = []
            return
        stored = []
        for k, item in enumerate(items):
            media_id = random_like_id("media_", f"api:{sms_id}", k, length=22)
            url = f"{self.media_base}/{sms_id}/media/{media_id}/"
            stored.append(
                {
                    "media_id": media_id,
                    "content_type": item["content_type"],
                    "filename": item["filename"],
                    "size": item.get("size") if isinstance(item.get("size"), int) else None,
                    "url": url,
                    "thumbnail_url": (
                        f"{url}thumbnail/" if item["content_type"].startswith("image/") else None
                    ),
                }
            )
        self.api_attachments[row] = stored


def _check_choices_and_strings(clean: dict[str, Any], errors: dict[str, str]) -> None:
    """Enum fields hold one of their values, string fields strings, phones E.164."""
    if "status" in clean and clean["status"] not in STATUS_CODE:
        errors["status"] = f"Value must be one of: {', '.join(STATUSES)}."
    if "direction" in clean and clean["direction"] not in DIRECTION_CODE:
        errors["direction"] = f"Value must be one of: {', '.join(DIRECTIONS)}."
    if "source" in clean and clean["source"] not in SOURCE_CODE:
        errors["source"] = f"Value must be one of: {', '.join(SOURCES)}."
    for name in _STRING_FIELDS:
        if name in clean and clean[name] is not None and not isinstance(clean[name], str):
            errors[name] = "Not a valid string."
    for name in ("local_phone", "remote_phone"):
        value = clean.get(name)
        if isinstance(value, str) and not E164.match(value):
            errors[name] = "Invalid phone number: use E.164, e.g. +16503334444."


def _parse_dates(clean: dict[str, Any], errors: dict[str, str]) -> None:
    """Date fields become epoch milliseconds in `clean`."""
    for name in _DATE_FIELDS:
        value = clean.get(name)
        if value is None:
            continue
        try:
            clean[name] = dt_to_ms(parse_datetime(str(value)))
        except ValueError:
            errors[name] = "Not a valid datetime."


def _check_attachments(clean: dict[str, Any], errors: dict[str, str]) -> None:
    """Attachments are a list of content_type/filename/url objects of the spec's types."""
    if "attachments" not in clean or clean["attachments"] is None:
        return
    items = clean["attachments"]
    if not isinstance(items, list):
        errors["attachments"] = "Expected a list of attachments."
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("content_type", "filename", "url")
        ):
            errors["attachments"] = f"Item {i}: content_type, filename and url are required."
        elif item["content_type"] not in ATTACHMENT_CONTENT_TYPES:
            errors["attachments"] = f"Item {i}: unsupported content_type."
