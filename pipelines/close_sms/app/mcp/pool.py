"""The server's worker processes: a warm one reused between calls, killed at the deadline.

A call takes an idle worker (or starts one), sends its request and waits for the answer until
its deadline; past it the worker is killed, which stops the query and lets go of the file at
once, and a replacement starts warming up straight away.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .worker import Limits

# Calls answered at the same time; more wait for a worker, their wait counting to their deadline.
MAX_WORKERS = 2
# Idle workers kept warm; a second one that frees up is stopped, to keep memory small.
IDLE_WORKERS = 1
STOP_WAIT_SECONDS = 2.0


class WorkerTimeout(Exception):
    """The deadline passed: the worker was killed."""


class WorkerStopped(Exception):
    """The worker ended without answering (out of memory, most likely)."""


def worker_command(database: Path, limits: Limits) -> list[str]:
    """How to start a worker: isolated mode (-I), so no environment variable, user site or
    current folder reaches its imports."""
    return [
        sys.executable,
        "-I",
        "-m",
        "close_sms.app.mcp.worker",
        str(database),
        json.dumps(asdict(limits)),
    ]


class Worker:
    """One worker process and its pipes."""

    def __init__(self, command: list[str]) -> None:
        # No environment at all: no variable of the server's (an API key) reaches a query.
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={}
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The answer to `request`; raises `WorkerTimeout` (the worker killed) after `timeout`."""
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            self.process.kill()

        timer = threading.Timer(max(timeout, 0.0), kill)
        # A server that stops does not wait for the timers of calls it abandons.
        timer.daemon = True
        timer.start()
        try:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except OSError:
            # The worker died, or was killed, before it read the request.
            line = b""
        finally:
            timer.cancel()
        if line:
            return json.loads(line)
        if killed.is_set():
            raise WorkerTimeout
        raise WorkerStopped(f"exit status {self.process.wait()}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._close_pipes()

    def stop(self) -> None:
        """Close its stdin, so it ends; kill it if it does not end soon (a query still running)."""
        self._close_pipes()
        try:
            self.process.wait(STOP_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            # A pipe whose worker died with unread input fails to flush.
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class WorkerPool:
    """Workers for one server: up to `MAX_WORKERS` at once, one kept warm between calls."""

    def __init__(self, command: list[str]) -> None:
        self._command = command
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_WORKERS)
        self._busy: set[Worker] = set()
        self._idle: list[Worker] = []
        self._closed = False

    def start(self) -> None:
        """Start one worker now, so that the first call finds it warm."""
        with self._lock:
            self._idle.append(Worker(self._command))

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """A worker's answer to `request` within `timeout` seconds, waiting for a free one included.

        Raises `WorkerTimeout` or `WorkerStopped`; either way the worker is replaced.
        """
        deadline = time.monotonic() + timeout
        if not self._slots.acquire(timeout=timeout):
            raise WorkerTimeout
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout
            worker = self._take()
            try:
                answer = worker.ask(request, left)
            except BaseException:
                worker.kill()
                self._retire(worker, killed=True)
                raise
            self._retire(worker, killed=False)
            return answer
        finally:
            self._slots.release()

    def close(self) -> None:
        """Stop every worker, busy ones too; none starts after this."""
        with self._lock:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle, self._busy = [], set()
        for worker in workers:
            worker.kill()

    def _take(self) -> Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    self._busy.add(worker)
                    return worker
                worker.kill()
            worker = Worker(self._command)
            self._busy.add(worker)
            return worker

    def _retire(self, worker: Worker, killed: bool) -> None:
        """`worker`'s call is over: it waits for the next one, or a fresh one if it was killed,
        so the next call finds a warm worker; one more idle worker than needed is stopped."""
        with self._lock:
            self._busy.discard(worker)
            if not self._closed and len(self._idle) < IDLE_WORKERS:
                self._idle.append(Worker(self._command) if killed else worker)
                return
        if not killed:
            worker.stop()
