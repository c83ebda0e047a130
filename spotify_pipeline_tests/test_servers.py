"""The test harness itself: when no server answers, it starts throwaway PostgreSQL and Redis servers."""

from __future__ import annotations

import psycopg2
import pytest
import redis

from spotify_pipeline_tests import servers


def test_a_throwaway_postgres_starts_as_an_unprivileged_user_and_answers():
    server = servers.start_throwaway_postgres()
    try:
        conn = psycopg2.connect(servers._libpq_dsn(server.url), connect_timeout=5)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT current_setting('data_directory'), pg_backend_pid() > 0")
            data_directory, alive = cur.fetchone()
        conn.close()
        assert alive and data_directory.startswith(server.directory)
    finally:
        server.stop()
    assert not servers._postgres_answers(server.url)


def test_a_throwaway_redis_starts_and_answers():
    server = servers.start_throwaway_redis()
    try:
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()
    assert not servers._redis_answers(server.url)


def test_when_the_default_server_is_down_the_harness_starts_its_own():
    dead = f"redis://127.0.0.1:{servers.free_port()}/0"
    url, throwaway = servers.resolve_server("UNSET_TEST_REDIS_URL", dead, servers._redis_answers,
                                            servers.start_throwaway_redis)
    try:
        assert throwaway is not None and url != dead and servers._redis_answers(url)
    finally:
        throwaway.stop()


def test_an_explicit_server_that_does_not_answer_fails_loudly(monkeypatch):
    dead = f"redis://127.0.0.1:{servers.free_port()}/0"
    monkeypatch.setenv("SOME_TEST_REDIS_URL", dead)
    with pytest.raises(servers.ServerUnavailable, match="does not answer"):
        servers.resolve_server("SOME_TEST_REDIS_URL", servers.DEFAULT_REDIS_URL, servers._redis_answers,
                               servers.start_throwaway_redis)


def test_missing_server_programs_are_named(monkeypatch):
    monkeypatch.setattr(servers.shutil, "which", lambda name: None)
    monkeypatch.setattr(servers, "_find_postgres_bin", lambda name: None)
    with pytest.raises(servers.ServerUnavailable, match="install PostgreSQL"):
        servers.start_throwaway_postgres()
    with pytest.raises(servers.ServerUnavailable, match="install Redis"):
        servers.start_throwaway_redis()
