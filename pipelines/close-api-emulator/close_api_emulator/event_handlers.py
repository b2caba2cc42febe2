"""/event/ and /event/{id}/: the event log, paged by cursor, with Close's filter rules."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from .auth import Principal
from .errors import NotFound
from .events import ALLOWED_COMBINATIONS, FILTER_NAMES, CursorError
from .http_common import (
    DATE_OPS,
    NOT_ALLOWED_MESSAGE,
    HandlerBase,
    Route,
    error,
    json_response,
    project,
    split,
)

EVENT_MAX_LIMIT = 50
_EVENT_PARAMS = frozenset(
    {"_limit", "_cursor", "_skip", "_fields", *FILTER_NAMES}
    | {f"date_updated__{op}" for op in DATE_OPS}
)


class EventHandlers(HandlerBase):
    """The event log."""

    def routes(self) -> list[Route]:
        return [
            Route("/event/", "event_list", ("GET", "POST"), "event", self.event_list),
            Route("/event/<event_id>/", "event_item", ("GET",), "event", self.event_item),
        ]

    def event_list(
        self, request: Request, method: str, params: dict[str, str], principal: Principal
    ) -> Response:
        """A page of events, newest first, with cursors to the next and previous pages."""
        if method != "GET":
            raise error(405, NOT_ALLOWED_MESSAGE)
        self.check_unknown(params, _EVENT_PARAMS)
        if "_skip" in params:
            raise error(400, "The event log does not support _skip; paginate with _cursor.")
        limit = min(self.int_param(params, "_limit", EVENT_MAX_LIMIT), EVENT_MAX_LIMIT)
        if limit == 0:
            limit = EVENT_MAX_LIMIT
        filters = {name: params[name] for name in FILTER_NAMES if params.get(name)}
        if frozenset(filters) not in ALLOWED_COMBINATIONS:
            raise error(
                400,
                "Unsupported combination of filters: "
                f"{', '.join(sorted(filters))}. See the list of supported combinations.",
            )
        # Checked as asked, then not applied: the answer looks unfiltered by them.
        ignored = self.config.ignored_event_filters
        filters = {name: value for name, value in filters.items() if name not in ignored}
        params = {name: value for name, value in params.items() if name not in ignored}
        # Close honours date_updated to the millisecond (Singer observed sub-second precision).
        bounds = self.date_bounds(params, "date_updated", request, "millisecond")
        with self.emu.lock:
            store = self.store(principal)
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
                raise error(400, str(exc)) from None
            hide_before = self._hide_before(principal)
            data = [
                store.events.render(e, store.render, e.date_created < hide_before)
                for e in page.events
            ]
        data = project(data, split(params.get("_fields")))
        return json_response(
            200,
            {
                "data": data,
                "cursor_next": page.cursor_next,
                "cursor_previous": page.cursor_previous,
            },
        )

    def event_item(
        self,
        request: Request,
        method: str,
        params: dict[str, str],
        principal: Principal,
        event_id: str,
    ) -> Response:
        """One event, unless it fell out of retention."""
        with self.emu.lock:
            store = self.store(principal)
            event = store.events.get(event_id, store.horizon_ms())
            if event is None:
                raise NotFound("Event")
            hide = event.date_created < self._hide_before(principal)
            return json_response(200, store.events.render(event, store.render, hide))

    def _hide_before(self, principal: Principal) -> int:
        """Events created before this instant show non-admin keys no data."""
        if principal.is_admin:
            return -(1 << 62)
        return self.emu.clock.now_ms() - self.config.nonadmin_data_hidden_after_seconds * 1000
