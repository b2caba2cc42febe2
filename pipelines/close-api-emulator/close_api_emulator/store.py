"""SMS data of one organization: the store the emulator's requests read and change.

`SmsStore` is built of layers, one job each, every layer using only the ones below it:

    columns.py      SmsColumns     compact columns, pools and the listing indexes
    listing.py      SmsListing     the rows of one list page
    rendering.py    SmsRendering   a row as Close's JSON
    lifecycle.py    SmsLifecycle   sends coming due, delivery failures, events logged
    sms_writes.py   SmsWrites      SMS created, updated and deleted
    lead_writes.py  LeadWrites     leads and contacts changed, deleted and merged

Callers hold the emulator lock; nothing here locks by itself.
"""

from __future__ import annotations

from .lead_writes import LeadWrites
from .listing import SmsListing


class SmsStore(LeadWrites, SmsListing):
    """All SMS of one organization, the objects they point to, and its event log."""
