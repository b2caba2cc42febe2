"""An SMS row rendered as Close's JSON: what GET /activity/sms/{id}/ and every list return."""

from __future__ import annotations

import hashlib
from typing import Any

from .clock import Clock
from .columns import SmsColumns
from .config import EmulatorConfig
from .crm import format_phone
from .extras import extra_fields_renderer
from .hooks import apply_raw_overrides
from .ids import random_like_id
from .schema import ATTACHMENT_CONTENT_TYPES, DIRECTIONS, SOURCES, STATUSES
from .timefmt import format_ms, format_opt


class SmsRendering(SmsColumns):
    """render(row): the SMS as Close sends it, with its attachments and switched-on fields."""

    def __init__(self, organization_id: str, config: EmulatorConfig, clock: Clock) -> None:
        super().__init__(organization_id, config, clock)
        self.media_base = "https://app.close.com/go/sms"
        # Test hook (see hooks.py): raw fields of one SMS as rendered, by row.
        self.raw_overrides: dict[int, dict[str, Any]] = {}
        # Fields added to every rendered SMS (recorded and undeclared fields), or None.
        self._extra_fields = extra_fields_renderer(config)

    def attachments(self, row: int) -> list[dict[str, Any]]:
        """Attachments of a row: stored ones from the API, or derived from the row's hash."""
        given = self.api_attachments.get(row)
        if given is not None:
            return [dict(item) for item in given]
        count = self.attachment_count[row]
        if not count:
            return []
        sms_id = self.sms_id(row)
        digest = hashlib.blake2b(f"{self.seed}:{row}".encode(), digest_size=32).digest()
        result = []
        for k in range(count):
            ctype = ATTACHMENT_CONTENT_TYPES[digest[k] % len(ATTACHMENT_CONTENT_TYPES)]
            media_id = random_like_id("media_", f"{self.seed}:{row}", k, length=22)
            ext = ctype.split("/", 1)[1].split("-")[0].replace("x-", "").lower()
            url = f"{self.media_base}/{sms_id}/media/{media_id}/"
            result.append(
                {
                    "media_id": media_id,
                    "content_type": ctype,
                    "filename": f"media_{k + 1}.{ext}",
                    "size": 1024 + int.from_bytes(digest[8 + 3 * k : 11 + 3 * k], "big"),
                    "url": url,
                    # Close only has thumbnails when it could make one: images.
                    "thumbnail_url": f"{url}thumbnail/" if ctype.startswith("image/") else None,
                }
            )
        return result

    def render(self, row: int) -> dict[str, Any]:
        """The SMS as GET /activity/sms/{id}/ returns it."""
        user = self.users.get(self.user[row])
        created_by = self.users.get(self.created_by[row])
        updated_by = self.users.get(self.updated_by[row])
        local = self.phones.get(self.local_phone[row])
        remote = self.phones.get(self.remote_phone[row])
        local_fmt, local_iso = format_phone(local) if local else (None, None)
        remote_fmt, remote_iso = format_phone(remote) if remote else (None, None)
        sequence = self.sequences.get(self.sequence[row])
        rendered = {
            "_type": "SMS",
            "activity_at": format_opt(self.activity_at[row]),
            "agent_action_reason": None,
            "agent_config_id": None,
            "attachments": self.attachments(row),
            "contact_id": self.contacts.get(self.contact[row]),
            "cost": self.costs.values[self.cost[row]],
            "created_by": created_by[0] if created_by else None,
            "created_by_name": created_by[1] if created_by else None,
            "date_created": format_ms(self.date_created[row]),
            "date_scheduled": format_opt(self.date_scheduled[row]),
            "date_sent": format_opt(self.date_sent[row]),
            "date_updated": format_ms(self.date_updated[row]),
            "direction": DIRECTIONS[self.direction[row]],
            "error_message": self.errors.values[self.error[row]],
            "id": self.sms_id(row),
            "lead_id": self.leads.get(self.lead[row]),
            "local_country_iso": local_iso,
            "local_phone": local,
            "local_phone_formatted": local_fmt,
            "organization_id": self.organization_id,
            "remote_country_iso": remote_iso,
            "remote_phone": remote,
            "remote_phone_formatted": remote_fmt,
            "sequence_id": sequence[0] if sequence else None,
            "sequence_name": sequence[1] if sequence else None,
            "sequence_subscription_id": (
                random_like_id("sub_", self.seed, row, length=22) if sequence else None
            ),
            "source": SOURCES[self.source[row]],
            "status": STATUSES[self.status[row]],
            "template_id": self.templates.values[self.template[row]],
            "text": self.texts.values[self.text[row]],
            "updated_by": updated_by[0] if updated_by else None,
            "updated_by_name": updated_by[1] if updated_by else None,
            "user_id": user[0] if user else None,
            "user_name": user[1] if user else None,
            "users": [],
        }
        if self._extra_fields is not None:
            rendered.update(self._extra_fields(self.seed, row, rendered))
        return apply_raw_overrides(rendered, self.raw_overrides.get(row))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every live SMS, rendered, by id."""
        return {self.sms_id(row): self.render(row) for row in self.listing_order}
