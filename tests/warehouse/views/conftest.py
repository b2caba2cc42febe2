"""Fixtures of the view tests: loaders on DuckDB files and PostgreSQL databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.postgres import postgres_database
from tests.warehouse.views.dataset import DESTINATIONS, Loader


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
