"""Settings of the Close API emulator: one frozen dataclass, validated on creation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .events import FILTER_NAMES
from .ratelimit import HEADER_FORMS, RESET_ROUNDINGS, HeaderForm, ResetRounding

UnknownParams = Literal["ignore", "reject"]
FilterPrecision = Literal["millisecond", "second"]
MergeEvents = Literal["all", "lead_only"]

_DATE_OPS = ("gt", "gte", "lt", "lte")
# The filters of GET /activity/sms/ (Close's spec); `ignored_filters` may name any of them.
SMS_LIST_FILTERS = frozenset(
    {"id__in", "lead_id", "contact_id", "user_id", "organization_id", "_type"}
    | {f"date_created__{op}" for op in _DATE_OPS}
    | {f"activity_at__{op}" for op in _DATE_OPS}
)
# Enough for any test of undeclared fields; a bound keeps a typo from bloating every SMS.
MAX_UNDECLARED_FIELDS = 50
# The filters of GET /event/; `ignored_event_filters` may name any of them.
EVENT_LIST_FILTERS = frozenset({*FILTER_NAMES} | {f"date_updated__{op}" for op in _DATE_OPS})
# The filters of the context lists, each as `kind.filter` (the kinds of Emulator's CRM objects);
# `ignored_context_filters` may name any of them.
CONTEXT_LIST_FILTERS = frozenset(
    {"phone_number.number", "phone_number.user_id", "phone_number.is_group_number"}
    | {"lead.id__in", "contact.id__in", "contact.lead_id"}
    | {"lead_merge.id__in", "lead_merge.lead_id", "lead_merge.user_id"}
)
# The kinds of context objects; `failing_context` may name any of them.
CONTEXT_KINDS = frozenset(
    {"user", "lead_status", "custom_field", "sms_template", "phone_number", "lead", "contact"}
)


@dataclass(frozen=True)
class EmulatorConfig:
    """Behaviour switches; the README of the Close facts names the source of each default."""

    # Close's default page size is 100 [OAS]; the SMS maximum is unknown, 100 is what clients use.
    max_limit: int = 100
    # Observed on /activity/email/ (airbyte#20959); unknown for SMS, hence a setting.
    max_skip: int = 250_000
    # Unknown on Close. "ignore" is the default because silently ignoring a filter such as
    # date_updated__gt is the case that corrupts a sync without any error.
    unknown_params: UnknownParams = "ignore"
    # Requests per second per key and endpoint group; None switches rate limiting off.
    rps: float | None = None
    # Token bucket size; None means equal to rps (at least 1).
    burst: float | None = None
    latency_ms: int = 0
    # Docs show ", "; a real account logged "; ". Clients must parse both.
    ratelimit_separator: Literal[",", ";"] = ","
    event_retention_days: int = 30
    # Close says only "a short time frame". 60 s is long enough that tests (and a sync scanning
    # the last five minutes, as Close recommends) really meet consolidated events.
    consolidation_seconds: float = 60.0
    nonadmin_data_hidden_after_seconds: int = 3600
    # Singer observed date_created filters honoured to the second only; "second" drops the
    # fraction of a filter value, which is the stricter case for a windowed sync.
    filter_precision: FilterPrecision = "second"
    # Close: send_in "must be less than 60".
    send_in_max_seconds: int = 60
    # Newest records kept in Emulator.request_log; older ones are dropped to bound memory.
    request_log_max: int = 200_000
    # Actions whose SMS events are never logged: Close's event log can miss events.
    unlogged_actions: frozenset[str] = frozenset()
    # Which events a lead merge logs. Close documents `updated`/`deleted` events for the objects
    # a merge touches, but not which ones it logs reliably: "all" logs the lead events (source
    # deleted, destination updated) plus updated events for every moved contact and SMS and a
    # created event for the LeadMerge activity; "lead_only" logs only the two lead events.
    merge_events: MergeEvents = "all"

    # Behaviours seen in Close's own code and its clients, beyond the documentation (README of
    # the Close facts, section 11). Each is off by default; tests switch them on.
    # Close's REST framework turns a record deleted mid-query into 404 "Empty query: Document
    # has been deleted." (tap-closeio meets it while paging with _skip): every SMS delete arms
    # one such 404 for the next /activity/sms/ list request with _skip > 0.
    empty_query_on_delete: bool = False
    # /activity/sms/ filters accepted but silently not applied, as Close's framework does with
    # filters it does not apply (no error: the answer looks unfiltered).
    ignored_filters: frozenset[str] = frozenset()
    # The same for /event/ filters (none of Close's sources shows it there; the sync checks).
    ignored_event_filters: frozenset[str] = frozenset()
    # The same for the context lists' filters, named `kind.filter` (e.g. "lead.id__in").
    ignored_context_filters: frozenset[str] = frozenset()
    # False: a POST with x-http-method-override: GET to /activity/sms/ ignores its _params body
    # and answers like an unfiltered GET.
    override_params_readable: bool = True
    # Share of the outbound SMS the emulator sends (outbox/scheduled coming due) whose delivery
    # later fails (status error) without any event, delivery_outcome_delay_seconds after sending.
    silent_delivery_failure_rate: float = 0.0
    delivery_outcome_delay_seconds: float = 30.0
    # generate() also makes imported SMS: date_created in 1995-2012, near 1970-01-01 and up to a
    # year in the future (date_created is writable on create).
    imported_history: bool = False
    # /event/ answers the first page of every query, and some later ones, with no data but a
    # cursor_next, as a scan whose page matched nothing does.
    empty_event_pages: bool = False
    # Only observation says /activity/sms/ lists newest first, with SMS sharing a timestamp in
    # a stable order: "oldest_first_pages" returns each page's SMS oldest first, and
    # unstable_tie_order orders SMS sharing a date_created anew on every request.
    page_order: Literal["newest_first", "oldest_first_pages"] = "newest_first"
    unstable_tie_order: bool = False

    # Recorded answers of the real API (README of the Close facts, sections 5 and 12). Each is
    # off by default; tests switch them on.
    # Fixed windows of this many seconds instead of the token bucket: round(rps * window)
    # requests per window and (key, group). Windows of 8 s (2017) and 15 s were recorded.
    ratelimit_window: float | None = None
    # How `reset` is written: 3 decimals (the docs: "as a decimal"), or whole seconds rounded
    # down or up (2025 logs show `reset=8`, `reset=1`).
    ratelimit_reset_rounding: ResetRounding = "fraction"
    # Close groups "by endpoint URL paths and methods": a POST with x-http-method-override: GET
    # then counts in the POST group, whose limit is `ratelimit_override_share` of the GET
    # group's (2025 logs: a POST group's limit was a tenth of a GET group's).
    ratelimit_group_by_method: bool = False
    ratelimit_override_share: float = 1.0
    # "ratelimit": `RateLimit: limit=.., remaining=.., reset=..` (the docs); "x-rate-limit": the
    # deprecated X-Rate-Limit-Limit/-Remaining/-Reset (2017-2019 cassettes); "ratelimit-separate":
    # RateLimit-Limit/-Remaining/-Reset (Close's client read RateLimit-Reset in 2022); "ietf":
    # draft-ietf-httpapi-ratelimit-headers' RateLimit and RateLimit-Policy; "none": no header on
    # successful answers ("only the rate_reset values and retry-after header may be set").
    ratelimit_header_form: HeaderForm = "ratelimit"
    # 400 or 405: a POST with x-http-method-override: GET to /activity/sms/ is refused (the
    # docs recommend the override, no recording shows it used on /activity/sms/).
    refuse_method_override: int | None = None
    # Generated SMS also carry the fields recorded in 2026 answers (caller_id_mode,
    # caller_id_reason) and, for SMS an AI agent sent, agent_action_reason/agent_config_id;
    # all within Close's spec, which lets objects carry properties it does not list.
    recorded_sms_fields: bool = False
    # Some generated SMS have a `source` recorded in real answers but outside the spec's enum
    # (Close.io/External): "ai", "whatsapp", "webform".
    recorded_sources: bool = False
    # Every SMS carries this many fields the spec does not list: `import_id` (recorded on
    # activities by Nango 2026 and Airbyte 2021), then x_extra_1, x_extra_2, ... of mixed types.
    undeclared_fields: int = 0
    # The generator also makes hard texts: empty, with NUL bytes, emoji sequences, combining
    # marks, right-to-left text, CR LF, tabs, quotes, backslashes and very long text.
    hostile_texts: bool = False

    # The context as Close documents it, not as the emulator serves it by default (README of
    # the Close facts, section 15). Each is off by default; tests switch them on.
    # Close documents no GET of one lead status (only list, create, rename and delete): with
    # this on, GET /status/lead/{id}/ answers 405, as a server without that read would.
    status_item_get_refused: bool = False
    # Kinds of context objects (see CONTEXT_KINDS) whose lists and items always answer
    # `failing_context_status`: 500 (a server error that outlasts any retry) or 403 (the key
    # may not read that kind).
    failing_context: frozenset[str] = frozenset()
    failing_context_status: int = 500
    # Close folds changes made to an object shortly after its creation into its `created`
    # event: a lead or contact updated by the same user within consolidation_seconds of its
    # creation keeps one `created` event, carrying it as it is now. Off: the update is an
    # `updated` event of its own.
    fold_updates_into_created: bool = False
    # Phone numbers carry the spec's press_1_to_accept and was_ported, templates owned_by:
    # fields a server may send that the sync declares no column for.
    recorded_context_fields: bool = False

    # Webhooks (README of the Close facts, section 13): Close's values are the defaults; tests
    # set small ones. Close documents only the 20-minute cap of its back-off, not its start.
    webhook_backoff_base_seconds: float = 30.0
    webhook_backoff_cap_seconds: float = 1200.0
    # A delivery failing this long after it first came due is dropped (Close: 72 hours).
    webhook_retry_window_seconds: float = 72 * 3600.0
    # A subscription whose deliveries failed for this long pauses itself (Close: 3 days).
    webhook_pause_after_failing_seconds: float = 3 * 86400.0
    # A subscription with this many deliveries waiting pauses itself (Close: 100,000).
    webhook_backlog_limit: int = 100_000
    # Subscriptions an organization may have (Close: 40); one more answers 400.
    webhook_subscription_limit: int = 40
    # Share of successful deliveries sent a second time (at-least-once delivery).
    webhook_duplicate_rate: float = 0.0
    # Each delivery waits a random 0..this many seconds more, so deliveries of events logged
    # close together arrive in any order (Close: "not ordered"); 0 keeps the log's order.
    webhook_reorder_seconds: float = 0.0
    # Deliveries carry a signature no receiver can verify (a forger's, or a rotated key's).
    webhook_forged_signature: bool = False
    # How long one POST to a receiver may take before it counts as failed.
    webhook_timeout_seconds: float = 5.0
    # Newest delivery attempts kept in Emulator.webhook_deliveries.
    webhook_delivery_log_max: int = 10_000

    def __post_init__(self) -> None:
        # Frozen: a set, list or tuple given by the caller is stored as a frozenset.
        for name, endpoint, known in (
            ("ignored_filters", "/activity/sms/", SMS_LIST_FILTERS),
            ("ignored_event_filters", "/event/", EVENT_LIST_FILTERS),
            ("ignored_context_filters", "the context lists", CONTEXT_LIST_FILTERS),
        ):
            object.__setattr__(
                self, name, _filter_names(getattr(self, name), name, endpoint, known)
            )
        if self.unknown_params not in ("ignore", "reject"):
            raise ValueError(
                f"unknown_params must be 'ignore' or 'reject', not {self.unknown_params!r}"
            )
        if self.merge_events not in ("all", "lead_only"):
            raise ValueError(
                f"merge_events must be 'all' or 'lead_only', not {self.merge_events!r}"
            )
        if self.filter_precision not in ("millisecond", "second"):
            raise ValueError(
                f"filter_precision must be 'millisecond' or 'second', not {self.filter_precision!r}"
            )
        if self.page_order not in ("newest_first", "oldest_first_pages"):
            raise ValueError(
                f"page_order must be 'newest_first' or 'oldest_first_pages', not {self.page_order!r}"
            )
        if self.ratelimit_separator not in (",", ";"):
            raise ValueError("ratelimit_separator must be ',' or ';'")
        if self.rps is not None and self.rps <= 0:
            raise ValueError("rps must be positive or None")
        object.__setattr__(self, "unlogged_actions", frozenset(self.unlogged_actions))
        self._check_failing_context()
        if self.max_limit < 1 or self.max_skip < 0:
            raise ValueError("max_limit must be >= 1 and max_skip >= 0")
        if not 0.0 <= self.silent_delivery_failure_rate <= 1.0:
            raise ValueError("silent_delivery_failure_rate must be between 0 and 1")
        if self.delivery_outcome_delay_seconds < 0:
            raise ValueError("delivery_outcome_delay_seconds must not be negative")
        self._check_ratelimit_settings()
        self._check_webhook_settings()
        if self.refuse_method_override not in (None, 400, 405):
            raise ValueError(
                f"refuse_method_override must be None, 400 or 405, not {self.refuse_method_override!r}"
            )
        if (
            isinstance(self.undeclared_fields, bool)
            or not isinstance(self.undeclared_fields, int)
            or not 0 <= self.undeclared_fields <= MAX_UNDECLARED_FIELDS
        ):
            raise ValueError(
                f"undeclared_fields must be a whole number from 0 to {MAX_UNDECLARED_FIELDS}"
            )

    def _check_failing_context(self) -> None:
        kinds = self.failing_context
        if isinstance(kinds, str) or not isinstance(kinds, (set, frozenset, list, tuple)):
            raise ValueError("failing_context must be a set, list or tuple of context kinds")
        unknown = sorted(str(kind) for kind in kinds if kind not in CONTEXT_KINDS)
        if unknown:
            raise ValueError(
                f"failing_context: {', '.join(unknown)} not a context kind "
                f"(one of {', '.join(sorted(CONTEXT_KINDS))})"
            )
        object.__setattr__(self, "failing_context", frozenset(kinds))
        if self.failing_context_status not in (403, 500):
            raise ValueError(
                f"failing_context_status must be 403 or 500, not {self.failing_context_status!r}"
            )

    def _check_ratelimit_settings(self) -> None:
        window = self.ratelimit_window
        if window is not None:
            if not 1 <= window <= 15:
                raise ValueError(f"ratelimit_window must be 1 to 15 seconds, not {window!r}")
            if self.rps is None:
                raise ValueError("ratelimit_window needs rps (the rate) to be set")
            if round(self.rps * window * min(1.0, self.ratelimit_override_share)) < 1:
                raise ValueError("rps * ratelimit_window must allow at least one request")
        if self.ratelimit_reset_rounding not in RESET_ROUNDINGS:
            raise ValueError(
                f"ratelimit_reset_rounding must be one of {', '.join(RESET_ROUNDINGS)}, "
                f"not {self.ratelimit_reset_rounding!r}"
            )
        if self.ratelimit_header_form not in HEADER_FORMS:
            raise ValueError(
                f"ratelimit_header_form must be one of {', '.join(HEADER_FORMS)}, "
                f"not {self.ratelimit_header_form!r}"
            )
        if not 0 < self.ratelimit_override_share <= 1:
            raise ValueError("ratelimit_override_share must be above 0 and at most 1")
        if self.ratelimit_override_share != 1.0 and not self.ratelimit_group_by_method:
            raise ValueError("ratelimit_override_share needs ratelimit_group_by_method=True")

    def _check_webhook_settings(self) -> None:
        for name in (
            "webhook_backoff_base_seconds",
            "webhook_backoff_cap_seconds",
            "webhook_retry_window_seconds",
            "webhook_pause_after_failing_seconds",
            "webhook_timeout_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.webhook_backoff_cap_seconds < self.webhook_backoff_base_seconds:
            raise ValueError("webhook_backoff_cap_seconds must be >= webhook_backoff_base_seconds")
        for name in (
            "webhook_backlog_limit",
            "webhook_subscription_limit",
            "webhook_delivery_log_max",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1")
        if not 0.0 <= self.webhook_duplicate_rate <= 1.0:
            raise ValueError("webhook_duplicate_rate must be between 0 and 1")
        if self.webhook_reorder_seconds < 0:
            raise ValueError("webhook_reorder_seconds must not be negative")

    @property
    def bucket_size(self) -> float:
        """Token bucket capacity used by the rate limiter."""
        if self.rps is None:
            return 0.0
        return max(1.0, self.burst if self.burst is not None else self.rps)


def _filter_names(
    names: Iterable[str], setting: str, endpoint: str, known: frozenset[str]
) -> frozenset[str]:
    """`names` as a frozenset of `endpoint`'s filter names; ValueError for anything else."""
    if isinstance(names, str) or not isinstance(names, (set, frozenset, list, tuple)):
        raise ValueError(f"{setting} must be a set, list or tuple of filter names")
    unknown = sorted(str(name) for name in names if name not in known)
    if unknown:
        raise ValueError(
            f"{setting}: {', '.join(unknown)} not a filter of {endpoint} "
            f"(one of {', '.join(sorted(known))})"
        )
    return frozenset(names)
