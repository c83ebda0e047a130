from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs

import pytest
import responses

from spotify_pipeline.spotify import FakeClock, InMemoryCache, RedisCache, SpotifyAuthError, SpotifyConfigError
from spotify_pipeline.spotify.auth import ClientCredentialsAuth
from spotify_pipeline.spotify.cache import redis_client

from .helpers import CLIENT_ID, CLIENT_SECRET, TOKEN_URL, add_token


def make_auth(cache, clock=None, **kw) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(CLIENT_ID, CLIENT_SECRET, TOKEN_URL, cache, app_key="app1", clock=clock or FakeClock(), **kw)


def test_fetches_with_client_credentials_grant_and_basic_auth(rsps) -> None:
    add_token(rsps, "tok-A")
    auth = make_auth(InMemoryCache(FakeClock()))
    assert auth.token() == "tok-A"
    (call,) = rsps.calls
    assert parse_qs(call.request.body) == {"grant_type": ["client_credentials"]}
    assert call.request.headers["Authorization"].startswith("Basic ")
    assert CLIENT_SECRET not in (call.request.body or "")


def test_token_is_reused_until_60s_before_expiry(rsps) -> None:
    clock = FakeClock()
    add_token(rsps, "tok-A", expires_in=3600)
    auth = make_auth(InMemoryCache(clock), clock)
    assert auth.token() == "tok-A"
    clock.advance(3600 - 61)
    assert auth.token() == "tok-A"
    assert len(rsps.calls) == 1
    rsps.replace(responses.POST, TOKEN_URL, json={"access_token": "tok-B", "token_type": "Bearer", "expires_in": 3600})
    clock.advance(2)  # now 59 s before expiry: inside the refresh margin
    assert auth.token() == "tok-B"
    assert len(rsps.calls) == 2


def test_token_is_shared_through_the_cache_backend(rsps) -> None:
    clock = FakeClock()
    cache = InMemoryCache(clock)
    add_token(rsps, "tok-shared")
    workers = [make_auth(cache, clock) for _ in range(5)]
    assert {w.token() for w in workers} == {"tok-shared"}
    assert len(rsps.calls) == 1


def test_token_is_shared_between_processes_through_redis(rsps, redis_url, redis_prefix) -> None:
    add_token(rsps, "tok-redis")
    first = make_auth(RedisCache(redis_client(redis_url), redis_prefix))
    second = make_auth(RedisCache(redis_client(redis_url), redis_prefix))  # a separate connection: another worker
    assert first.token() == "tok-redis"
    assert second.token() == "tok-redis"
    assert len(rsps.calls) == 1


def test_concurrent_refreshers_fetch_once(redis_url, redis_prefix) -> None:
    fetched = []

    def slow_token(request):
        time.sleep(0.2)
        fetched.append(1)
        return (200, {}, '{"access_token": "tok-once", "token_type": "Bearer", "expires_in": 3600}')

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, TOKEN_URL, callback=slow_token)
        workers = [make_auth(RedisCache(redis_client(redis_url), redis_prefix)) for _ in range(6)]
        results: list[str] = []
        threads = [threading.Thread(target=lambda w=w: results.append(w.token())) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == ["tok-once"] * 6
    assert len(fetched) == 1


def test_refresh_after_rejection_fetches_a_new_token_once(rsps) -> None:
    clock = FakeClock()
    cache = InMemoryCache(clock)
    add_token(rsps, "tok-old")
    a, b = make_auth(cache, clock), make_auth(cache, clock)
    assert a.token() == b.token() == "tok-old"
    rsps.replace(responses.POST, TOKEN_URL, json={"access_token": "tok-new", "token_type": "Bearer", "expires_in": 3600})
    assert a.refresh("tok-old") == "tok-new"
    # b was rejected with the same old token: it adopts a's new token instead of fetching again
    assert b.refresh("tok-old") == "tok-new"
    assert len(rsps.calls) == 2


def test_token_endpoint_error_is_typed_with_description(rsps) -> None:
    rsps.post(TOKEN_URL, json={"error": "invalid_client", "error_description": "Invalid client secret"}, status=400)
    with pytest.raises(SpotifyAuthError) as err:
        make_auth(InMemoryCache()).token()
    assert err.value.status == 400 and err.value.error == "invalid_client"
    assert "Invalid client secret" in str(err.value)


def test_plain_http_token_url_is_refused_except_on_loopback() -> None:
    with pytest.raises(SpotifyConfigError):
        ClientCredentialsAuth(CLIENT_ID, CLIENT_SECRET, "http://accounts.example.com/api/token", InMemoryCache(), app_key="x")
    ClientCredentialsAuth(CLIENT_ID, CLIENT_SECRET, "http://127.0.0.1:8080/api/token", InMemoryCache(), app_key="x")
