"""No module under pipelines/ over 600 lines and no function over 100: units stay readable."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 100
SOURCES = sorted(PIPELINES.rglob("*.py"))


def test_the_check_sees_both_packages():
    packages = {path.relative_to(PIPELINES).parts[0] for path in SOURCES}
    assert {"close_sms", "close-api-emulator"} <= packages


def test_no_file_is_over_the_limit():
    too_long = {
        str(path.relative_to(PIPELINES)): lines
        for path in SOURCES
        if (lines := len(path.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert too_long == {}


def test_no_function_is_over_the_limit():
    too_long = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long[f"{path.relative_to(PIPELINES)}:{node.name}"] = lines
    assert too_long == {}
