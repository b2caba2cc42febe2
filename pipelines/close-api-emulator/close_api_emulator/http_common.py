"""What every HTTP handler shares: routes, JSON in and out, error answers, query parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from .auth import Principal
from .config import EmulatorConfig
from .emulator import Emulator
from .lifecycle import RequestContext
from .ratelimit import RateDecision
from .store import SmsStore
from .timefmt import dt_to_ms, parse_datetime

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
DATE_OPS = ("gt", "gte", "lt", "lte")
NOT_ALLOWED_MESSAGE = "The method is not allowed for the requested URL."


@dataclass(frozen=True)
class Route:
    """One werkzeug rule under /api/v1, its handler, and its rate-limit group.

    A handler is called as `handler(request, method, params, principal, **rule_arguments)`,
    `method` being GET for a POST with `x-http-method-override: GET`.
    """

    path: str
    endpoint: str
    methods: tuple[str, ...]
    group: str
    handler: Callable[..., Response]


class ApiError(Exception):
    """An error response with a JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def error(status: int, message: str) -> ApiError:
    """An `{"error": message}` answer."""
    return ApiError(status, {"error": message})


def field_error(name: str, message: str) -> ApiError:
    """A 400 naming one field."""
    return ApiError(400, {"errors": [], "field-errors": {name: message}})


def json_response(status: int, body: Any) -> Response:
    """`body` as a JSON answer."""
    return Response(_dumps(body), status=status, content_type="application/json")


def rate_headers(decision: RateDecision, config: EmulatorConfig) -> dict[str, str]:
    """The configured rate-limit headers; a 429 always carries retry-after."""
    headers = decision.headers(
        config.ratelimit_header_form,
        config.ratelimit_separator,
        config.ratelimit_reset_rounding,
    )
    if not decision.allowed:
        headers["retry-after"] = str(decision.retry_after)
    return headers


def split(value: str | None) -> list[str] | None:
    """The items of a comma-separated parameter; None when it is absent."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def params_from_body(body: Any) -> dict[str, str]:
    """The `_params` of an `x-http-method-override: GET` body, as query parameters."""
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


def json_body(request: Request) -> Any:
    """The request's JSON body ({} when empty); 400 when it is not JSON."""
    raw = request.get_data()
    if not raw:
        return {}
    try:
        return _loads(raw)
    except ValueError as exc:
        raise ApiError(400, {"errors": ["Invalid JSON body."], "field-errors": {}}) from exc


def project(items: list[dict[str, Any]], fields: list[str] | None) -> list[dict[str, Any]]:
    """Only the `_fields` asked for, in their order."""
    if not fields:
        return items
    return [{name: item[name] for name in fields if name in item} for item in items]


class HandlerBase:
    """The emulator and its settings, and the parameter rules every handler applies."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self.config = emulator.config

    def routes(self) -> list[Route]:
        """The routes this group of handlers answers."""
        raise NotImplementedError

    def store(self, principal: Principal) -> SmsStore:
        """The key's organization store, its due sends done."""
        store = self.emu.store_for(principal)
        store.tick()
        return store

    def ctx(self, request: Request, principal: Principal) -> RequestContext:
        """The request's context, which the events it causes carry."""
        return RequestContext(principal, self.emu.new_request_id(), request.method, request.path)

    def check_unknown(self, params: dict[str, str], known: frozenset[str]) -> None:
        """With `unknown_params="reject"`, 400 for parameters the endpoint does not know."""
        unknown = sorted(name for name in params if name not in known)
        if unknown and self.config.unknown_params == "reject":
            raise ApiError(
                400,
                {"errors": [], "field-errors": dict.fromkeys(unknown, "Unknown parameter.")},
            )

    def int_param(self, params: dict[str, str], name: str, default: int) -> int:
        """A whole number parameter, 0 or more."""
        raw = params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise field_error(name, "Enter a whole number.") from None
        if value < 0:
            raise field_error(name, "Ensure this value is greater than or equal to 0.")
        return value

    def date_bounds(
        self, params: dict[str, str], field: str, request: Request, precision: str
    ) -> dict[str, int]:
        """`field`'s gt/gte/lt/lte filters in epoch ms; naive dates are in x-tz-offset."""
        try:
            tz = float(request.headers.get("x-tz-offset", "0") or 0)
        except ValueError:
            raise error(400, "Invalid x-tz-offset header.") from None
        bounds: dict[str, int] = {}
        for op in DATE_OPS:
            raw = params.get(f"{field}__{op}")
            if raw in (None, ""):
                continue
            try:
                ms = dt_to_ms(parse_datetime(raw, tz))
            except ValueError:
                raise field_error(f"{field}__{op}", "Enter a valid date/time.") from None
            if precision == "second":
                ms -= ms % 1000  # the fraction of the filter value is dropped
            bounds[op] = ms
        return bounds

    def paging(self, params: dict[str, str]) -> tuple[int, int]:
        """_skip and _limit, within the configured maximums."""
        limit = self.int_param(params, "_limit", min(100, self.config.max_limit))
        skip = self.int_param(params, "_skip", 0)
        if limit > self.config.max_limit:
            raise error(
                400,
                "The limit you set is larger than the maximum limit for this resource "
                f"(max_limit = {self.config.max_limit}). Please refine your search query.",
            )
        if skip > self.config.max_skip:
            raise error(
                400,
                "The skip you set is larger than the maximum skip for this resource "
                f"(max_skip = {self.config.max_skip}). Please refine your search query.",
            )
        return skip, limit
