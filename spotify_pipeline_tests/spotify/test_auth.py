from __future__ import annotations

import base64
import logging
import os
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses
from oauthlib.oauth2 import BackendApplicationClient
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth2Session

from spotify_pipeline.spotify import FakeClock, InMemoryCache, RedisCache, SpotifyAuthError, SpotifyConfigError
from spotify_pipeline.spotify.auth import ClientCredentialsAuth, TokenEndpoint, oauth_session
from spotify_pipeline.spotify.cache import redis_client
from spotify_pipeline.spotify.errors import SpotifyConnectionError, SpotifyServerError, SpotifyTooManyRequests
from spotify_pipeline.spotify.transport import USER_AGENT, build_session

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


# -- the requests-oauthlib path ----------------------------------------------------------------------------


def basic_credentials(request) -> str:
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode()


def endpoint(client_secret: str | None = CLIENT_SECRET, **kw) -> TokenEndpoint:
    return TokenEndpoint(TOKEN_URL, CLIENT_ID, client_secret, pool=build_session(), timeout=(1.0, 1.0), **kw)


def spy(monkeypatch, cls: type, name: str) -> list[Any]:
    """What each call of ``cls.name`` returned (the calls go through)."""
    returned: list[Any] = []
    original = getattr(cls, name)

    def recording(self, *args, **kwargs):
        returned.append(original(self, *args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(cls, name, recording)
    return returned


def test_client_credentials_are_requested_by_requests_oauthlib(rsps, monkeypatch) -> None:
    bodies = spy(monkeypatch, BackendApplicationClient, "prepare_request_body")
    tokens = spy(monkeypatch, OAuth2Session, "fetch_token")
    add_token(rsps, "tok-oauthlib")

    assert make_auth(InMemoryCache(FakeClock())).token() == "tok-oauthlib"

    assert bodies == ["grant_type=client_credentials"]  # oauthlib's Client Credentials client built the body
    assert [t["access_token"] for t in tokens] == ["tok-oauthlib"]  # requests-oauthlib sent it and read the answer
    (call,) = rsps.calls
    assert basic_credentials(call.request) == f"{CLIENT_ID}:{CLIENT_SECRET}"
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.request.headers["Accept"] == "application/json"


def test_token_requests_go_over_the_clients_pooled_session(rsps) -> None:
    sent: list[str] = []

    class Recording(HTTPAdapter):
        def send(self, request, **kwargs):
            sent.append(request.url)
            return super().send(request, **kwargs)

    session = build_session()
    session.mount("https://", Recording(max_retries=0))
    add_token(rsps, "tok-pooled")
    auth = make_auth(InMemoryCache(FakeClock()), session=session, timeout=(0.5, 0.5))

    assert auth.token() == "tok-pooled"
    assert sent == [TOKEN_URL]
    assert rsps.calls[0].request.headers["User-Agent"] == USER_AGENT


def test_token_requests_are_observed_like_api_requests(rsps) -> None:
    seen: list[tuple[str, int | None]] = []
    add_token(rsps, "tok-A")
    make_auth(InMemoryCache(FakeClock()), observer=lambda ep, latency, status: seen.append((ep, status))).token()
    rsps.replace(responses.POST, TOKEN_URL, body=requests.ConnectionError("refused"))
    failing = make_auth(InMemoryCache(FakeClock()), observer=lambda ep, latency, status: seen.append((ep, status)))
    with pytest.raises(SpotifyConnectionError):
        failing.token()
    assert seen == [("POST /api/token", 200), ("POST /api/token", None)]


@pytest.mark.parametrize(
    "answer, expected, message, status, error",
    [
        ({"status": 401, "json": {"error": "invalid_client", "error_description": "Invalid client"}},
         SpotifyAuthError, "Invalid client", 401, "invalid_client"),
        ({"status": 400, "json": {"error": "invalid_grant"}}, SpotifyAuthError, "invalid_grant", 400, "invalid_grant"),
        ({"status": 400, "json": {"error": {"status": 400, "message": "Only valid bearer authentication supported"}}},
         SpotifyAuthError, "Only valid bearer authentication supported", 400, None),
        ({"status": 403, "body": "<html>Forbidden by proxy</html>"}, SpotifyAuthError, "Forbidden by proxy", 403, None),
        ({"status": 200, "body": "access_token=form-encoded&token_type=bearer"}, SpotifyAuthError,
         "token response is not JSON", 200, None),
        ({"status": 200, "json": {"token_type": "Bearer"}}, SpotifyAuthError, "no access_token", 200, None),
        ({"status": 200, "json": {"access_token": "", "token_type": "Bearer"}}, SpotifyAuthError, "no access_token",
         200, None),
        ({"status": 200, "json": {"access_token": "tok", "expires_in": "soon"}}, SpotifyAuthError, "not usable",
         200, None),
        ({"status": 503, "json": {"error": "server_error"}}, SpotifyServerError, "server_error", 503, None),
    ],
)
def test_token_endpoint_answers_map_to_the_clients_errors(rsps, answer, expected, message, status, error) -> None:
    rsps.post(TOKEN_URL, **answer)
    with pytest.raises(expected, match=message) as info:
        make_auth(InMemoryCache()).token()
    assert info.value.status == status and info.value.endpoint == "POST /api/token"
    if expected is SpotifyAuthError:
        assert info.value.error == error


def test_a_429_on_the_app_token_stays_an_auth_error_but_is_retryable_for_user_tokens(rsps) -> None:
    rsps.post(TOKEN_URL, json={"error": {"status": 429, "message": "API rate limit exceeded"}}, status=429,
              headers={"Retry-After": "7"})
    with pytest.raises(SpotifyAuthError, match="API rate limit exceeded"):
        make_auth(InMemoryCache()).token()
    with pytest.raises(SpotifyTooManyRequests) as info:
        endpoint().refresh_token("refresh-token-1")
    assert info.value.retry_after == 7


@pytest.mark.parametrize(
    "failure, timeout", [(requests.ReadTimeout("slow"), True), (requests.ConnectionError("refused"), False)]
)
def test_no_answer_is_a_connection_error_naming_the_host(rsps, failure, timeout) -> None:
    rsps.post(TOKEN_URL, body=failure)
    with pytest.raises(SpotifyConnectionError, match=r"no answer from Spotify at accounts\.spotify\.test") as info:
        make_auth(InMemoryCache()).token()
    assert info.value.timeout is timeout


def test_authorization_code_exchange_sends_code_verifier_and_basic_auth(rsps) -> None:
    rsps.post(TOKEN_URL, json={"access_token": "user-tok", "token_type": "Bearer", "expires_in": 3600,
                               "refresh_token": "refresh-1", "scope": "user-library-read user-read-email"})
    clock = FakeClock()
    token = endpoint(clock=clock).fetch_token(
        code="the-code", code_verifier="v" * 43, redirect_uri="http://127.0.0.1:8888/callback"
    )
    (call,) = rsps.calls
    assert parse_qs(call.request.body) == {
        "grant_type": ["authorization_code"], "code": ["the-code"], "code_verifier": ["v" * 43],
        "redirect_uri": ["http://127.0.0.1:8888/callback"],
    }
    assert basic_credentials(call.request) == f"{CLIENT_ID}:{CLIENT_SECRET}"
    assert (token.access_token, token.refresh_token, token.expires_in) == ("user-tok", "refresh-1", 3600.0)
    assert token.scope == ("user-library-read", "user-read-email") and token.obtained_at == clock.time()


def test_a_public_client_names_itself_in_the_body_instead_of_basic_auth(rsps) -> None:
    rsps.post(TOKEN_URL, json={"access_token": "user-tok", "token_type": "Bearer", "refresh_token": "refresh-1"})
    public = endpoint(client_secret=None)
    public.fetch_token(code="the-code", code_verifier="v" * 43, redirect_uri="http://127.0.0.1:8888/callback")
    public.refresh_token("refresh-1")
    for call in rsps.calls:
        assert "Authorization" not in call.request.headers
        assert parse_qs(call.request.body)["client_id"] == [CLIENT_ID]


@pytest.mark.parametrize("rotated", [True, False])
def test_refresh_keeps_the_old_refresh_token_when_spotify_sends_none(rsps, rotated) -> None:
    answer = {"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600}
    rsps.post(TOKEN_URL, json={**answer, "refresh_token": "refresh-2"} if rotated else answer)
    token = endpoint().refresh_token("refresh-1")
    (call,) = rsps.calls
    assert parse_qs(call.request.body) == {"grant_type": ["refresh_token"], "refresh_token": ["refresh-1"]}
    assert basic_credentials(call.request) == f"{CLIENT_ID}:{CLIENT_SECRET}"
    assert token.access_token == "tok-2"
    assert token.refresh_token == ("refresh-2" if rotated else "refresh-1")


def test_a_refused_refresh_token_is_an_auth_error_with_oauths_error_code(rsps) -> None:
    rsps.post(TOKEN_URL, json={"error": "invalid_grant", "error_description": "Refresh token revoked"}, status=400)
    with pytest.raises(SpotifyAuthError, match="Refresh token revoked") as info:
        endpoint().refresh_token("refresh-1")
    assert (info.value.status, info.value.error) == (400, "invalid_grant")


def test_requests_oauthlib_debug_logs_carry_no_secret(rsps) -> None:
    """requests-oauthlib logs token bodies and responses at DEBUG; a root handler must still see no secret."""
    access, refresh, new_refresh = "BQDaccess-0123456789", "AQArefresh-0123456789", "AQAnew-refresh-98765"
    verifier = "w" * 43
    rsps.post(TOKEN_URL, json={"access_token": access, "token_type": "Bearer", "refresh_token": refresh})
    lines: list[str] = []

    class Everything(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler, root, library = Everything(logging.DEBUG), logging.getLogger(), logging.getLogger("requests_oauthlib")
    root.addHandler(handler)
    library.setLevel(logging.DEBUG)
    try:
        token_endpoint = endpoint()
        token_endpoint.fetch_token(code="code-abcdef123", code_verifier=verifier, redirect_uri="http://127.0.0.1:1/cb")
        rsps.replace(responses.POST, TOKEN_URL, json={"access_token": access, "refresh_token": new_refresh})
        token_endpoint.refresh_token(refresh)
    finally:
        root.removeHandler(handler)
        library.setLevel(logging.NOTSET)
    logged = "\n".join(lines)
    assert "Obtained token" in logged  # requests-oauthlib did log
    for secret in (access, refresh, new_refresh, CLIENT_SECRET):
        assert secret not in logged


def test_plain_http_is_refused_before_requests_oauthlib_is_told_to_allow_it(monkeypatch) -> None:
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    with pytest.raises(SpotifyConfigError, match="must use https"):
        oauth_session("http://accounts.example.com/api/token")
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ
    oauth_session("https://accounts.spotify.com/api/token")
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ  # https needs no switch
    oauth_session("http://127.0.0.1:8080/api/token")
    assert os.environ["OAUTHLIB_INSECURE_TRANSPORT"] == "1"  # the emulator on the loopback interface
