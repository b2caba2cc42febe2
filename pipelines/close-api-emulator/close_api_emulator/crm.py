"""The objects SMS point to: users, lead statuses, custom fields, templates, phone numbers,
leads, contacts and LeadMerge activities of one organization, rendered as Close sends them.

Only the objects themselves live here; what touches SMS rows (deleting or merging a lead) is
done by the SMS store, which also logs the events. Callers hold the emulator lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .ids import random_like_id
from .timefmt import format_ms

APP_URL = "https://app.close.com"
# Fields of PUT /lead/{id}/ and PUT /contact/{id}/ the emulator applies (custom.* also for leads).
LEAD_UPDATE_FIELDS = frozenset({"name", "description", "status_id"})
CONTACT_UPDATE_FIELDS = frozenset({"name", "title", "lead_id"})
CUSTOM_PREFIX = "custom."


class UnknownObject(KeyError):
    """No live object of that kind and id (the API answers 404)."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


class InvalidUpdate(ValueError):
    """An update names a value the object cannot take (the API answers 400)."""

    def __init__(self, field_errors: dict[str, str]) -> None:
        super().__init__(field_errors)
        self.field_errors = field_errors


@dataclass(slots=True)
class User:
    """A user; an inactive one is no longer a member (`organizations` is empty)."""

    id: str
    first_name: str
    last_name: str
    email: str
    date_created: int
    date_updated: int
    active: bool = True

    @property
    def name(self) -> str:
        """First and last name, as SMS show it in user_name."""
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(slots=True)
class LeadStatus:
    """A lead status."""

    id: str
    label: str


@dataclass(slots=True)
class CustomField:
    """A lead custom field definition (type text, number, date or choices)."""

    id: str
    name: str
    type: str
    date_created: int
    choices: list[str] | None = None


@dataclass(slots=True)
class SmsTemplate:
    """An SMS template."""

    id: str
    name: str
    text: str
    created_by: str | None
    date_created: int
    date_updated: int


@dataclass(slots=True)
class PhoneNumber:
    """A number of the organization: a user's own, or a group's shared by its participants."""

    id: str
    number: str
    label: str
    user_id: str | None
    participants: list[str]
    date_created: int
    date_updated: int

    @property
    def is_group_number(self) -> bool:
        """Group numbers belong to no user."""
        return self.user_id is None


@dataclass(slots=True)
class Lead:
    """A lead; `custom` maps custom field ids to values (unset fields are absent)."""

    id: str
    name: str
    status_id: str
    created_by: str | None
    date_created: int
    date_updated: int
    updated_by: str | None = None
    description: str = ""
    contact_ids: list[str] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Contact:
    """A contact of a lead with one phone and at most one email."""

    id: str
    lead_id: str
    name: str
    title: str | None
    phone: str | None
    email: str | None
    created_by: str | None
    date_created: int
    date_updated: int
    updated_by: str | None = None


@dataclass(slots=True)
class LeadMerge:
    """The activity a merge leaves on the destination lead."""

    id: str
    lead_id: str
    source_lead_id: str
    source_lead_name: str
    destination_lead_name: str
    user_id: str | None
    date_created: int


def format_phone(e164: str) -> tuple[str, str | None]:
    """A display form and country for the few prefixes the generator uses."""
    if e164.startswith("+1") and len(e164) == 12:
        return f"+1 {e164[2:5]}-{e164[5:8]}-{e164[8:]}", "US"
    if e164.startswith("+44") and len(e164) == 13:
        return f"+44 {e164[3:7]} {e164[7:]}", "GB"
    if e164.startswith("+49"):
        return f"+49 {e164[3:6]} {e164[6:]}", "DE"
    return e164, None


class Crm:
    """The context objects of one organization, by id, in creation order."""

    def __init__(self, organization_id: str) -> None:
        self.organization_id = organization_id
        self.users: dict[str, User] = {}
        self.statuses: dict[str, LeadStatus] = {}
        self.fields: dict[str, CustomField] = {}
        self.templates: dict[str, SmsTemplate] = {}
        self.numbers: dict[str, PhoneNumber] = {}
        self.leads: dict[str, Lead] = {}
        self.contacts: dict[str, Contact] = {}
        self.merges: dict[str, LeadMerge] = {}
        # Ids GET answers 403 for and lists leave out: objects the keys may not read.
        self.forbidden: set[str] = set()

    # ---- lookups ------------------------------------------------------------------------

    def _table(self, kind: str) -> dict[str, Any]:
        return {
            "user": self.users,
            "lead_status": self.statuses,
            "custom_field": self.fields,
            "sms_template": self.templates,
            "phone_number": self.numbers,
            "lead": self.leads,
            "contact": self.contacts,
            "lead_merge": self.merges,
        }[kind]

    def get(self, kind: str, object_id: str) -> Any:
        """The live object of `kind`; UnknownObject when there is none."""
        found = self._table(kind).get(object_id)
        if found is None:
            raise UnknownObject(_MODEL[kind])
        return found

    def select(self, kind: str, filters: dict[str, list[str]]) -> list[Any]:
        """Objects of `kind` passing `filters` (name -> accepted values), in creation order."""
        table = self._table(kind)
        ids = filters.get("id__in")
        objects: Iterator[Any] | list[Any] = (
            [table[i] for i in dict.fromkeys(ids) if i in table]
            if ids is not None
            else iter(table.values())
        )
        tests = [
            (_FILTER_ATTRIBUTE[name], set(values))
            for name, values in filters.items()
            if name != "id__in"
        ]
        return [
            o
            for o in objects
            if o.id not in self.forbidden and all(_attribute(o, a) in want for a, want in tests)
        ]

    def user_name(self, user_id: str | None) -> str | None:
        """The name of a user, None for none or an unknown one."""
        user = self.users.get(user_id) if user_id else None
        return user.name if user else None

    # ---- rendering ----------------------------------------------------------------------

    def render(self, kind: str, obj: Any) -> dict[str, Any]:
        """`obj` as Close's GET of its kind returns it."""
        return self._renderers[kind](self, obj)

    def _render_user(self, user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "email": user.email,
            "image": f"https://secure.gravatar.com/avatar/{user.id[5:37].lower()}",
            "last_used_timezone": "America/Los_Angeles",
            # Recorded answers list former members with no organizations.
            "organizations": [self.organization_id] if user.active else [],
            "date_created": format_ms(user.date_created),
            "date_updated": format_ms(user.date_updated),
        }

    def _render_status(self, status: LeadStatus) -> dict[str, Any]:
        return {"id": status.id, "label": status.label, "organization_id": self.organization_id}

    def _render_field(self, cf: CustomField) -> dict[str, Any]:
        return {
            "id": cf.id,
            "name": cf.name,
            "type": cf.type,
            "choices": list(cf.choices) if cf.choices is not None else None,
            "accepts_multiple_values": False,
            "description": None,
            "organization_id": self.organization_id,
            "created_by": None,
            "updated_by": None,
            "date_created": format_ms(cf.date_created),
            "date_updated": format_ms(cf.date_created),
        }

    def _render_template(self, template: SmsTemplate) -> dict[str, Any]:
        return {
            "id": template.id,
            "name": template.name,
            "text": template.text,
            "attachments": [],
            "is_shared": True,
            "organization_id": self.organization_id,
            "created_by": template.created_by,
            "updated_by": template.created_by,
            "date_created": format_ms(template.date_created),
            "date_updated": format_ms(template.date_updated),
        }

    def _render_number(self, number: PhoneNumber) -> dict[str, Any]:
        formatted, country = format_phone(number.number)
        return {
            "id": number.id,
            "number": number.number,
            "number_formatted": formatted,
            "country": country,
            "label": number.label,
            "user_id": number.user_id,
            "is_group_number": number.is_group_number,
            "participants": list(number.participants),
            "type": "internal",
            "carrier": "twilio",
            "carrier_type": "local",
            "address_id": None,
            "bundle_id": None,
            "forward_to": None,
            "forward_to_enabled": False,
            "forward_to_formatted": None,
            "is_premium": False,
            "is_verified": True,
            "last_billed_price": 1.0,
            "mms_enabled": True,
            "sms_enabled": True,
            "next_billing_on": None,
            "supports_mms_to_countries": ["US", "CA"],
            "supports_sms_to_countries": ["US", "CA", "GB", "DE"],
            "organization_id": self.organization_id,
            "date_created": format_ms(number.date_created),
            "date_updated": format_ms(number.date_updated),
        }

    def _render_contact(self, contact: Contact) -> dict[str, Any]:
        phones = []
        if contact.phone:
            formatted, country = format_phone(contact.phone)
            phones.append(
                {
                    "phone": contact.phone,
                    "phone_formatted": formatted,
                    "country": country,
                    "type": "mobile",
                }
            )
        emails = (
            [{"email": contact.email, "type": "office", "is_unsubscribed": False}]
            if contact.email
            else []
        )
        return {
            "id": contact.id,
            "lead_id": contact.lead_id,
            "name": contact.name,
            "display_name": contact.name,
            "title": contact.title,
            "phones": phones,
            "emails": emails,
            "urls": [],
            "integration_links": [],
            "organization_id": self.organization_id,
            "created_by": contact.created_by,
            "updated_by": contact.updated_by or contact.created_by,
            "date_created": format_ms(contact.date_created),
            "date_updated": format_ms(contact.date_updated),
        }

    def _render_lead(self, lead: Lead) -> dict[str, Any]:
        contacts = [self._render_contact(self.contacts[c]) for c in lead.contact_ids]
        status = self.statuses.get(lead.status_id)
        first_phone = next((c["phones"][0] for c in contacts if c["phones"]), None)
        first_email = next((c["emails"][0] for c in contacts if c["emails"]), None)
        updated_by = lead.updated_by or lead.created_by
        rendered = {
            "id": lead.id,
            "name": lead.name,
            "display_name": lead.name,
            "description": lead.description,
            "status_id": lead.status_id,
            "status_label": status.label if status else "",
            "contact_ids": list(lead.contact_ids),
            "contacts": contacts,
            "contacts_summary": ", ".join(c["name"] for c in contacts),
            "addresses": [],
            "opportunities": [],
            "tasks": [],
            "integration_links": [],
            "primary_email": first_email,
            "primary_phone": first_phone,
            "source": None,
            "url": None,
            "html_url": f"{APP_URL}/lead/{lead.id}/",
            "organization_id": self.organization_id,
            "created_by": lead.created_by,
            "created_by_name": self.user_name(lead.created_by),
            "updated_by": updated_by,
            "updated_by_name": self.user_name(updated_by),
            "date_created": format_ms(lead.date_created),
            "date_updated": format_ms(lead.date_updated),
        }
        rendered.update({f"{CUSTOM_PREFIX}{fid}": value for fid, value in lead.custom.items()})
        return rendered

    def _render_merge(self, merge: LeadMerge) -> dict[str, Any]:
        at = format_ms(merge.date_created)
        user_name = self.user_name(merge.user_id)
        return {
            "_type": "LeadMerge",
            "id": merge.id,
            "lead_id": merge.lead_id,
            "contact_id": None,
            "source_lead_id": merge.source_lead_id,
            "source_lead_name": merge.source_lead_name,
            "destination_lead_id": merge.lead_id,
            "destination_lead_name": merge.destination_lead_name,
            "user_id": merge.user_id,
            "user_name": user_name,
            "created_by": merge.user_id,
            "created_by_name": user_name,
            "updated_by": merge.user_id,
            "updated_by_name": user_name,
            "users": [],
            "organization_id": self.organization_id,
            "activity_at": at,
            "date_created": at,
            "date_updated": at,
        }

    _renderers: dict[str, Callable[[Crm, Any], dict[str, Any]]] = {
        "user": _render_user,
        "lead_status": _render_status,
        "custom_field": _render_field,
        "sms_template": _render_template,
        "phone_number": _render_number,
        "lead": _render_lead,
        "contact": _render_contact,
        "lead_merge": _render_merge,
    }

    # ---- changes ------------------------------------------------------------------------

    def update_lead(
        self, lead_id: str, payload: dict[str, Any], at: int, user_id: str | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply name/description/status_id/custom.* changes; (before, after) renders."""
        lead = self.get("lead", lead_id)
        errors: dict[str, str] = {}
        for name, value in payload.items():
            if name.startswith(CUSTOM_PREFIX):
                if name[len(CUSTOM_PREFIX) :] not in self.fields:
                    errors[name] = "Unknown custom field."
            elif name not in LEAD_UPDATE_FIELDS:
                continue
            elif name == "status_id" and value not in self.statuses:
                errors[name] = "Object does not exist."
            elif not isinstance(value, str):
                errors[name] = "Not a valid string."
        if errors:
            raise InvalidUpdate(errors)
        before = self.render("lead", lead)
        for name, value in payload.items():
            if name.startswith(CUSTOM_PREFIX):
                fid = name[len(CUSTOM_PREFIX) :]
                if value is None:
                    lead.custom.pop(fid, None)
                else:
                    lead.custom[fid] = value
            elif name in LEAD_UPDATE_FIELDS:
                setattr(lead, name, value)
        self.touch_lead(lead, at, user_id)
        return before, self.render("lead", lead)

    @staticmethod
    def touch_lead(lead: Lead, at: int, user_id: str | None) -> None:
        """A change to `lead` saved at `at` by `user_id`."""
        lead.date_updated = max(lead.date_updated, at)
        lead.updated_by = user_id or lead.updated_by

    def update_contact(
        self, contact_id: str, payload: dict[str, Any], at: int, user_id: str | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply name/title changes, or move the contact to lead `lead_id`; (before, after)."""
        contact = self.get("contact", contact_id)
        errors: dict[str, str] = {}
        for name, value in payload.items():
            if name not in CONTACT_UPDATE_FIELDS:
                continue
            if value is not None and not isinstance(value, str):
                errors[name] = "Not a valid string."
            elif name == "lead_id" and value not in self.leads:
                errors[name] = "Object does not exist."
        if errors:
            raise InvalidUpdate(errors)
        before = self.render("contact", contact)
        if payload.get("lead_id") not in (None, contact.lead_id):
            self.move_contact(contact, payload["lead_id"], at, user_id)
        for name in ("name", "title"):
            if name in payload:
                setattr(contact, name, payload[name])
        contact.date_updated = max(contact.date_updated, at)
        contact.updated_by = user_id or contact.updated_by
        return before, self.render("contact", contact)

    def move_contact(self, contact: Contact, lead_id: str, at: int, user_id: str | None) -> None:
        """Move `contact` to lead `lead_id` (both leads change)."""
        source = self.leads.get(contact.lead_id)
        if source is not None and contact.id in source.contact_ids:
            source.contact_ids.remove(contact.id)
            self.touch_lead(source, at, user_id)
        destination = self.leads[lead_id]
        destination.contact_ids.append(contact.id)
        self.touch_lead(destination, at, user_id)
        contact.lead_id = lead_id
        contact.date_updated = max(contact.date_updated, at)
        contact.updated_by = user_id or contact.updated_by

    def delete_contact(self, contact_id: str, at: int, user_id: str | None) -> dict[str, Any]:
        """Remove a contact from its lead; returns its last render."""
        contact = self.get("contact", contact_id)
        previous = self.render("contact", contact)
        lead = self.leads.get(contact.lead_id)
        if lead is not None and contact_id in lead.contact_ids:
            lead.contact_ids.remove(contact_id)
            self.touch_lead(lead, at, user_id)
        del self.contacts[contact_id]
        return previous

    def add_merge(self, source: Lead, destination: Lead, at: int, user_id: str | None) -> LeadMerge:
        """Record the LeadMerge activity of merging `source` into `destination`."""
        merge = LeadMerge(
            id=random_like_id("acti_", f"merge:{self.organization_id}", len(self.merges)),
            lead_id=destination.id,
            source_lead_id=source.id,
            source_lead_name=source.name,
            destination_lead_name=destination.name,
            user_id=user_id,
            date_created=at,
        )
        self.merges[merge.id] = merge
        return merge


_MODEL = {
    "user": "User",
    "lead_status": "Status",
    "custom_field": "CustomField",
    "sms_template": "SMSTemplate",
    "phone_number": "PhoneNumber",
    "lead": "Lead",
    "contact": "Contact",
    "lead_merge": "Activity",
}
# List filters by query parameter -> the attribute they compare (id__in is handled apart).
_FILTER_ATTRIBUTE = {
    "number": "number",
    "user_id": "user_id",
    "is_group_number": "is_group_number",
    "lead_id": "lead_id",
    "status_id": "status_id",
}


def _attribute(obj: Any, name: str) -> str | None:
    """An attribute as a query string compares it (booleans as true/false)."""
    value = getattr(obj, name)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
