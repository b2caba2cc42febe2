"""Test hooks for bad-input testing: raw field overrides of one SMS, and extra API keys.

Kept apart from the faithful emulation: nothing here runs unless a test asks for it.
"""

from __future__ import annotations

from typing import Any

# An override value that removes the field from the rendered SMS (a "missing field").
MISSING: Any = object()


def apply_raw_overrides(
    rendered: dict[str, Any], overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """`rendered` with `overrides` applied: values replace or add fields, MISSING removes them."""
    if not overrides:
        return rendered
    for name, value in overrides.items():
        if value is MISSING:
            rendered.pop(name, None)
        else:
            rendered[name] = value
    return rendered
