"""The long randomized run is opt-in: `pytest -m long tests/reliability` (or RELIABILITY_LONG=1)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = "long" in (config.getoption("-m") or "") and "not long" not in config.getoption("-m")
    if asked or os.environ.get("RELIABILITY_LONG") == "1":
        return
    skip = pytest.mark.skip(reason="long run: use `pytest -m long tests/reliability`")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
