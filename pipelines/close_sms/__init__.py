"""close-sms: Close CRM SMS activities, loaded incrementally into any dlt destination.

`from close_sms import close_sms_source` gives the dlt source; the rest of the package is the
`close-sms` command (`app`), the warehouse it loads (`warehouse`) and a Close API emulator.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SyncProgress", "backfill_in_progress", "close_sms_source"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so the emulator and the CLI's help start without loading dlt.
    if name in __all__:
        from . import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
