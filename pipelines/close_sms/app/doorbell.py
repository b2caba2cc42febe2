"""Close's webhooks as a doorbell for `close-sms follow`: a delivery that verifies starts a cycle.

A delivery is never loaded as data: the cycle reads the event log and the SMS, as every sync
does, so a lost, forged or late delivery costs nothing but time. Close signs each delivery with
`close-sig-hash`, the hex HMAC-SHA256 of `close-sig-timestamp` followed by the raw body, keyed
with the subscription's hex `signature_key`.

Served by the standard library's HTTP server, so that the bare install needs no web framework;
the docs put it behind a TLS reverse proxy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import ConfigError, wait_heeding_signals, where_to_set

PATH = "/webhooks/close"
# Close documents no tolerance; receivers use 5 minutes, which bounds a replayed delivery.
TIMESTAMP_TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 1_000_000
# An oversized body up to this size is read and dropped, so its sender gets the 400; beyond it
# the connection is closed unread.
DRAINED_BYTES = 4_000_000
# Connections waiting to be accepted: a burst of deliveries opens many at once.
LISTEN_BACKLOG = 128
# A client that sends less than it announced is dropped after this long.
READ_TIMEOUT_SECONDS = 10
DEFAULT_HOST = "127.0.0.1"


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` or a bare port (then loopback) as (host, port), port 0 any free one; raises
    `ConfigError`."""
    text = value.strip()
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(
            f"setting webhook_listen = {value!r} is not host:port or a port "
            f"({where_to_set('webhook_listen')})"
        )
    return host, int(port)


def signature_key_bytes(value: str) -> bytes:
    """The subscription's hex `signature_key` as bytes; raises `ConfigError` (without it)."""
    try:
        key = bytes.fromhex(value.strip())
    except ValueError:
        key = b""
    if not key:
        raise ConfigError(
            "setting webhook_signature_key is not the hex key Close returned for the "
            f"subscription ({where_to_set('webhook_signature_key', secret=True)})"
        )
    return key


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    """Close's `close-sig-hash` of a delivery."""
    return hmac.new(key, timestamp.encode() + body, hashlib.sha256).hexdigest()


class Doorbell:
    """A listener for Close's webhooks that rings once for any number of verified deliveries."""

    def __init__(self, listen: str, key: bytes) -> None:
        self._key = key
        self._rung = threading.Event()
        self._count_lock = threading.Lock()
        self.accepted = 0
        self.refused = 0
        self._server = _Server(parse_listen(listen), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="close-sms-doorbell", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{PATH}"

    def start(self) -> Doorbell:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread.ident is not None:
            self._thread.join()

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a ring; True (and reset) if it rang."""
        rang = wait_heeding_signals(self._rung, timeout)
        self._rung.clear()
        return rang

    def count(self, accepted: bool) -> None:
        with self._count_lock:
            if accepted:
                self.accepted += 1
            else:
                self.refused += 1

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[HTTPStatus, str]:
        """The answer to one delivery, and a ring when it verifies."""
        given = headers.get("close-sig-hash", "")
        stamp = headers.get("close-sig-timestamp", "")
        expected = signature(self._key, stamp, body)
        # Constant-time, so the answer's timing tells nothing of the expected hash; as bytes, as
        # a header may carry any character.
        given_bytes = given.strip().lower().encode("utf-8", "replace")
        if not given or not hmac.compare_digest(expected.encode(), given_bytes):
            return HTTPStatus.UNAUTHORIZED, "signature does not verify"
        try:
            skew = abs(time.time() - int(stamp))
        except ValueError:
            return HTTPStatus.BAD_REQUEST, "close-sig-timestamp is not a number of seconds"
        if skew > TIMESTAMP_TOLERANCE_SECONDS:
            return HTTPStatus.BAD_REQUEST, "close-sig-timestamp is more than 5 minutes off"
        try:
            json.loads(body)
        except (ValueError, RecursionError):
            return HTTPStatus.BAD_REQUEST, "the body is not JSON"
        self._rung.set()
        return HTTPStatus.OK, "ok"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that stalls or hangs up is dropped without a traceback on stderr.
        return


def _handler(doorbell: Doorbell) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT_SECONDS
        server_version = "close-sms"
        sys_version = ""

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != PATH:
                self._reply(HTTPStatus.NOT_FOUND, "not found")
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                self.close_connection = True
                remaining = min(max(length, 0), DRAINED_BYTES)
                while remaining > 0:
                    chunk = self.rfile.read(min(65_536, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                self._reply(HTTPStatus.BAD_REQUEST, "the body is over 1 MB or has no length")
                return
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, message = doorbell.answer(headers, body)
            self._reply(status, message)

        def do_GET(self) -> None:
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, "POST Close's webhook deliveries here")

        def _reply(self, status: HTTPStatus, message: str) -> None:
            doorbell.count(status is HTTPStatus.OK)
            data = json.dumps({"detail": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            # Silent: a request line may carry anything a stranger sends.
            return

    return Handler
