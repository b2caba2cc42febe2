"""/activity/sms/, /activity/sms/{id}/ and the generic /activity/: lists, reads and writes."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from .auth import Principal
from .config import SMS_LIST_FILTERS
from .errors import DELETED_MID_QUERY_MESSAGE, Forbidden, NotFound
from .http_common import (
    DATE_OPS,
    NOT_ALLOWED_MESSAGE,
    HandlerBase,
    Route,
    error,
    field_error,
    json_body,
    json_response,
    project,
    split,
)
from .listing import SmsQuery
from .store import SmsStore

_SMS_PARAMS = frozenset({"_limit", "_skip", "_fields"}) | SMS_LIST_FILTERS
_ACTIVITY_PARAMS = _SMS_PARAMS | {
    "lead_id__in",
    "user_id__in",
    "contact_id__in",
    "_type__in",
    "_order_by",
    "thread_emails",
}
_LEAD_ONLY_PARAMS = ("user_id", "user_id__in", "contact_id", "contact_id__in", "_type", "_type__in")


def _joined(params: dict[str, str], name: str) -> list[str]:
    """The ids of a filter and its `__in` form together."""
    return (split(params.get(name)) or []) + (split(params.get(f"{name}__in")) or [])


def _given(params: dict[str, str], name: str) -> bool:
    """Whether a filter or its `__in` form is given at all."""
    return params.get(name) is not None or params.get(f"{name}__in") is not None


class SmsHandlers(HandlerBase):
    """The SMS resources."""

    def routes(self) -> list[Route]:
        return [
            Route("/activity/sms/", "sms_list", ("GET", "POST"), "activity.sms", self.sms_list),
            Route(
                "/activity/sms/<sms_id>/",
                "sms_item",
                ("GET", "PUT", "DELETE"),
                "activity.sms",
                self.sms_item,
            ),
            Route("/activity/", "activity_list", ("GET", "POST"), "activity", self.activity_list),
        ]

    def sms_list(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        """GET a page of SMS; POST creates one."""
        if method == "POST":
            return self._sms_create(request, principal)
        self.check_unknown(params, _SMS_PARAMS)
        ignored = self.config.ignored_filters
        applied = {name: value for name, value in params.items() if name not in ignored}
        with self.emu.lock:
            store = self.store(principal)
            query = self._build_query(store, applied, request)
            if query is not None and query.skip > 0 and store.take_armed_empty_query():
                raise error(404, DELETED_MID_QUERY_MESSAGE)
            return self._list_response(store, query, params)

    def _sms_create(self, request: Request, principal: Principal) -> Response:
        payload = json_body(request)
        with self.emu.lock:
            store = self.store(principal)
            return json_response(200, store.create(payload, self.ctx(request, principal)))

    def sms_item(
        self,
        request: Request,
        method: str,
        params: dict[str, str],
        principal: Principal,
        sms_id: str,
    ) -> Response:
        """GET, PUT or DELETE one SMS."""
        with self.emu.lock:
            store = self.store(principal)
            if method == "GET":
                row = store.row_of(sms_id)
                if row is None:
                    raise NotFound()
                if row in store.forbidden:
                    raise Forbidden()
                item = project([store.render(row)], split(params.get("_fields")))[0]
                return json_response(200, item)
            if method == "PUT":
                payload = json_body(request)
                ctx = self.ctx(request, principal)
                return json_response(200, store.update(sms_id, payload, ctx))
            store.delete(sms_id, self.ctx(request, principal))
            return json_response(200, {})

    def activity_list(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        """Generic /activity/: SMS only, with its single-lead and _order_by rules."""
        if method != "GET":
            raise error(405, NOT_ALLOWED_MESSAGE)
        self.check_unknown(params, _ACTIVITY_PARAMS)
        single_lead = len(_joined(params, "lead_id")) == 1
        misused = [name for name in _LEAD_ONLY_PARAMS if name in params and not single_lead]
        if misused:
            raise error(
                400,
                f"The following filters can only be used with a single lead_id: {', '.join(misused)}.",
            )
        order_by = params.get("_order_by") or "-date_created"
        field = order_by.lstrip("-")
        if field not in ("date_created", "activity_at"):
            raise field_error(
                "_order_by", "Sorting is only supported by date_created or activity_at."
            )
        if field == "activity_at" and not single_lead:
            raise error(400, "Sorting by activity_at requires a single lead_id.")
        other = "activity_at" if field == "date_created" else "date_created"
        if any(f"{other}__{op}" in params for op in DATE_OPS):
            raise error(
                400,
                f"You can only use the date filters of the field you sort on ({field}); "
                f"add _order_by=-{other} to filter by {other}.",
            )
        with self.emu.lock:
            store = self.store(principal)
            query = self._build_query(store, params, request)
            if query is not None:
                query.order_field = field
                query.descending = order_by.startswith("-")
            return self._list_response(store, query, params)

    def _build_query(
        self, store: SmsStore, params: dict[str, str], request: Request
    ) -> SmsQuery | None:
        """SmsQuery from list params; None when a filter can match nothing."""
        skip, limit = self.paging(params)
        query = SmsQuery(skip=skip, limit=limit)
        precision = self.config.filter_precision
        query.date_created = self.date_bounds(params, "date_created", request, precision)
        query.activity_at = self.date_bounds(params, "activity_at", request, precision)
        org = params.get("organization_id")
        if org and org != store.organization_id:
            return None
        for wanted in (split(params.get("_type")), split(params.get("_type__in"))):
            if wanted is not None and "SMS" not in wanted:
                return None
        ids = split(params.get("id__in"))
        if ids is not None:
            query.rows = [r for r in (store.listed_row_of(i) for i in ids) if r is not None]
        if _given(params, "lead_id"):
            index = store.leads.index
            query.leads = [index[x] for x in _joined(params, "lead_id") if x in index]
        if _given(params, "contact_id"):
            index = store.contacts.index
            query.contacts = [index[x] for x in _joined(params, "contact_id") if x in index]
        if _given(params, "user_id"):
            users = store.user_by_id
            query.users = [users[x] for x in _joined(params, "user_id") if x in users]
        return query

    def _list_response(
        self, store: SmsStore, query: SmsQuery | None, params: dict[str, str]
    ) -> Response:
        """A list page's answer: its SMS rendered, in the configured page order."""
        if query is None:
            return json_response(200, {"data": [], "has_more": False})
        rows, has_more = store.list_rows(query)
        if self.config.page_order == "oldest_first_pages":
            rows = rows[::-1]
        items = [store.render(row) for row in rows]
        items = project(items, split(params.get("_fields")))
        return json_response(200, {"data": items, "has_more": has_more})
