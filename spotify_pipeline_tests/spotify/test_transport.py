from __future__ import annotations

import pytest
import requests
import responses

from spotify_pipeline.spotify import (
    SpotifyBadRequest,
    SpotifyConnectionError,
    SpotifyForbidden,
    SpotifyHTTPError,
    SpotifyNotFound,
    SpotifyQuotaExceeded,
    SpotifyResponseError,
    SpotifyServerError,
    SpotifyTooManyRequests,
    SpotifyUnauthorized,
)
from spotify_pipeline.spotify.transport import Transport, parse_retry_after

from .helpers import API, spotify_error


class StubTokens:
    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.refreshed_after: list[str | None] = []

    def token(self) -> str:
        return self.tokens[0]

    def refresh(self, rejected: str | None = None) -> str:
        self.refreshed_after.append(rejected)
        self.tokens.pop(0)
        return self.tokens[0]


def make(tokens=None, **kw) -> Transport:
    return Transport(API, tokens or StubTokens("tok-1", "tok-2", "tok-3"), **kw)


def test_sends_bearer_token_and_timeouts(rsps) -> None:
    seen = {}

    def cb(request):
        seen["auth"] = request.headers["Authorization"]
        seen["timeout"] = request.req_kwargs["timeout"]
        return (200, {}, '{"ok": true}')

    rsps.add_callback(responses.GET, f"{API}/tracks/abc", callback=cb)
    assert make(timeout=(5.0, 15.0)).get("tracks/abc", endpoint="GET /tracks/{id}") == {"ok": True}
    assert seen == {"auth": "Bearer tok-1", "timeout": (5.0, 15.0)}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, SpotifyBadRequest),
        (403, SpotifyForbidden),
        (404, SpotifyNotFound),
        (500, SpotifyServerError),
        (503, SpotifyServerError),
        (418, SpotifyHTTPError),
    ],
)
def test_error_bodies_become_typed_exceptions(rsps, status, cls) -> None:
    rsps.get(f"{API}/tracks/abc", body=spotify_error(status, f"message for {status}"), status=status)
    with pytest.raises(cls) as err:
        make().get("tracks/abc", endpoint="GET /tracks/{id}")
    assert err.value.status == status
    assert err.value.endpoint == "GET /tracks/{id}"
    assert err.value.message == f"message for {status}"
    assert "GET /tracks/{id}" in str(err.value) and str(status) in str(err.value)


def test_non_json_error_body_keeps_its_text(rsps) -> None:
    rsps.get(f"{API}/tracks/abc", body="<html>Bad gateway</html>", status=502)
    with pytest.raises(SpotifyServerError) as err:
        make().get("tracks/abc", endpoint="GET /tracks/{id}")
    assert err.value.status == 502 and "Bad gateway" in err.value.message


def test_window_429_carries_retry_after(rsps) -> None:
    rsps.get(f"{API}/search", body=spotify_error(429, "API rate limit exceeded"), status=429, headers={"Retry-After": "7"})
    with pytest.raises(SpotifyTooManyRequests) as err:
        make().get("search", endpoint="GET /search")
    assert err.value.retry_after == 7.0 and err.value.status == 429


@pytest.mark.parametrize(
    "body",
    [
        spotify_error(429, "quota", reason="QUOTA_EXCEEDED"),
        '{"error": {"status": 429, "message": "quota"}, "reason": "QUOTA_EXCEEDED"}',
    ],
)
def test_quota_429_is_its_own_type(rsps, body) -> None:
    rsps.get(f"{API}/search", body=body, status=429, headers={"Retry-After": "86400"})
    with pytest.raises(SpotifyQuotaExceeded) as err:
        make().get("search", endpoint="GET /search")
    assert err.value.retry_after == 86400.0


def test_non_json_success_body_is_a_response_error(rsps) -> None:
    rsps.get(f"{API}/tracks/abc", body="not json at all", status=200, content_type="text/plain")
    with pytest.raises(SpotifyResponseError) as err:
        make().get("tracks/abc", endpoint="GET /tracks/{id}")
    assert err.value.endpoint == "GET /tracks/{id}" and "not JSON" in str(err.value)


def test_401_refreshes_once_and_retries_once(rsps) -> None:
    tokens = StubTokens("tok-old", "tok-new")
    rsps.get(f"{API}/tracks/abc", body=spotify_error(401, "The access token expired"), status=401)
    rsps.get(f"{API}/tracks/abc", json={"id": "abc"}, status=200)
    assert make(tokens).get("tracks/abc", endpoint="GET /tracks/{id}") == {"id": "abc"}
    assert tokens.refreshed_after == ["tok-old"]
    assert [c.request.headers["Authorization"] for c in rsps.calls] == ["Bearer tok-old", "Bearer tok-new"]


def test_second_401_is_raised_not_looped(rsps) -> None:
    tokens = StubTokens("tok-old", "tok-new", "tok-newer")
    rsps.get(f"{API}/tracks/abc", body=spotify_error(401, "Invalid access token"), status=401)
    with pytest.raises(SpotifyUnauthorized) as err:
        make(tokens).get("tracks/abc", endpoint="GET /tracks/{id}")
    assert err.value.message == "Invalid access token"
    assert len(rsps.calls) == 2 and tokens.refreshed_after == ["tok-old"]


@pytest.mark.parametrize(
    ("exc", "timeout"), [(requests.ConnectionError("refused"), False), (requests.ReadTimeout("slow"), True)]
)
def test_network_failures_become_connection_errors(rsps, exc, timeout) -> None:
    rsps.get(f"{API}/tracks/abc", body=exc)
    observed = []
    transport = make(observer=lambda ep, latency, status: observed.append((ep, status)))
    with pytest.raises(SpotifyConnectionError) as err:
        transport.get("tracks/abc", endpoint="GET /tracks/{id}")
    assert err.value.timeout is timeout and err.value.endpoint == "GET /tracks/{id}"
    assert observed == [("GET /tracks/{id}", None)]


def test_before_request_runs_before_every_exchange(rsps) -> None:
    rsps.get(f"{API}/x", body=spotify_error(401, "expired"), status=401)
    rsps.get(f"{API}/x", json={}, status=200)
    slots = []
    make(before_request=lambda: slots.append(1)).get("x", endpoint="GET /x")
    assert len(slots) == 2  # the retry after the refresh also takes a rate-limit slot


def test_parse_retry_after() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
