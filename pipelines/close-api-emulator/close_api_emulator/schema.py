"""Close's SMS vocabulary: enums, field names and the MMS content types of the spec."""

from __future__ import annotations

import re

STATUSES = ("inbox", "draft", "scheduled", "outbox", "sent", "error")
DIRECTIONS = ("inbound", "outbound")
SOURCES = ("Close.io", "External")
STATUS_CODE = {name: i for i, name in enumerate(STATUSES)}
DIRECTION_CODE = {name: i for i, name in enumerate(DIRECTIONS)}
SOURCE_CODE = {name: i for i, name in enumerate(SOURCES)}
# The codes the store's status, direction and source columns hold.
INBOX, DRAFT, SCHEDULED, OUTBOX, SENT, ERROR = range(len(STATUSES))
INBOUND, OUTBOUND = range(len(DIRECTIONS))
CLOSE_IO, EXTERNAL = range(len(SOURCES))

# A phone number as Close accepts it: E.164.
E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# components.schemas.CreateSmsActivityAttachmentsItemsContentType of openapi.yml.
ATTACHMENT_CONTENT_TYPES = (
    "application/pdf",
    "application/vcard",
    "audio/3gpp",
    "audio/3gpp2",
    "audio/L24",
    "audio/ac3",
    "audio/amr",
    "audio/amr-nb",
    "audio/basic",
    "audio/mp4",
    "audio/mpeg",
    "audio/ogg",
    "audio/vnd.rn-realaudio",
    "audio/vnd.wave",
    "audio/webm",
    "image/bmp",
    "image/gif",
    "image/jpeg",
    "image/jpg",
    "image/png",
    "image/tiff",
    "text/calendar",
    "text/csv",
    "text/directory",
    "text/richtext",
    "text/rtf",
    "text/vcard",
    "text/x-vcard",
    "video/3gpp",
    "video/3gpp-tt",
    "video/3gpp2",
    "video/H261",
    "video/H263",
    "video/H263-1998",
    "video/H263-2000",
    "video/H264",
    "video/mp4",
    "video/mpeg",
    "video/quicktime",
    "video/webm",
)

# Fields of POST /activity/sms/ (CreateSMSActivity plus the prose-only date_scheduled/send_in).
CREATE_FIELDS = frozenset(
    {
        "status",
        "activity_at",
        "attachments",
        "contact_id",
        "created_by_id",
        "date_created",
        "direction",
        "lead_id",
        "local_phone",
        "organization_id",
        "remote_phone",
        "source",
        "template_id",
        "text",
        "user_id",
        "date_scheduled",
        "send_in",
    }
)
# Fields of PUT /activity/sms/{id}/ (UpdateSMSActivity plus date_scheduled/send_in).
UPDATE_FIELDS = frozenset(
    {
        "activity_at",
        "attachments",
        "contact_id",
        "lead_id",
        "local_phone",
        "remote_phone",
        "status",
        "template_id",
        "text",
        "user_id",
        "date_scheduled",
        "send_in",
    }
)

# Close's `cost` is in cents: its own export_sms.py (closeio-api-scripts) prints cost / 100 as
# dollars. A US SMS segment of 160 characters costs about 0.79 cents, an MMS about 2 cents.
SEGMENT_CHARS = 160
SEGMENT_COST_CENTS = 0.79
MMS_COST_CENTS = "2.00"


def sms_cost(text: str | None) -> str:
    """The cost of sending `text` as an SMS, in cents, formatted the way Close sends it."""
    segments = max(1, -(-len(text or "") // SEGMENT_CHARS))
    return f"{SEGMENT_COST_CENTS * segments:.2f}"
