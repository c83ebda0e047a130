from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from spotify_pipeline_tests import servers

pytest_plugins = ["spotify_pipeline.emulator.pytest_plugin"]
_prefix_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def _hermetic_spotify_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test builds from the environment may write the developer's local cache in .data/."""
    monkeypatch.setenv("SPOTIFY_CACHE_PATH", "memory")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a real PostgreSQL server's maintenance database (see `servers` for how it is found)."""
    try:
        url, throwaway = servers.resolve_server(
            "TEST_DATABASE_URL", servers.DEFAULT_POSTGRES_URL, servers._postgres_answers,
            servers.start_throwaway_postgres,
        )
    except servers.ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield url
    if throwaway:
        throwaway.stop()


@pytest.fixture(scope="session")
def postgres_databases(postgres_server_url: str) -> servers.PostgresDatabases:
    return servers.PostgresDatabases(postgres_server_url)


@pytest.fixture
def postgres_url(postgres_databases: servers.PostgresDatabases) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    with postgres_databases.database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty warehouse database; every test using it runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server."""
    try:
        url, throwaway = servers.resolve_server(
            "TEST_REDIS_URL", servers.DEFAULT_REDIS_URL, servers._redis_answers, servers.start_throwaway_redis
        )
    except servers.ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield url
    if throwaway:
        throwaway.stop()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test; every key under it is deleted afterwards."""
    prefix = f"spt:{servers.RUN_ID}:{next(_prefix_counter)}:"
    yield prefix
    servers.delete_redis_prefix(redis_url, prefix)
