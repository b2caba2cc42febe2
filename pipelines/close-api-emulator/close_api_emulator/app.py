"""The WSGI application: routing, auth, rate limits, faults and Close's error answers.

The resources themselves are answered by the handler groups: sms_handlers.py (SMS and the
generic /activity/), event_handlers.py (the event log), context_handlers.py (the objects
SMS point to, lead merges, /me/) and webhook_handlers.py (webhook subscriptions).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from .auth import FORBIDDEN_MESSAGE, UNAUTHORIZED_MESSAGE, Principal, authenticate
from .context_handlers import ContextHandlers
from .crm import InvalidUpdate, UnknownObject
from .emulator import Emulator, RequestRecord
from .errors import DELETED_MID_QUERY_MESSAGE, DeletedInPage, Forbidden, NotFound, ValidationError
from .event_handlers import EventHandlers
from .fault_answers import early_fault, late_fault
from .faults import Fault
from .http_common import (
    API,
    NOT_ALLOWED_MESSAGE,
    ApiError,
    error,
    json_body,
    json_response,
    params_from_body,
    rate_headers,
)
from .ratelimit import RateDecision, RateLimiter, WindowRateLimiter, legacy_body
from .sms_handlers import SmsHandlers
from .webhook_handlers import WebhookHandlers

METHOD_OVERRIDE_REFUSED_MESSAGE = (
    "The x-http-method-override header is not supported for this endpoint."
)
# What answers say when rate limiting is off: a budget no client reaches.
UNLIMITED = RateDecision(allowed=True, limit=1_000_000, remaining=999_999, reset=1.0)


class _Done(Exception):
    """Short-circuit with a ready response (rate limited)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


class EmulatorApp:
    """WSGI callable serving one Emulator under /api/v1/."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self.config = emulator.config
        # Set on server shutdown so that injected hangs end at once.
        self.stopping = threading.Event()
        routes = [
            *SmsHandlers(emulator).routes(),
            *EventHandlers(emulator).routes(),
            *ContextHandlers(emulator).routes(),
            *WebhookHandlers(emulator).routes(),
        ]
        self.url_map = Map(
            [Rule(f"{API}{r.path}", endpoint=r.endpoint, methods=list(r.methods)) for r in routes]
        )
        self._handlers: dict[str, Callable[..., Response]] = {r.endpoint: r.handler for r in routes}
        # The rate-limit group of each endpoint.
        self._groups = {r.endpoint: r.group for r in routes}

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        response, record = self._handle(request)
        self.emu.record(record)
        return response(environ, start_response)

    def _handle(self, request: Request) -> tuple[Response, RequestRecord]:
        params: dict[str, str] = {k: ",".join(request.args.getlist(k)) for k in request.args}
        principal: Principal | None = None
        fault = self.emu.faults.take(request.path, request.method)
        if fault is not None:
            early = early_fault(fault, self.config, self.stopping)
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
                raise error(401, UNAUTHORIZED_MESSAGE)
            method = request.method
            if (
                method == "POST"
                and request.headers.get("x-http-method-override", "").upper() == "GET"
            ):
                params = self._override_params(request, endpoint, params)
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
            response = json_response(exc.status, exc.body)
        except ValidationError as exc:
            response = json_response(400, exc.body())
        except NotFound as exc:
            response = json_response(404, {"error": str(exc)})
        except UnknownObject as exc:
            response = json_response(404, {"error": str(NotFound(exc.model))})
        except InvalidUpdate as exc:
            response = json_response(400, ValidationError(exc.field_errors).body())
        except DeletedInPage:
            response = json_response(404, {"error": DELETED_MID_QUERY_MESSAGE})
        except Forbidden:
            response = json_response(403, {"error": FORBIDDEN_MESSAGE})
        except RequestRedirect as exc:
            response = exc.get_response(request.environ)  # type: ignore[assignment]
        except RouteNotFound:
            response = json_response(
                404, {"error": "The requested URL was not found on the server."}
            )
        except MethodNotAllowed:
            response = json_response(405, {"error": NOT_ALLOWED_MESSAGE})
        except HTTPException as exc:
            response = json_response(exc.code or 500, {"error": exc.description or "error"})
        if decision is not None:
            response.headers.update(rate_headers(decision, self.config))
        if fault is not None:
            response = late_fault(fault, response)
        key_id = principal.key_id if principal else None
        return response, self._record(request, params, response.status_code, key_id, fault)

    def _override_params(
        self, request: Request, endpoint: str, params: dict[str, str]
    ) -> dict[str, str]:
        """The parameters of a POST with `x-http-method-override: GET`: its body's `_params`
        join the query's, unless the switches refuse the override or leave `_params` unread."""
        refused = self.config.refuse_method_override
        if refused is not None and endpoint == "sms_list":
            raise error(refused, METHOD_OVERRIDE_REFUSED_MESSAGE)
        # Unreadable _params: the body is never looked at, the answer is unfiltered.
        if endpoint != "sms_list" or self.config.override_params_readable:
            return {**params, **params_from_body(json_body(request))}
        return params

    def _rate_limit(
        self,
        limiter: RateLimiter | WindowRateLimiter,
        endpoint: str,
        sent_method: str,
        method: str,
        principal: Principal,
    ) -> RateDecision:
        """Count the request in its group; _Done with a 429 when the group has no room."""
        resource = self._groups[endpoint]
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
            response = json_response(429, legacy_body(decision, group))
            response.headers.update(rate_headers(decision, self.config))
            raise _Done(response)
        return decision

    @staticmethod
    def _record(
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


__all__ = ["EmulatorApp"]
