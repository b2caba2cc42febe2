"""close-sms: Close CRM SMS activities, loaded incrementally into any dlt destination.

`from close_sms import close_sms_source` gives the dlt source; the rest of the package is the
`close-sms` command (`app`), and the warehouse it loads (`warehouse`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SyncProgress", "backfill_in_progress", "close_sms_source"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `import close_sms` alone does not load dlt.
    if name in __all__:
        from . import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
