"""Faults injected on demand: errors, slowness, hangs and broken bodies."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = frozenset(
    {
        "400",
        "403",
        "429",
        "502",
        "503",
        "504",
        "slow",
        "hang",
        "drop",
        "truncate",
        "malformed",
        "html200",
    }
)


@dataclass
class Fault:
    """One armed fault: fires on the next `times` matching requests."""

    kind: str
    times: int
    path_prefix: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # Only requests of this HTTP method, when set (a POST beside the GETs of one path).
    method: str | None = None

    def matches(self, path: str, method: str | None = None) -> bool:
        """Whether this fault applies to a request path (with or without /api/v1)."""
        if self.method is not None and method != self.method:
            return False
        if self.path_prefix is None:
            return True
        short = path[len("/api/v1") :] if path.startswith("/api/v1") else path
        return path.startswith(self.path_prefix) or short.startswith(self.path_prefix)


class FaultInjector:
    """Thread-safe queue of faults; the app takes the first matching one per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.injected: Counter[str] = Counter()

    def add(
        self,
        kind: str,
        times: int = 1,
        path_prefix: str | None = None,
        method: str | None = None,
        **params: Any,
    ) -> None:
        """Arm `kind` for the next `times` requests whose path starts with `path_prefix` (and
        whose method is `method`, when given).

        Params: slow/hang take `seconds`; 429 takes `reset` (seconds).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose from {sorted(FAULT_KINDS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(Fault(kind, times, path_prefix, dict(params), method))

    def clear(self) -> None:
        """Disarm every pending fault."""
        with self._lock:
            self._faults.clear()

    def take(self, path: str, method: str | None = None) -> Fault | None:
        """Consume one shot of the first fault matching `path` and `method`."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(path, method):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    self.injected[fault.kind] += 1
                    return fault
        return None
