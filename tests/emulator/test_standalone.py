"""The emulator is a distribution of its own: it imports nothing from close_sms, and its
command runs from its own folder."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

DISTRIBUTION = Path(__file__).resolve().parents[2] / "pipelines" / "close-api-emulator"
MODULES = sorted((DISTRIBUTION / "close_api_emulator").rglob("*.py"))


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an `import` or `from ... import` names, wherever it stands."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append(node.args[0].value)
    return names


def test_the_package_has_modules():
    assert len(MODULES) > 10, MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_module_imports_close_sms(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    offending = [name for name in _imported_modules(tree) if name.split(".")[0] == "close_sms"]
    assert offending == [], f"{path.name} imports {offending}"


def test_the_check_sees_imports_inside_functions():
    tree = ast.parse(
        "def f():\n"
        "    import close_sms.settings\n"
        "    from close_sms.source import close_sms_source\n"
        "    return importlib.import_module('close_sms.errors')\n"
    )
    assert set(_imported_modules(tree)) == {
        "close_sms.settings",
        "close_sms.source",
        "close_sms.errors",
    }


def test_module_help_names_port():
    # From the distribution's own folder, so the source tree's package is the one run.
    result = subprocess.run(
        [sys.executable, "-m", "close_api_emulator", "--help"],
        cwd=DISTRIBUTION,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout
