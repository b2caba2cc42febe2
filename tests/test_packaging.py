"""The distributions: a bare install of close-sms is the dlt source alone; the emulator is a
distribution of its own that `[emulator]` (and so `[cli]`) brings."""

from __future__ import annotations

import importlib
from pathlib import Path

import tomlkit
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EMULATOR = ROOT / "pipelines" / "close-api-emulator"


def _project(folder: Path) -> dict:
    return tomlkit.parse((folder / "pyproject.toml").read_text()).unwrap()["project"]


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(text).name for text in requirements}


def test_a_bare_install_brings_neither_the_emulator_nor_its_server():
    bare = _names(_project(ROOT)["dependencies"])
    assert not {"close-api-emulator", "werkzeug", "waitress", "plotly", "rich"} & bare


def test_the_emulator_extra_names_the_distribution_in_this_repository_and_cli_includes_it():
    extras = _project(ROOT)["optional-dependencies"]
    (emulator,) = map(Requirement, extras["emulator"])
    assert emulator.name == "close-api-emulator"
    assert emulator.url is not None and emulator.url.endswith("/pipelines/close-api-emulator")
    assert "close-sms[emulator]" in extras["cli"]


def test_the_emulator_distribution_has_its_command_and_its_own_dependencies_only():
    project = _project(EMULATOR)
    assert _names(project["dependencies"]) == {"werkzeug", "waitress"}
    module, function = project["scripts"]["close-api-emulator"].split(":")
    assert callable(getattr(importlib.import_module(module), function))
