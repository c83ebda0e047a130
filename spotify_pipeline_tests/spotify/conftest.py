from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import responses


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """Mocked HTTP: any request without a registered response fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL nothing listens on (port 1 on loopback refuses connections at once)."""
    return "redis://127.0.0.1:1/0"
