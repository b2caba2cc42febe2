"""Leads and contacts changed, deleted and merged, with what that does to their SMS.

The objects themselves live in the Crm (crm.py); this layer moves or deletes the SMS rows they
own and logs the events of every object touched.
"""

from __future__ import annotations

from typing import Any

from .crm import Contact, Lead
from .errors import NotFound, ValidationError
from .ids import random_like_id
from .lifecycle import RequestContext
from .sms_writes import SmsWrites
from .timefmt import format_ms


class LeadWrites(SmsWrites):
    """PUT and DELETE of /lead/{id}/ and /contact/{id}/, POST /lead/merge/, user renames."""

    def _live_rows_of_lead(self, lead_id: str) -> list[int]:
        """Live SMS rows of a lead, newest first."""
        idx = self.leads.index.get(lead_id)
        rows = self.rows_by_lead.get(idx, ()) if idx is not None else ()
        return sorted(
            (r for r in rows if not self.deleted[r]),
            key=self.sort_key("date_created"),
        )

    def create_lead(
        self, name: str, contacts: list[dict[str, Any]], ctx: RequestContext | None
    ) -> dict[str, Any]:
        """POST /lead/ with its contacts (name, title, phone, email): the lead, on the first
        lead status, then a `created` event for each contact and one for the lead."""
        self.tick()
        crm = self.crm
        now = self.clock.now_ms()
        user_id = ctx.user_id if ctx else None
        # Every creation logs new events, so the log's length tells creations apart.
        seed = f"created:{self.organization_id}:{len(self.events)}"
        status_id = next(iter(crm.statuses))
        lead = Lead(random_like_id("lead_", seed, 0), name, status_id, user_id, now, now)
        crm.leads[lead.id] = lead
        for k, given in enumerate(contacts, start=1):
            contact = Contact(
                id=random_like_id("cont_", seed, k),
                lead_id=lead.id,
                name=str(given.get("name") or ""),
                title=given.get("title"),
                phone=given.get("phone"),
                email=given.get("email"),
                created_by=user_id,
                date_created=now,
                date_updated=now,
            )
            crm.contacts[contact.id] = contact
            lead.contact_ids.append(contact.id)
            self._emit_created("contact", contact.id, lead.id, crm.render("contact", contact), ctx)
        rendered = crm.render("lead", lead)
        self._emit_created("lead", lead.id, lead.id, rendered, ctx)
        return rendered

    def _emit_created(
        self,
        object_type: str,
        object_id: str,
        lead_id: str,
        data: dict[str, Any],
        ctx: RequestContext | None,
    ) -> None:
        self.emit_object_event(
            object_type,
            object_id,
            lead_id,
            "created",
            data=data,
            previous=None,
            changed=[],
            ctx=ctx,
        )

    def delete_lead(self, lead_id: str, ctx: RequestContext | None) -> list[str]:
        """Delete a lead with its SMS and contacts, each with a `deleted` event, then the lead's
        own `deleted` event (Close: deleting a lead deletes its child objects). Returns the ids
        of the deleted SMS."""
        self.tick()
        lead = self.crm.leads.get(lead_id)
        if lead is None and lead_id not in self.leads.index:
            raise NotFound("Lead")
        deleted = []
        for row in self._live_rows_of_lead(lead_id):
            deleted.append(self.sms_id(row))
            self.delete_row(row, ctx)
        previous = {"id": lead_id, "organization_id": self.organization_id}
        if lead is not None:
            previous = self.crm.render("lead", lead)
            user_id = ctx.user_id if ctx else None
            for contact_id in list(lead.contact_ids):
                self._delete_contact(contact_id, ctx, user_id)
            del self.crm.leads[lead_id]
        self.emit_object_event(
            "lead", lead_id, lead_id, "deleted", data=None, previous=previous, changed=[], ctx=ctx
        )
        return deleted

    def delete_contact(self, contact_id: str, ctx: RequestContext | None) -> None:
        """Delete a contact (its SMS keep their contact_id, as activities outlive contacts)."""
        self.tick()
        self._delete_contact(contact_id, ctx, ctx.user_id if ctx else None)

    def _delete_contact(
        self, contact_id: str, ctx: RequestContext | None, user_id: str | None
    ) -> None:
        previous = self.crm.delete_contact(contact_id, self.clock.now_ms(), user_id)
        self.emit_object_event(
            "contact",
            contact_id,
            previous["lead_id"],
            "deleted",
            data=None,
            previous=previous,
            changed=[],
            ctx=ctx,
        )

    def update_lead(
        self, lead_id: str, payload: dict[str, Any], ctx: RequestContext | None
    ) -> dict[str, Any]:
        """Rename a lead, change its status, description or custom fields: an `updated` event."""
        before, after = self.crm.update_lead(
            lead_id, payload, self.clock.now_ms(), ctx.user_id if ctx else None
        )
        self.emit_object_change("lead", lead_id, lead_id, before, after, ctx)
        return after

    def update_contact(
        self, contact_id: str, payload: dict[str, Any], ctx: RequestContext | None
    ) -> dict[str, Any]:
        """Rename a contact, change its title or move it to another lead: `updated` events
        for the contact and, on a move, for both leads."""
        before, after = self.crm.update_contact(
            contact_id, payload, self.clock.now_ms(), ctx.user_id if ctx else None
        )
        self.emit_object_change("contact", contact_id, after["lead_id"], before, after, ctx)
        if before["lead_id"] != after["lead_id"]:
            for lead_id in (before["lead_id"], after["lead_id"]):
                lead = self.crm.leads.get(lead_id)
                if lead is not None:
                    rendered = self.crm.render("lead", lead)
                    self.emit_object_event(
                        "lead",
                        lead_id,
                        lead_id,
                        "updated",
                        data=rendered,
                        previous=None,
                        changed=["contact_ids", "date_updated"],
                        ctx=ctx,
                    )
        return after

    def rename_user(self, user_id: str, first_name: str, last_name: str) -> None:
        """A user's new name, which their SMS show in user_name from now on."""
        user = self.crm.get("user", user_id)
        user.first_name, user.last_name = first_name, last_name
        user.date_updated = max(user.date_updated, self.clock.now_ms())
        idx = self.user_by_id.get(user_id)
        if idx is not None:
            self.users.values[idx] = (user_id, user.name)

    # ---- merges -------------------------------------------------------------------------

    def merge_leads(
        self, source_id: str, destination_id: str, ctx: RequestContext | None
    ) -> dict[str, Any]:
        """POST /lead/merge/: the source's contacts and SMS move to the destination (SMS keep
        their ids; lead_id and date_updated change), a LeadMerge activity is created on the
        destination and the source is deleted. Events per `config.merge_events`."""
        self.tick()
        crm = self.crm
        errors = {
            name: "Object does not exist."
            for name, lead_id in (("source", source_id), ("destination", destination_id))
            if not isinstance(lead_id, str) or lead_id not in crm.leads
        }
        if not errors and source_id == destination_id:
            errors["destination"] = "Source and destination must be different leads."
        if errors:
            raise ValidationError(errors)
        source: Lead = crm.leads[source_id]
        destination: Lead = crm.leads[destination_id]
        every_object = self.config.merge_events == "all"
        meta = {"merge_source_lead_id": source_id, "merge_destination_lead_id": destination_id}
        now = self.clock.now_ms()
        user_id = ctx.user_id if ctx else None
        destination_before = crm.render("lead", destination)
        source_before = crm.render("lead", source)
        self._move_sms(source_id, destination_id, now, every_object, ctx, meta)
        self._move_contacts(source, destination_id, now, user_id, every_object, ctx, meta)
        merge = crm.add_merge(source, destination, now, user_id)
        if every_object:
            self.emit_object_event(
                "activity.lead_merge",
                merge.id,
                destination_id,
                "created",
                data=crm.render("lead_merge", merge),
                previous=None,
                changed=[],
                ctx=ctx,
                meta=meta,
            )
        crm.touch_lead(destination, now, user_id)
        after = crm.render("lead", destination)
        self.emit_object_change(
            "lead", destination_id, destination_id, destination_before, after, ctx, meta
        )
        del crm.leads[source_id]
        self.emit_object_event(
            "lead",
            source_id,
            source_id,
            "deleted",
            data=None,
            previous=source_before,
            changed=[],
            ctx=ctx,
            meta=meta,
        )
        return {"status": "ok"}

    def _move_sms(
        self,
        source_id: str,
        destination_id: str,
        now: int,
        every_object: bool,
        ctx: RequestContext | None,
        meta: dict[str, Any],
    ) -> None:
        """The source lead's live SMS now belong to the destination (`updated` events if
        every object's are logged)."""
        target = self.leads.add(destination_id)
        for row in self._live_rows_of_lead(source_id):
            before = {"lead_id": source_id, "date_updated": format_ms(self.date_updated[row])}
            self.unindex_owner(row)
            self.lead[row] = target
            self.index_owner(row)
            self.date_updated[row] = max(now, self.date_updated[row])
            if every_object:
                after = self.render(row)
                self.emit_sms_event(
                    "updated",
                    row,
                    self.date_updated[row],
                    user_id=after["user_id"],
                    data=after,
                    previous=before,
                    changed=sorted(before),
                    ctx=ctx,
                    meta=meta,
                )

    def _move_contacts(
        self,
        source: Lead,
        destination_id: str,
        now: int,
        user_id: str | None,
        every_object: bool,
        ctx: RequestContext | None,
        meta: dict[str, Any],
    ) -> None:
        """The source lead's contacts now belong to the destination."""
        crm = self.crm
        for contact_id in list(source.contact_ids):
            contact = crm.contacts[contact_id]
            contact_before = crm.render("contact", contact)
            crm.move_contact(contact, destination_id, now, user_id)
            if every_object:
                contact_after = crm.render("contact", contact)
                self.emit_object_change(
                    "contact", contact_id, destination_id, contact_before, contact_after, ctx, meta
                )
