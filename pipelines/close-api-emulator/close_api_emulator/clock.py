"""A clock the tests control: real time plus an offset, so advance() moves it forward."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone


class Clock:
    """UTC clock that follows real time shifted by an offset; optionally frozen."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen_at: float | None = None
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def time(self) -> float:
        """Seconds since the epoch, as the emulator sees them."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return time.time() + self._offset

    def now_ms(self) -> int:
        """Milliseconds since the epoch: Close stores millisecond precision."""
        return int(self.time() * 1000)

    def now(self) -> datetime:
        """Current emulator time, tz-aware UTC, truncated to milliseconds."""
        return datetime.fromtimestamp(self.now_ms() / 1000, tz=timezone.utc)

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, if negative) and let the emulator catch up."""
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds
        self._notify()

    def set(self, dt: datetime) -> None:
        """Jump to `dt` (naive values are taken as UTC); the clock keeps running from there."""
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at = dt.timestamp()
            else:
                self._offset = dt.timestamp() - time.time()
        self._notify()

    def freeze(self, dt: datetime | None = None) -> None:
        """Stop the clock (at `dt` or now) so a test sees exactly the times it sets."""
        at = (dt if dt is not None else self.now()).timestamp()
        with self._lock:
            self._frozen_at = at
        self._notify()

    def unfreeze(self) -> None:
        """Resume following real time from the frozen instant."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - time.time()
                self._frozen_at = None

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every jump, so lazy state (outbox sends) is evaluated."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()
