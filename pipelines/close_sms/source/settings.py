"""Close's facts and the source's defaults.

Defaults live in code so that the sync behaves the same from any working directory
(cron starts jobs in $HOME, where no project `.dlt/` folder is found). The command's and the
warehouse's own defaults live beside the code that uses them (`app/config.py`,
`warehouse/destination.py`, `warehouse/duckdb_wait.py`).
"""

from __future__ import annotations

from enum import Enum


class TextEnum(str, Enum):
    """An Enum whose members are their values wherever they become text (f-strings, JSON, SQL,
    dlt's state), so what is stored stays the same words. Python 3.10 has no `enum.StrEnum`."""

    def __str__(self) -> str:
        return str(self.value)


SOURCE_NAME = "close_sms"
DATASET_NAME = "close_sms"
PIPELINE_NAME = "close_sms"

DEFAULT_BASE_URL = "https://api.close.com/api/v1"
# A new backfill reads every date_created from the epoch: imports can date SMS before Close
# existed (2013), and empty ranges cost one request each.
DEFAULT_START_DATE = "1970-01-01"
# The upper end of a backfill's open-ended pass over SMS dated after its start (future-dated
# imports): no date_created__lt filter is sent for it.
OPEN_END_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z, the largest ISO 8601 year

SMS_ENDPOINT = "/activity/sms/"
EVENT_ENDPOINT = "/event/"
ME_ENDPOINT = "/me/"
EVENT_OBJECT_TYPE = "activity.sms"
# Close accepts object_type only together with action (or object_id): one query per action.
EVENT_ACTIONS = ("created", "updated", "sent", "deleted")

PAGE_SIZE = 100
# SMS of a partly read second that the next page reads again, so that up to this many deletes
# between two requests cannot shift an unread SMS past Close's offset.
PAGE_OVERLAP = 25
EVENT_PAGE_SIZE = 50
ID_BATCH_SIZE = 100
# Close recommends the POST override once a URL passes about 2000 characters.
MAX_URL_LENGTH = 2000
# Observed on /activity/email/; the SMS value is unknown, so it stays configurable.
DEFAULT_MAX_SKIP = 250_000
# Singer observed that date_created filters are honoured to the second only.
FILTER_PRECISION_SECONDS = 1

EVENT_RETENTION_DAYS = 30
# Every incremental run re-reads the SMS created this recently, and loads those whose
# date_updated or status differ from the warehouse: changes Close makes without an event
# (delivery outcomes) arrive within one run. 0 turns it off.
RECENT_WINDOW_HOURS = 24.0
# A reconcile runs by itself when the last full read is this old, repairing what the event log
# never said (lead merges, lost events). 0 turns it off.
RECONCILE_INTERVAL_DAYS = 7.0
# A run stops before removing more than this share of the `sms` table (and at least
# DELETE_GUARD_MIN_ROWS rows) without `deleted` events behind the removals.
MAX_DELETE_SHARE = 0.10
DELETE_GUARD_MIN_ROWS = 100
# A last feed check this close to the event log's horizon is treated as lost: a reconcile backfill runs.
HORIZON_SAFETY_DAYS = 1
# Close recommends rescanning the latest five minutes of events (consolidation, late writes).
EVENT_LOOKBACK_SECONDS = 300
# A run that finds no events records its check only when the last record is this old, so
# quiet cron runs write no dlt load or state (the next run reads from the older check).
FEED_CHECKPOINT_SECONDS = 900

# Windows in flight per API key. 8 keeps a key's budget used through latency and the moments
# a thread waits for the GIL (20 req/s + 100 ms latency: 4 workers 0.87 of the budget, 8
# workers 0.97; no-limit 100k backfill 31.3 s -> 29.8 s).
BACKFILL_WORKERS = 8
# SMS the backfill reads ahead of dlt, in a bounded buffer, while dlt writes, normalizes and
# loads: enough for a 50,000-SMS chunk's normalize and load at 3 keys' 6,000 SMS/s.
PREFETCH_SMS = 25_000
# A parked read-ahead (a run stopped at max_sms) waits this long for the next run to adopt it.
PREFETCH_PARK_SECONDS = 600.0
# How often a read-ahead waiting for room in its buffer checks whether it was closed.
PREFETCH_STOP_CHECK_SECONDS = 0.25
# SMS per Arrow table the backfill hands dlt: large enough that dlt's per-table cost vanishes
# (a table per 100-SMS page extracted slower than row dicts), small enough to stay a few MB.
ARROW_BATCH_SMS = 5_000
# Destinations whose loads of those tables the tests prove equal to loads of row dicts. Others
# get row dicts: loaded from another file format than parquet's, JSON could differ in form.
ARROW_DESTINATIONS = ("dlt.destinations.duckdb", "dlt.destinations.postgres")
# A request waiting for its key's next answer looks again this often, in case none comes.
KEY_POOL_RECHECK_SECONDS = 1.0

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
MAX_RETRIES = 8
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 60.0


# Privacy (source/privacy.py): what happens to personal text, and the shortest hash_key taken.
class TextMode(TextEnum):
    """What the source does to a personal text (source/privacy.py): keep it, drop it (null), or
    store its hash."""

    KEEP = "keep"
    DROP = "drop"
    HASH = "hash"


DEFAULT_SMS_TEXT = TextMode.KEEP
# 16 random characters are beyond enumeration; shorter keys are usually words.
MIN_HASH_KEY_LENGTH = 16

# The context SMS point to (source/context/): users, lead statuses, templates, phone numbers,
# and the leads and contacts the SMS name.
USER_ENDPOINT = "/user/"
LEAD_STATUS_ENDPOINT = "/status/lead/"
LEAD_CUSTOM_FIELD_ENDPOINT = "/custom_field/lead/"
SMS_TEMPLATE_ENDPOINT = "/sms_template/"
PHONE_NUMBER_ENDPOINT = "/phone_number/"
LEAD_ENDPOINT = "/lead/"
CONTACT_ENDPOINT = "/contact/"
# Lead and contact events the context follows. `created` ones too: Close folds changes made soon
# after a create into its `created` event, which then carries the object as it is now.
CONTEXT_EVENT_ACTIONS = {
    "lead": ("created", "updated", "deleted"),
    "contact": ("created", "updated", "deleted"),
}
# Users, statuses, templates and numbers have no events: they are read again this often (0: every
# run), or sooner when an SMS names a user or template the warehouse does not hold.
CONTEXT_REFRESH_MINUTES = 60.0
# What happens to the names and emails of contacts and leads, as `sms_text` does to SMS text.
DEFAULT_CONTACT_NAMES = TextMode.KEEP
