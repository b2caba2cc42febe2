"""The WSGI application: routing, auth, rate limits, faults and Close's request rules."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from .auth import FORBIDDEN_MESSAGE, UNAUTHORIZED_MESSAGE, Principal, authenticate
from .config import CONTEXT_LIST_FILTERS, SMS_LIST_FILTERS
from .crm import InvalidUpdate, UnknownObject
from .emulator import Emulator, RequestRecord
from .events import ALLOWED_COMBINATIONS, FILTER_NAMES, CursorError
from .faults import Fault
from .ratelimit import RateDecision, RateLimiter, WindowRateLimiter, legacy_body
from .store import (
    DELETED_MID_QUERY_MESSAGE,
    DeletedInPage,
    Forbidden,
    NotFound,
    RequestContext,
    SmsQuery,
    SmsStore,
    ValidationError,
)
from .timefmt import dt_to_ms, format_ms, parse_datetime

try:  # orjson ships with dlt and is several times faster; json is the fallback.
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def _loads(raw: bytes) -> Any:
        return orjson.loads(raw)

except ImportError:  # pragma: no cover
    import json

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    def _loads(raw: bytes) -> Any:
        return json.loads(raw)


API = "/api/v1"
_DATE_OPS = ("gt", "gte", "lt", "lte")
_SMS_PARAMS = frozenset({"_limit", "_skip", "_fields"}) | SMS_LIST_FILTERS
_ACTIVITY_PARAMS = _SMS_PARAMS | {
    "lead_id__in",
    "user_id__in",
    "contact_id__in",
    "_type__in",
    "_order_by",
    "thread_emails",
}
_EVENT_PARAMS = frozenset(
    {"_limit", "_cursor", "_skip", "_fields", *FILTER_NAMES}
    | {f"date_updated__{op}" for op in _DATE_OPS}
)
_LEAD_ONLY_PARAMS = ("user_id", "user_id__in", "contact_id", "contact_id__in", "_type", "_type__in")
_RESOURCE = {
    "sms_list": "activity.sms",
    "sms_item": "activity.sms",
    "activity_list": "activity",
    "event_list": "event",
    "event_item": "event",
    "me": "me",
}


def _filters_of(kind: str) -> frozenset[str]:
    """The list filters of a kind of context object, from `CONTEXT_LIST_FILTERS`."""
    return frozenset(
        name.split(".", 1)[1] for name in CONTEXT_LIST_FILTERS if name.startswith(f"{kind}.")
    )


# The context objects' collections: kind -> (path under /api/v1, rate-limit group, filters).
_CRM_PATHS: dict[str, tuple[str, str, frozenset[str]]] = {
    "user": ("/user/", "user", frozenset({"_order_by"})),
    "lead_status": ("/status/lead/", "status.lead", frozenset()),
    "custom_field": ("/custom_field/lead/", "custom_field.lead", frozenset()),
    "sms_template": ("/sms_template/", "sms_template", frozenset()),
    "phone_number": ("/phone_number/", "phone_number", _filters_of("phone_number")),
    "lead": ("/lead/", "lead", _filters_of("lead")),
    "contact": ("/contact/", "contact", _filters_of("contact")),
    "lead_merge": ("/activity/lead_merge/", "activity.lead_merge", _filters_of("lead_merge")),
}
# Collections whose lists also answer a POST with x-http-method-override: GET (long id__in).
_CRM_OVERRIDABLE = frozenset({"lead", "contact", "lead_merge"})
# Items that PUT updates and DELETE removes.
_CRM_WRITABLE = frozenset({"lead", "contact"})
_RESOURCE.update({f"{kind}_list": group for kind, (_, group, _) in _CRM_PATHS.items()})
_RESOURCE.update({f"{kind}_item": group for kind, (_, group, _) in _CRM_PATHS.items()})
_RESOURCE["lead_merge_post"] = "lead"
EVENT_MAX_LIMIT = 50
HANG_DEFAULT_SECONDS = 120.0
METHOD_OVERRIDE_REFUSED_MESSAGE = (
    "The x-http-method-override header is not supported for this endpoint."
)


# What answers say when rate limiting is off: a budget no client reaches.
UNLIMITED = RateDecision(allowed=True, limit=1_000_000, remaining=999_999, reset=1.0)


class ApiError(Exception):
    """An error response with a JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _error(status: int, message: str) -> ApiError:
    return ApiError(status, {"error": message})


def _field_error(name: str, message: str) -> ApiError:
    return ApiError(400, {"errors": [], "field-errors": {name: message}})


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _params_from_body(body: Any) -> dict[str, str]:
    params = body.get("_params") if isinstance(body, dict) else None
    if not isinstance(params, dict):
        raise ApiError(400, {"errors": ["Expected a JSON body with _params."], "field-errors": {}})
    out: dict[str, str] = {}
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif value is not None:
            out[name] = str(value)
    return out


class EmulatorApp:
    """WSGI callable serving one Emulator under /api/v1/."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self.config = emulator.config
        # Set on server shutdown so that injected hangs end at once.
        self.stopping = threading.Event()
        self.url_map = Map(
            [
                Rule(f"{API}/activity/sms/", endpoint="sms_list", methods=["GET", "POST"]),
                Rule(
                    f"{API}/activity/sms/<sms_id>/",
                    endpoint="sms_item",
                    methods=["GET", "PUT", "DELETE"],
                ),
                Rule(f"{API}/activity/", endpoint="activity_list", methods=["GET", "POST"]),
                Rule(f"{API}/event/", endpoint="event_list", methods=["GET", "POST"]),
                Rule(f"{API}/event/<event_id>/", endpoint="event_item", methods=["GET"]),
                Rule(f"{API}/me/", endpoint="me", methods=["GET"]),
                Rule(f"{API}/lead/merge/", endpoint="lead_merge_post", methods=["POST"]),
                *self._crm_rules(),
            ]
        )
        self._handlers: dict[str, Callable[..., Response]] = {
            "sms_list": self._sms_list,
            "sms_item": self._sms_item,
            "activity_list": self._activity_list,
            "event_list": self._event_list,
            "event_item": self._event_item,
            "me": self._me,
            "lead_merge_post": self._lead_merge_post,
        }
        for kind in _CRM_PATHS:
            self._handlers[f"{kind}_list"] = partial(self._crm_list, kind=kind)
            self._handlers[f"{kind}_item"] = partial(self._crm_item, kind=kind)

    @staticmethod
    def _crm_rules() -> list[Rule]:
        """A list and an item route for every kind of context object."""
        rules = []
        for kind, (path, _, _) in _CRM_PATHS.items():
            writable = kind in _CRM_WRITABLE
            list_methods = ["GET", "POST"] if kind in _CRM_OVERRIDABLE else ["GET"]
            item_methods = ["GET", "PUT", "DELETE"] if writable else ["GET"]
            rules.append(Rule(f"{API}{path}", endpoint=f"{kind}_list", methods=list_methods))
            rules.append(
                Rule(f"{API}{path}<object_id>/", endpoint=f"{kind}_item", methods=item_methods)
            )
        return rules

    # ---- WSGI entry -------------------------------------------------------------------

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        response, record = self._handle(request)
        self.emu.record(record)
        return response(environ, start_response)

    def _handle(self, request: Request) -> tuple[Response, RequestRecord]:
        path = request.path
        params: dict[str, str] = {k: ",".join(request.args.getlist(k)) for k in request.args}
        principal: Principal | None = None
        fault = self.emu.faults.take(path)
        if fault is not None:
            early = self._early_fault(fault)
            if early is not None:
                return early, self._record(request, params, early.status_code, None, fault)
        if self.config.latency_ms:
            time.sleep(self.config.latency_ms / 1000)
        decision: RateDecision | None = None
        try:
            adapter = self.url_map.bind_to_environ(request.environ)
            endpoint, args = adapter.match()
            principal = authenticate(request.headers.get("Authorization"))
            if principal is None:
                raise _error(401, UNAUTHORIZED_MESSAGE)
            method = request.method
            if (
                method == "POST"
                and request.headers.get("x-http-method-override", "").upper() == "GET"
            ):
                refused = self.config.refuse_method_override
                if refused is not None and endpoint == "sms_list":
                    raise _error(refused, METHOD_OVERRIDE_REFUSED_MESSAGE)
                # Unreadable _params: the body is never looked at, the answer is unfiltered.
                if endpoint != "sms_list" or self.config.override_params_readable:
                    params = {**params, **_params_from_body(self._json_body(request))}
                method = "GET"
            limiter = self.emu.ratelimiter
            if limiter is not None:
                decision = self._rate_limit(limiter, endpoint, request.method, method, principal)
            else:
                # Close describes a limit on most answers; with limiting off, one never reached.
                decision = UNLIMITED
            handler = self._handlers[endpoint]
            response = handler(request, method, params, principal, **args)
        except _Done as done:
            response = done.response
        except ApiError as exc:
            response = self._json(exc.status, exc.body)
        except ValidationError as exc:
            response = self._json(400, exc.body())
        except NotFound as exc:
            response = self._json(404, {"error": str(exc)})
        except UnknownObject as exc:
            response = self._json(404, {"error": str(NotFound(exc.model))})
        except InvalidUpdate as exc:
            response = self._json(400, ValidationError(exc.field_errors).body())
        except DeletedInPage:
            response = self._json(404, {"error": DELETED_MID_QUERY_MESSAGE})
        except Forbidden:
            response = self._json(403, {"error": FORBIDDEN_MESSAGE})
        except RequestRedirect as exc:
            response = exc.get_response(request.environ)  # type: ignore[assignment]
        except RouteNotFound:
            response = self._json(404, {"error": "The requested URL was not found on the server."})
        except MethodNotAllowed:
            response = self._json(
                405, {"error": "The method is not allowed for the requested URL."}
            )
        except HTTPException as exc:
            response = self._json(exc.code or 500, {"error": exc.description or "error"})
        if decision is not None:
            response.headers.update(self._rate_headers(decision))
        if fault is not None:
            response = self._late_fault(fault, response)
        status = response.status_code
        return response, self._record(
            request, params, status, principal.key_id if principal else None, fault
        )

    def _rate_limit(
        self,
        limiter: RateLimiter | WindowRateLimiter,
        endpoint: str,
        sent_method: str,
        method: str,
        principal: Principal,
    ) -> RateDecision:
        """Count the request in its group; _Done with a 429 when the group has no room."""
        resource = _RESOURCE[endpoint]
        share = 1.0
        if self.config.ratelimit_group_by_method:
            group = f"{resource}:{sent_method}"
            if sent_method == "POST":
                share = self.config.ratelimit_override_share
        else:
            group = f"{resource}:{'read' if method == 'GET' else 'write'}"
        decision = limiter.check(principal.key_id, group, share)
        if not decision.allowed:
            with self.emu.lock:
                self.emu.stats.rate_limited += 1
            response = self._json(429, legacy_body(decision, group))
            response.headers.update(self._rate_headers(decision))
            raise _Done(response)
        return decision

    def _rate_headers(self, decision: RateDecision) -> dict[str, str]:
        """The configured rate-limit headers; a 429 always carries retry-after."""
        config = self.config
        headers = decision.headers(
            config.ratelimit_header_form,
            config.ratelimit_separator,
            config.ratelimit_reset_rounding,
        )
        if not decision.allowed:
            headers["retry-after"] = str(decision.retry_after)
        return headers

    def _record(
        self,
        request: Request,
        params: dict[str, str],
        status: int,
        key_id: str | None,
        fault: Fault | None,
    ) -> RequestRecord:
        return RequestRecord(
            method=request.method,
            path=request.path,
            params=dict(params),
            status=status,
            api_key_id=key_id,
            fault=fault.kind if fault else None,
            time=time.time(),
        )

    # ---- faults -----------------------------------------------------------------------

    def _early_fault(self, fault: Fault) -> Response | None:
        kind = fault.kind
        if kind in ("502", "503", "504"):
            # A real 504 from Close had an empty body with a JSON content type.
            return Response(b"", status=int(kind), content_type="application/json")
        if kind == "403":
            # Close's framework answers a permission it does not grant this key with a 403.
            return self._json(403, {"error": "You don't have permission to do that."})
        if kind == "429":
            reset = float(fault.params.get("reset", 1.0))
            decision = RateDecision(False, int(self.config.bucket_size or 1), 0, reset)
            response = self._json(429, legacy_body(decision, "fault"))
            response.headers.update(self._rate_headers(decision))
            return response
        if kind == "slow":
            self.stopping.wait(float(fault.params.get("seconds", 2.0)))
        elif kind == "hang" and self.stopping.wait(
            float(fault.params.get("seconds", HANG_DEFAULT_SECONDS))
        ):
            return Response(b"", status=503, content_type="application/json")
        return None

    def _late_fault(self, fault: Fault, response: Response) -> Response:
        kind = fault.kind
        if kind not in ("drop", "truncate", "malformed", "html200"):
            return response
        body = response.get_data()
        if kind == "html200":
            html = (
                b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                b"<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
            )
            return Response(html, status=200, content_type="text/html; charset=utf-8")
        if kind == "malformed":
            return Response(
                b'{"data": [{"id": }, "has_more": tru}', status=200, content_type="application/json"
            )
        if len(body) < 2:
            body = b'{"data": [], "has_more": false}'
        cut = body[: max(1, len(body) // 2)]
        if kind == "truncate":
            return Response(cut, status=200, content_type="application/json")
        # drop: announce the full length, send half; werkzeug then closes the connection.
        dropped = Response(iter([cut]), status=200, content_type="application/json")
        dropped.headers["Content-Length"] = str(len(body))
        dropped.direct_passthrough = True
        return dropped

    # ---- helpers ----------------------------------------------------------------------

    def _json(self, status: int, body: Any) -> Response:
        return Response(_dumps(body), status=status, content_type="application/json")

    def _json_body(self, request: Request) -> Any:
        raw = request.get_data()
        if not raw:
            return {}
        try:
            return _loads(raw)
        except ValueError as exc:
            raise ApiError(400, {"errors": ["Invalid JSON body."], "field-errors": {}}) from exc

    def _ctx(self, request: Request, principal: Principal) -> RequestContext:
        return RequestContext(principal, self.emu.new_request_id(), request.method, request.path)

    def _check_unknown(self, params: dict[str, str], known: frozenset[str]) -> None:
        unknown = sorted(name for name in params if name not in known)
        if unknown and self.config.unknown_params == "reject":
            raise ApiError(
                400,
                {"errors": [], "field-errors": dict.fromkeys(unknown, "Unknown parameter.")},
            )

    def _int_param(self, params: dict[str, str], name: str, default: int) -> int:
        raw = params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _field_error(name, "Enter a whole number.") from None
        if value < 0:
            raise _field_error(name, "Ensure this value is greater than or equal to 0.")
        return value

    def _date_bounds(
        self, params: dict[str, str], field: str, request: Request, precision: str
    ) -> dict[str, int]:
        try:
            tz = float(request.headers.get("x-tz-offset", "0") or 0)
        except ValueError:
            raise _error(400, "Invalid x-tz-offset header.") from None
        bounds: dict[str, int] = {}
        for op in _DATE_OPS:
            raw = params.get(f"{field}__{op}")
            if raw in (None, ""):
                continue
            try:
                ms = dt_to_ms(parse_datetime(raw, tz))
            except ValueError:
                raise _field_error(f"{field}__{op}", "Enter a valid date/time.") from None
            if precision == "second":
                ms -= ms % 1000  # the fraction of the filter value is dropped
            bounds[op] = ms
        return bounds

    def _paging(self, params: dict[str, str]) -> tuple[int, int]:
        limit = self._int_param(params, "_limit", min(100, self.config.max_limit))
        skip = self._int_param(params, "_skip", 0)
        if limit > self.config.max_limit:
            raise _error(
                400,
                "The limit you set is larger than the maximum limit for this resource "
                f"(max_limit = {self.config.max_limit}). Please refine your search query.",
            )
        if skip > self.config.max_skip:
            raise _error(
                400,
                "The skip you set is larger than the maximum skip for this resource "
                f"(max_skip = {self.config.max_skip}). Please refine your search query.",
            )
        return skip, limit

    @staticmethod
    def _project(items: list[dict[str, Any]], fields: list[str] | None) -> list[dict[str, Any]]:
        if not fields:
            return items
        return [{name: item[name] for name in fields if name in item} for item in items]

    def _store(self, principal: Principal) -> SmsStore:
        store = self.emu.store_for(principal)
        store.tick()
        return store

    # ---- SMS --------------------------------------------------------------------------

    def _build_query(
        self,
        store: SmsStore,
        params: dict[str, str],
        request: Request,
        lead_key: str = "lead_id",
    ) -> SmsQuery | None:
        """SmsQuery from list params; None when a filter can match nothing."""
        skip, limit = self._paging(params)
        query = SmsQuery(skip=skip, limit=limit)
        precision = self.config.filter_precision
        query.date_created = self._date_bounds(params, "date_created", request, precision)
        query.activity_at = self._date_bounds(params, "activity_at", request, precision)
        org = params.get("organization_id")
        if org and org != store.organization_id:
            return None
        types = _split(params.get("_type"))
        types_in = _split(params.get("_type__in"))
        for wanted in (types, types_in):
            if wanted is not None and "SMS" not in wanted:
                return None
        ids = _split(params.get("id__in"))
        if ids is not None:
            query.rows = [r for r in (store.listed_row_of(i) for i in ids) if r is not None]
        leads = (_split(params.get("lead_id")) or []) + (_split(params.get("lead_id__in")) or [])
        if params.get("lead_id") is not None or params.get("lead_id__in") is not None:
            query.leads = [store.leads.index[x] for x in leads if x in store.leads.index]
        contacts = (_split(params.get("contact_id")) or []) + (
            _split(params.get("contact_id__in")) or []
        )
        if params.get("contact_id") is not None or params.get("contact_id__in") is not None:
            query.contacts = [
                store.contacts.index[x] for x in contacts if x in store.contacts.index
            ]
        users = (_split(params.get("user_id")) or []) + (_split(params.get("user_id__in")) or [])
        if params.get("user_id") is not None or params.get("user_id__in") is not None:
            query.users = [store.user_by_id[x] for x in users if x in store.user_by_id]
        return query

    def _list_response(
        self, store: SmsStore, query: SmsQuery | None, params: dict[str, str]
    ) -> Response:
        if query is None:
            return self._json(200, {"data": [], "has_more": False})
        rows, has_more = store.list_rows(query)
        if self.config.page_order == "oldest_first_pages":
            rows = rows[::-1]
        items = [store.render(row) for row in rows]
        items = self._project(items, _split(params.get("_fields")))
        return self._json(200, {"data": items, "has_more": has_more})

    def _sms_list(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        if method == "POST":
            return self._sms_create(request, principal)
        self._check_unknown(params, _SMS_PARAMS)
        ignored = self.config.ignored_filters
        applied = {name: value for name, value in params.items() if name not in ignored}
        with self.emu.lock:
            store = self._store(principal)
            query = self._build_query(store, applied, request)
            if query is not None and query.skip > 0 and store.take_armed_empty_query():
                raise _error(404, DELETED_MID_QUERY_MESSAGE)
            return self._list_response(store, query, params)

    def _sms_create(self, request: Request, principal: Principal) -> Response:
        payload = self._json_body(request)
        with self.emu.lock:
            store = self._store(principal)
            return self._json(200, store.create(payload, self._ctx(request, principal)))

    def _sms_item(
        self,
        request: Request,
        method: str,
        params: dict[str, str],
        principal: Principal,
        sms_id: str,
    ) -> Response:
        with self.emu.lock:
            store = self._store(principal)
            if method == "GET":
                row = store.row_of(sms_id)
                if row is None:
                    raise NotFound()
                if row in store.forbidden:
                    raise Forbidden()
                item = self._project([store.render(row)], _split(params.get("_fields")))[0]
                return self._json(200, item)
            if method == "PUT":
                payload = self._json_body(request)
                return self._json(200, store.update(sms_id, payload, self._ctx(request, principal)))
            store.delete(sms_id, self._ctx(request, principal))
            return self._json(200, {})

    def _activity_list(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        """Generic /activity/: SMS only, with its single-lead and _order_by rules."""
        if method != "GET":
            raise _error(405, "The method is not allowed for the requested URL.")
        self._check_unknown(params, _ACTIVITY_PARAMS)
        leads = (_split(params.get("lead_id")) or []) + (_split(params.get("lead_id__in")) or [])
        single_lead = len(leads) == 1
        misused = [name for name in _LEAD_ONLY_PARAMS if name in params and not single_lead]
        if misused:
            raise _error(
                400,
                f"The following filters can only be used with a single lead_id: {', '.join(misused)}.",
            )
        order_by = params.get("_order_by") or "-date_created"
        field = order_by.lstrip("-")
        if field not in ("date_created", "activity_at"):
            raise _field_error(
                "_order_by", "Sorting is only supported by date_created or activity_at."
            )
        if field == "activity_at" and not single_lead:
            raise _error(400, "Sorting by activity_at requires a single lead_id.")
        other = "activity_at" if field == "date_created" else "date_created"
        if any(f"{other}__{op}" in params for op in _DATE_OPS):
            raise _error(
                400,
                f"You can only use the date filters of the field you sort on ({field}); "
                f"add _order_by=-{other} to filter by {other}.",
            )
        with self.emu.lock:
            store = self._store(principal)
            query = self._build_query(store, params, request)
            if query is not None:
                query.order_field = field
                query.descending = order_by.startswith("-")
            return self._list_response(store, query, params)

    # ---- events -----------------------------------------------------------------------

    def _event_list(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        if method != "GET":
            raise _error(405, "The method is not allowed for the requested URL.")
        self._check_unknown(params, _EVENT_PARAMS)
        if "_skip" in params:
            raise _error(400, "The event log does not support _skip; paginate with _cursor.")
        limit = min(self._int_param(params, "_limit", EVENT_MAX_LIMIT), EVENT_MAX_LIMIT)
        if limit == 0:
            limit = EVENT_MAX_LIMIT
        filters = {name: params[name] for name in FILTER_NAMES if params.get(name)}
        if frozenset(filters) not in ALLOWED_COMBINATIONS:
            raise _error(
                400,
                "Unsupported combination of filters: "
                f"{', '.join(sorted(filters))}. See the list of supported combinations.",
            )
        # Checked as asked, then not applied: the answer looks unfiltered by them.
        ignored = self.config.ignored_event_filters
        filters = {name: value for name, value in filters.items() if name not in ignored}
        params = {name: value for name, value in params.items() if name not in ignored}
        # Close honours date_updated to the millisecond (Singer observed sub-second precision).
        bounds = self._date_bounds(params, "date_updated", request, "millisecond")
        with self.emu.lock:
            store = self._store(principal)
            try:
                page = store.events.query(
                    filters,
                    bounds,
                    limit,
                    params.get("_cursor") or None,
                    store.horizon_ms(),
                    empty_pages=self.config.empty_event_pages,
                )
            except CursorError as exc:
                raise _error(400, str(exc)) from None
            hide_before = self._hide_before(principal)
            data = [
                store.events.render(e, store.render, e.date_created < hide_before)
                for e in page.events
            ]
        data = self._project(data, _split(params.get("_fields")))
        return self._json(
            200,
            {
                "data": data,
                "cursor_next": page.cursor_next,
                "cursor_previous": page.cursor_previous,
            },
        )

    def _hide_before(self, principal: Principal) -> int:
        if principal.is_admin:
            return -(1 << 62)
        return self.emu.clock.now_ms() - self.config.nonadmin_data_hidden_after_seconds * 1000

    def _event_item(
        self,
        request: Request,
        method: str,
        params: dict[str, str],
        principal: Principal,
        event_id: str,
    ) -> Response:
        with self.emu.lock:
            store = self._store(principal)
            event = store.events.get(event_id, store.horizon_ms())
            if event is None:
                raise NotFound("Event")
            hide = event.date_created < self._hide_before(principal)
            return self._json(200, store.events.render(event, store.render, hide))

    # ---- other ------------------------------------------------------------------------

    def _me(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        first, _, last = principal.user_name.partition(" ")
        role = "admin" if principal.is_admin else "member"
        now = format_ms(self.emu.clock.now_ms())
        body = {
            "id": principal.user_id,
            "first_name": first,
            "last_name": last,
            "email": principal.email,
            "organization_id": principal.organization_id,
            "organizations": [{"id": principal.organization_id, "name": "Bluth Company"}],
            "memberships": [
                {
                    "organization_id": principal.organization_id,
                    "user_id": principal.user_id,
                    "role_id": role,
                }
            ],
            # Not a Close field: a shortcut so callers need not interpret role ids.
            "is_admin": principal.is_admin,
            "date_created": "2016-10-03T16:06:11.167000+00:00",
            "date_updated": now,
        }
        body = self._project([body], _split(params.get("_fields")))[0]
        return self._json(200, body)

    # ---- context objects ------------------------------------------------------------------

    def _crm_list(
        self,
        request: Request,
        method: str,
        params: dict[str, str],
        principal: Principal,
        kind: str,
    ) -> Response:
        """A page of users, statuses, fields, templates, numbers, leads, contacts or merges."""
        if method != "GET":
            raise _error(405, "The method is not allowed for the requested URL.")
        _, _, filter_names = _CRM_PATHS[kind]
        self._check_unknown(params, frozenset({"_limit", "_skip", "_fields"}) | filter_names)
        skip, limit = self._paging(params)
        ignored = self.config.ignored_context_filters
        filters = {
            name: _split(params[name]) or []
            for name in filter_names
            if name in params and name != "_order_by" and f"{kind}.{name}" not in ignored
        }
        with self.emu.lock:
            store = self._store(principal)
            found = store.crm.select(kind, filters)
            page = found[skip : skip + limit]
            items = [store.crm.render(kind, obj) for obj in page]
        items = self._project(items, _split(params.get("_fields")))
        return self._json(200, {"data": items, "has_more": len(found) > skip + limit})

    def _crm_item(
        self,
        request: Request,
        method: str,
        params: dict[str, str],
        principal: Principal,
        object_id: str,
        kind: str,
    ) -> Response:
        """GET one context object; PUT or DELETE a lead or a contact."""
        with self.emu.lock:
            store = self._store(principal)
            ctx = self._ctx(request, principal)
            if method == "GET":
                found = store.crm.get(kind, object_id)
                if object_id in store.crm.forbidden:
                    raise Forbidden()
                item = store.crm.render(kind, found)
                return self._json(200, self._project([item], _split(params.get("_fields")))[0])
            if method == "PUT":
                payload = self._json_body(request)
                if not isinstance(payload, dict):
                    raise ValidationError({}, ["Invalid JSON body: expected an object."])
                update = store.update_lead if kind == "lead" else store.update_contact
                return self._json(200, update(object_id, payload, ctx))
            if kind == "lead":
                store.delete_lead(object_id, ctx)
            else:
                store.delete_contact(object_id, ctx)
            return self._json(200, {})

    def _lead_merge_post(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        """POST /lead/merge/ with {"source": ..., "destination": ...}."""
        if method != "POST":
            raise _error(405, "The method is not allowed for the requested URL.")
        payload = self._json_body(request)
        if not isinstance(payload, dict):
            raise ValidationError({}, ["Invalid JSON body: expected an object."])
        with self.emu.lock:
            store = self._store(principal)
            return self._json(
                200,
                store.merge_leads(
                    payload.get("source"), payload.get("destination"), self._ctx(request, principal)
                ),
            )


class _Done(Exception):
    """Short-circuit with a ready response (rate limited)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


__all__ = ["EmulatorApp", "parse_datetime"]
