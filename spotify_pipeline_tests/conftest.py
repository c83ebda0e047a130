from __future__ import annotations

import datetime as dt
import itertools
import os

# The daily partitions start at the deployment's first capture day, read when the definitions are imported;
# the suite runs as a deployment that has been capturing for a month (tests that need "yesterday" find it).
os.environ.setdefault(
    "SPOTIFY_FIRST_CAPTURE_DATE", (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=30)).isoformat()
)
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from spotify_pipeline.emulator.local import stop_emulator
from spotify_pipeline.local_env import ENV_FILE_NAME, read_env_file
from spotify_pipeline.settings import Settings
from spotify_pipeline_tests import servers

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


@dataclass(frozen=True)
class LocalProject:
    """A folder set up as a user's checkout: settings pointing into it, `.env` written there by the code under test."""

    directory: Path
    settings: Settings

    @property
    def env_file(self) -> dict[str, str]:
        return read_env_file(self.directory / ENV_FILE_NAME)


@pytest.fixture
def local_project(tmp_path: Path) -> Iterator[LocalProject]:
    """A project folder for the local profile. The code under test may export the profile into this process's
    environment (the demo does, for the processes it starts): the environment is restored afterwards, and the
    background emulator the profile started is stopped."""
    directory = tmp_path / "project"
    directory.mkdir()
    settings = replace(
        Settings(),
        database_url=f"sqlite:///{directory / '.data' / 'warehouse.db'}",
        dagster_home=str(directory / ".dagster"),
        spotify_cache_path=str(directory / ".data" / "spotify_cache.db"),
        spotify_token_key_file=str(directory / ".data" / "token.key"),
    )
    (directory / ".data").mkdir()
    saved = dict(os.environ)
    project = LocalProject(directory, settings)
    try:
        yield project
    finally:
        os.environ.clear()
        os.environ.update(saved)
        base_url = project.env_file.get("SPOTIFY_API_BASE_URL")
        if base_url:
            stop_emulator(base_url)
