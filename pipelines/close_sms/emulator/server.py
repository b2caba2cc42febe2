"""A threaded werkzeug server around an Emulator, and the blocking `serve()` for the CLI."""

from __future__ import annotations

import logging
import signal
import threading
import time
from email.utils import formatdate
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import EmulatorApp
from .auth import DEMO_API_KEY
from .config import EmulatorConfig
from .emulator import Emulator


def _handler_class(emulator: Emulator, quiet: bool) -> type[WSGIRequestHandler]:
    class Handler(WSGIRequestHandler):
        """Dates from the emulator clock; request lines only (never headers) in the log."""

        server_version = "close-sms-emulator"

        def date_time_string(self, timestamp: float | None = None) -> str:
            # The Date header is the client's view of "server now", so time travel shows.
            return formatdate(emulator.clock.time(), usegmt=True)

        def log(self, type: str, message: str, *args: Any) -> None:
            if quiet and type == "info":
                return
            super().log(type, message, *args)

    return Handler


class EmulatorServer:
    """Serves an Emulator on host:port from a background thread (port 0 = ephemeral)."""

    def __init__(
        self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0, quiet: bool = True
    ) -> None:
        self.emulator = emulator
        self.host = host
        self.app = EmulatorApp(emulator)
        self._server: BaseWSGIServer = make_server(
            host,
            port,
            self.app,
            threaded=True,
            request_handler=_handler_class(emulator, quiet),
        )
        self.port: int = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """E.g. http://127.0.0.1:8765/api/v1"""
        return f"http://{self.host}:{self.port}/api/v1"

    def start(self) -> EmulatorServer:
        """Start serving in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"close-emulator-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: injected hangs are released, the listener closed."""
        self.app.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

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
