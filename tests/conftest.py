"""Shared fixtures: an in-process Close API emulator on an ephemeral port, PostgreSQL, and
loaders of hand-made rows into DuckDB files and PostgreSQL databases."""

from __future__ import annotations

import os

os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import ExitStack, contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402

from close_api_emulator import (  # noqa: E402
    DEMO_API_KEY,
    Emulator,
    EmulatorConfig,
    EmulatorServer,
)
from tests.postgres import postgres_database  # noqa: E402
from tests.warehouse.views.dataset import DESTINATIONS, Loader  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` run first: under pytest-xdist the long ones then overlap the many
    short ones instead of finishing last, alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@dataclass
class RunningEmulator:
    """A started emulator: its state, server, base URL and the admin key."""

    emu: Emulator
    server: EmulatorServer
    base_url: str
    api_key: str

    def session(self, api_key: str | None = None) -> requests.Session:
        """A requests session authenticated the way Close documents (key as user, no password)."""
        session = requests.Session()
        session.auth = (api_key or self.api_key, "")
        return session

    def get(self, path: str, api_key: str | None = None, **kwargs: Any) -> requests.Response:
        """GET base_url + path with the admin key (or `api_key`)."""
        kwargs.setdefault("timeout", 10)
        return requests.get(self.base_url + path, auth=(api_key or self.api_key, ""), **kwargs)


@contextmanager
def started_emulators() -> Iterator[Callable[..., RunningEmulator]]:
    """Factory of emulators, each stopped when the block ends (see `emulator`)."""
    servers: list[EmulatorServer] = []

    def start(
        sms: int = 500,
        seed: int = 3,
        start: datetime | None = None,
        end: datetime | None = None,
        **config: Any,
    ) -> RunningEmulator:
        emu = Emulator(EmulatorConfig(**config))
        if sms:
            emu.generate(n=sms, seed=seed, start=start, end=end)
        server = EmulatorServer(emu).start()
        servers.append(server)
        return RunningEmulator(emu, server, server.base_url, DEMO_API_KEY)

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def emulator() -> Iterator[Callable[..., RunningEmulator]]:
    """Factory: `emulator(sms=500, seed=3, start=None, end=None, **EmulatorConfig fields)`."""
    with started_emulators() as start:
        yield start


@pytest.fixture(scope="module")
def module_emulator() -> Iterator[Callable[..., RunningEmulator]]:
    """`emulator`, shared by a module's tests: for tests that read Close and never change it."""
    with started_emulators() as start:
        yield start


POSTGRES_ENV = "CLOSE_SMS_TEST_POSTGRES"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The DSN of the real PostgreSQL server `.ci/run` starts (`.ci/postgres start DIR`)."""
    dsn = os.environ.get(POSTGRES_ENV)
    if not dsn:
        pytest.fail(
            f"{POSTGRES_ENV} is not set: run the suite with `bash .ci/run`, or start a server "
            f"with `.ci/postgres start DIR` and export the DSN it prints as {POSTGRES_ENV}"
        )
    return dsn


@pytest.fixture
def postgres(postgres_server: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards; its credentials URL."""
    with postgres_database(postgres_server) as credentials:
        yield credentials


@pytest.fixture(params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The warehouse a sync test loads, once as a DuckDB file and once as a PostgreSQL database."""
    from close_sms.warehouse.destination import Warehouse
    from tests.support import Target

    if request.param == "duckdb":
        return Target.duckdb(tmp_path / "warehouse.duckdb")
    env = {
        "DESTINATION__POSTGRES__CREDENTIALS": request.getfixturevalue("postgres"),
        # dlt's local working folder, a cache of what the database holds.
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Target("postgres", Warehouse.configure("postgres"), ("--destination", "postgres"), env)


@pytest.fixture(scope="module")
def new_loader(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Loader]]:
    """Factory: a loader on a fresh DuckDB file or PostgreSQL database, by destination name.

    Its databases are dropped when the module's tests are done.
    """
    with ExitStack() as databases:

        def make(kind: str) -> Loader:
            workdir = tmp_path_factory.mktemp(kind)
            if kind == "duckdb":
                return Loader.duckdb(workdir)
            server = request.getfixturevalue("postgres_server")
            return Loader.postgres(workdir, databases.enter_context(postgres_database(server)))

        yield make


@pytest.fixture(params=DESTINATIONS)
def loader(request: pytest.FixtureRequest, new_loader: Callable[[str], Loader]) -> Loader:
    """A loader on a fresh database, once per destination."""
    return new_loader(request.param)
