"""The distributions: a bare install of close-sms is the dlt source alone; the emulator is a
distribution of its own that `[emulator]` (and so `[cli]`) brings."""

from __future__ import annotations

import importlib
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
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


def _cli_dependencies() -> list[str]:
    """What `[cli]` adds besides the emulator, whose wheel is installed beside close-sms's."""
    return [r for r in _project(ROOT)["optional-dependencies"]["cli"] if "close-sms[" not in r]


# Where the fresh venv imports close-sms and the emulator from.
WHERE_FROM = (
    "import close_sms, close_api_emulator; print(close_sms.__file__, close_api_emulator.__file__)"
)


@pytest.mark.slow
def test_the_wheels_install_into_a_fresh_venv_and_run_the_demo_outside_the_checkout(tmp_path):
    # As docs/configuration.md#installing says: a wheel of each distribution, installed together.
    dist, run = tmp_path / "dist", tmp_path / "run"
    run.mkdir()
    pip_quiet = ["--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *pip_quiet, "--no-deps", "-w", str(dist)]
        + [str(ROOT), str(EMULATOR)],
        check=True,
        capture_output=True,
    )
    wheels = sorted(str(wheel) for wheel in dist.glob("*.whl"))
    assert [Path(wheel).name.split("-")[0] for wheel in wheels] == [
        "close_api_emulator",
        "close_sms",
    ]
    # Every file the commands need is in the wheel: the views' SQL among them.
    with zipfile.ZipFile(wheels[1]) as wheel:
        sql = {name for name in wheel.namelist() if name.startswith("close_sms/sql/")}
    assert {f"close_sms/sql/{path.name}" for path in (ROOT / "sql").iterdir()} <= sql
    # What the wheel requires (extras aside) is what this environment, which pip resolved from
    # the same pyproject, has installed: the fresh venv borrows these dependencies rather than
    # installing dlt, pyarrow and their kin again (a minute of CI), and gets the wheels alone.
    with zipfile.ZipFile(wheels[1]) as wheel:
        metadata = wheel.read("close_sms-0.1.0.dist-info/METADATA").decode()
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            required = Requirement(line.removeprefix("Requires-Dist:").strip())
            assert required.specifier.contains(version(required.name), prereleases=True), line
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    # A path line only: the .pth files of this environment (its editable close-sms among them)
    # are not read, so close_sms and close_api_emulator can come from the wheels alone.
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the borrowed environment holds an emulator that pip would keep.
    install = [str(venv / "bin" / "pip"), "install", *pip_quiet, "--no-deps", "--ignore-installed"]
    install += wheels
    subprocess.run(install, check=True, capture_output=True)
    # No path of the checkout: the wheel's code alone, run from another folder.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "RUNTIME__DLTHUB_TELEMETRY": "false"}
    env["HOME"] = str(tmp_path)
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", WHERE_FROM],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(Path(path).is_relative_to(site) for path in found.stdout.split()), found.stdout
    demo = subprocess.run(
        ["close-sms", "demo", "--sms", "200", "--quiet"],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    assert (run / "close_sms_demo.duckdb").stat().st_size > 0
    assert "close-sms report --database close_sms_demo.duckdb" in demo.stdout


def test_the_docs_wheel_install_names_the_rest_of_the_cli_extra():
    docs = (ROOT / "docs" / "configuration.md").read_text()
    (line,) = [line for line in docs.splitlines() if line.startswith("pip install dist/")]
    assert all(f"'{requirement}'" in line for requirement in _cli_dependencies())
