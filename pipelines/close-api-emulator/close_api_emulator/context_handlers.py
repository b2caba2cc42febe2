"""The objects SMS point to over HTTP: users, lead statuses, custom fields, templates, phone
numbers, leads, contacts, lead merges (lists and items, PUT/DELETE of leads and contacts,
POST /lead/merge/), and /me/."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from werkzeug.wrappers import Request, Response

from .auth import Principal
from .config import CONTEXT_LIST_FILTERS
from .errors import Forbidden, ValidationError
from .http_common import (
    NOT_ALLOWED_MESSAGE,
    HandlerBase,
    Route,
    error,
    json_body,
    json_response,
    project,
    split,
)
from .store import SmsStore
from .timefmt import format_ms


def _filters_of(kind: str) -> frozenset[str]:
    """The list filters of a kind of context object, from `CONTEXT_LIST_FILTERS`."""
    return frozenset(
        name.split(".", 1)[1] for name in CONTEXT_LIST_FILTERS if name.startswith(f"{kind}.")
    )


# The context objects' collections: kind -> (path under /api/v1, rate-limit group, filters).
CRM_PATHS: dict[str, tuple[str, str, frozenset[str]]] = {
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
# Fields of the spec's PhoneNumber and of recorded templates, by kind, that the emulator sends
# only with `recorded_context_fields`, derived from the object so that they vary.
_RECORDED_FIELDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "phone_number": lambda number: {
        "press_1_to_accept": number["is_group_number"],
        "was_ported": number["number"].endswith(("0", "2", "4")),
    },
    "sms_template": lambda template: {"owned_by": template["created_by"]},
}
_FAILING_MESSAGES = {
    403: "You don't have permission to do that.",
    500: "An internal error occurred. Our engineers have been notified.",
}


class ContextHandlers(HandlerBase):
    """The context objects, lead merges and the key's own user."""

    def routes(self) -> list[Route]:
        routes = [
            Route("/me/", "me", ("GET",), "me", self.me),
            Route("/lead/merge/", "lead_merge_post", ("POST",), "lead", self.lead_merge_post),
        ]
        # A list and an item route for every kind of context object.
        for kind, (path, group, _) in CRM_PATHS.items():
            list_methods = ("GET", "POST") if kind in _CRM_OVERRIDABLE else ("GET",)
            item_methods = ("GET", "PUT", "DELETE") if kind in _CRM_WRITABLE else ("GET",)
            routes.append(
                Route(path, f"{kind}_list", list_methods, group, partial(self.crm_list, kind=kind))
            )
            routes.append(
                Route(
                    f"{path}<object_id>/",
                    f"{kind}_item",
                    item_methods,
                    group,
                    partial(self.crm_item, kind=kind),
                )
            )
        return routes

    def me(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        """The key's user and organization."""
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
        body = project([body], split(params.get("_fields")))[0]
        return json_response(200, body)

    def crm_list(
        self,
        request: Request,
        method: str,
        params: dict[str, str],
        principal: Principal,
        kind: str,
    ) -> Response:
        """A page of users, statuses, fields, templates, numbers, leads, contacts or merges."""
        if method != "GET":
            raise error(405, NOT_ALLOWED_MESSAGE)
        self._refuse_failing(kind)
        _, _, filter_names = CRM_PATHS[kind]
        self.check_unknown(params, frozenset({"_limit", "_skip", "_fields"}) | filter_names)
        skip, limit = self.paging(params)
        ignored = self.config.ignored_context_filters
        filters = {
            name: split(params[name]) or []
            for name in filter_names
            if name in params and name != "_order_by" and f"{kind}.{name}" not in ignored
        }
        with self.emu.lock:
            store = self.store(principal)
            found = store.crm.select(kind, filters)
            page = found[skip : skip + limit]
            items = [self._rendered(store, kind, obj) for obj in page]
        items = project(items, split(params.get("_fields")))
        return json_response(200, {"data": items, "has_more": len(found) > skip + limit})

    def crm_item(
        self,
        request: Request,
        method: str,
        params: dict[str, str],
        principal: Principal,
        object_id: str,
        kind: str,
    ) -> Response:
        """GET one context object; PUT or DELETE a lead or a contact."""
        if method == "GET" and kind == "lead_status" and self.config.status_item_get_refused:
            raise error(405, NOT_ALLOWED_MESSAGE)
        self._refuse_failing(kind)
        with self.emu.lock:
            store = self.store(principal)
            ctx = self.ctx(request, principal)
            if method == "GET":
                found = store.crm.get(kind, object_id)
                if object_id in store.crm.forbidden:
                    raise Forbidden()
                item = self._rendered(store, kind, found)
                return json_response(200, project([item], split(params.get("_fields")))[0])
            if method == "PUT":
                payload = json_body(request)
                if not isinstance(payload, dict):
                    raise ValidationError({}, ["Invalid JSON body: expected an object."])
                update = store.update_lead if kind == "lead" else store.update_contact
                return json_response(200, update(object_id, payload, ctx))
            if kind == "lead":
                store.delete_lead(object_id, ctx)
            else:
                store.delete_contact(object_id, ctx)
            return json_response(200, {})

    def _refuse_failing(self, kind: str) -> None:
        """Answer every request of a kind `failing_context` names with its failure."""
        if kind in self.config.failing_context:
            status = self.config.failing_context_status
            raise error(status, _FAILING_MESSAGES[status])

    def _rendered(self, store: SmsStore, kind: str, obj: Any) -> dict[str, Any]:
        """`obj` as Close sends it, with the recorded fields when they are switched on."""
        item = store.crm.render(kind, obj)
        recorded = _RECORDED_FIELDS.get(kind) if self.config.recorded_context_fields else None
        return item | recorded(item) if recorded else item

    def lead_merge_post(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        """POST /lead/merge/ with {"source": ..., "destination": ...}."""
        if method != "POST":
            raise error(405, NOT_ALLOWED_MESSAGE)
        payload = json_body(request)
        if not isinstance(payload, dict):
            raise ValidationError({}, ["Invalid JSON body: expected an object."])
        with self.emu.lock:
            store = self.store(principal)
            ctx = self.ctx(request, principal)
            return json_response(
                200, store.merge_leads(payload.get("source"), payload.get("destination"), ctx)
            )
