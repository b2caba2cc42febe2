"""A local Close CRM API emulator: a real HTTP server that behaves like Close for SMS.

Tests, benchmarks and the demo run against it; see `EmulatorConfig` for the behaviour switches.
"""

from __future__ import annotations

from .auth import DEMO_API_KEY, NON_ADMIN_API_KEY, ORG_ID, OTHER_ORG_API_KEY, OTHER_ORG_ID
from .clock import Clock
from .config import EmulatorConfig
from .emulator import Emulator, RequestRecord, Stats
from .faults import FAULT_KINDS
from .server import EmulatorServer, serve
from .webhook_delivery import DeliveryRecord, signature

__all__ = [
    "DEMO_API_KEY",
    "FAULT_KINDS",
    "NON_ADMIN_API_KEY",
    "ORG_ID",
    "OTHER_ORG_API_KEY",
    "OTHER_ORG_ID",
    "Clock",
    "DeliveryRecord",
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "RequestRecord",
    "Stats",
    "serve",
    "signature",
]
