"""A threaded waitress server around an Emulator, and the blocking `serve()` for the CLI."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from functools import partial
from typing import Any

from waitress import create_server
from waitress.server import BaseWSGIServer
from waitress.wasyncore import close_all

from .app import EmulatorApp
from .auth import DEMO_API_KEY
from .config import EmulatorConfig
from .emulator import Emulator

SERVER_NAME = "close-sms-emulator"
# More request threads than the sync's 8 workers, so latency and slow faults never queue.
REQUEST_THREADS = 16
STOP_TIMEOUT_SECONDS = 5.0
# The request log keeps werkzeug's logger name and line format (it served before waitress).
_request_log = logging.getLogger("werkzeug")


def _wsgi(app: EmulatorApp, emulator: Emulator, quiet: bool) -> Callable[..., Iterable[bytes]]:
    """The app with a Date from the emulator clock and, unless quiet, a request-line log."""

    def dated(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if not quiet:
                # Request lines only: never headers, which carry the API key.
                query = environ.get("QUERY_STRING")
                target = environ["PATH_INFO"] + (f"?{query}" if query else "")
                _request_log.info(
                    '%s - - "%s %s %s" %s',
                    environ.get("REMOTE_ADDR", "-"),
                    environ["REQUEST_METHOD"],
                    target,
                    environ["SERVER_PROTOCOL"],
                    status.split(None, 1)[0],
                )
            # The Date header is the client's view of "server now", so time travel shows.
            date = ("Date", formatdate(emulator.clock.time(), usegmt=True))
            return start_response(status, [*headers, date], *exc_info)

        return app(environ, start)

    return dated


class EmulatorServer:
    """Serves an Emulator on host:port from a background thread (port 0 = ephemeral).

    HTTP/1.1 with keep-alive: each client session reuses its connection, as the sync's do.
    """

    def __init__(
        self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0, quiet: bool = True
    ) -> None:
        self.emulator = emulator
        self.host = host
        self.app = EmulatorApp(emulator)
        # The sockets the server's loop polls: its listener and its open connections.
        self._sockets: dict[int, Any] = {}
        self._server: BaseWSGIServer = create_server(
            _wsgi(self.app, emulator, quiet),
            map=self._sockets,
            host=host,
            port=port,
            threads=REQUEST_THREADS,
            ident=SERVER_NAME,
        )
        self.port: int = self._server.effective_port
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """E.g. http://127.0.0.1:8765/api/v1"""
        return f"http://{self.host}:{self.port}/api/v1"

    def start(self) -> EmulatorServer:
        """Start serving in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.run, name=f"close-emulator-{self.port}", daemon=True
            )
            self._thread.start()
            self.emulator.webhook_worker.start()
        return self

    def stop(self) -> None:
        """Stop promptly: injected hangs are released, the listener and open connections closed."""
        self.app.stopping.set()
        if self._thread is not None:
            self.emulator.webhook_worker.stop()
        # Request threads first, so that none writes to a connection closed under it.
        self._server.task_dispatcher.shutdown(timeout=STOP_TIMEOUT_SECONDS)
        if self._thread is None:
            close_all(self._sockets)
            return
        # The loop's own thread closes the sockets it polls; the trigger wakes it for that.
        self._server.trigger.pull_trigger(partial(close_all, self._sockets))
        self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(
    port: int = 8765,
    sms: int = 10_000,
    seed: int = 7,
    rps: float | None = 20.0,
    latency_ms: int = 0,
    host: str = "127.0.0.1",
    **config: Any,
) -> None:
    """Generate an account, serve it until Ctrl-C, print the base URL and the demo key."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    emulator = Emulator(EmulatorConfig(rps=rps, latency_ms=latency_ms, **config))
    started = time.monotonic()
    emulator.generate(n=sms, seed=seed)
    took = time.monotonic() - started
    server = EmulatorServer(emulator, host=host, port=port, quiet=False).start()
    limit = f"{rps:g} req/s per key" if rps else "off"
    print(f"Close API emulator: {sms:,} SMS (seed {seed}) generated in {took:.1f}s", flush=True)
    print(f"Base URL:  {server.base_url}", flush=True)
    print(f"API key:   {DEMO_API_KEY}   (rate limit {limit})", flush=True)
    print(
        f"Try:       curl -u {DEMO_API_KEY}: '{server.base_url}/activity/sms/?_limit=2'", flush=True
    )
    print("Press Ctrl-C to stop.", flush=True)
    if threading.current_thread() is threading.main_thread():
        # A parent shell may start us with SIGINT ignored; Ctrl-C and SIGTERM must still stop.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("Stopping emulator...", flush=True)
    finally:
        server.stop()
