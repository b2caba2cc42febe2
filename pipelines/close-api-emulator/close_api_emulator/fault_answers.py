"""The answers of injected faults (faults.py): some replace the request's answer before it is
handled, others spoil the answer after."""

from __future__ import annotations

import threading

from werkzeug.wrappers import Response

from .config import EmulatorConfig
from .faults import Fault
from .http_common import json_response, rate_headers
from .ratelimit import RateDecision, legacy_body

HANG_DEFAULT_SECONDS = 120.0


def early_fault(fault: Fault, config: EmulatorConfig, stopping: threading.Event) -> Response | None:
    """The answer of a fault that comes before handling (an error status, a hang), or None
    to handle the request (after a slow fault's wait, or for a fault that spoils the answer)."""
    kind = fault.kind
    if kind in ("502", "503", "504"):
        # A real 504 from Close had an empty body with a JSON content type.
        return Response(b"", status=int(kind), content_type="application/json")
    if kind == "400":
        # What Close's framework answers a query it will not run, e.g. a filter combination.
        return json_response(400, {"error": "Unsupported combination of filters."})
    if kind == "403":
        # Close's framework answers a permission it does not grant this key with a 403.
        return json_response(403, {"error": "You don't have permission to do that."})
    if kind == "429":
        reset = float(fault.params.get("reset", 1.0))
        decision = RateDecision(False, int(config.bucket_size or 1), 0, reset)
        response = json_response(429, legacy_body(decision, "fault"))
        response.headers.update(rate_headers(decision, config))
        return response
    if kind == "slow":
        stopping.wait(float(fault.params.get("seconds", 2.0)))
    elif kind == "hang" and stopping.wait(float(fault.params.get("seconds", HANG_DEFAULT_SECONDS))):
        return Response(b"", status=503, content_type="application/json")
    return None


def late_fault(fault: Fault, response: Response) -> Response:
    """The handled answer, spoilt by a fault that spoils answers: HTML, malformed JSON, a
    truncated body, or a connection dropped half way."""
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
