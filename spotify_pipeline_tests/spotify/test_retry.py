"""Every retry rule, exercised through the real transport with mocked HTTP and a recorded sleeper."""

from __future__ import annotations

import random

import pytest
import requests

from spotify_pipeline.spotify import (
    FakeClock,
    InProcessRateLimiter,
    SpotifyBadRequest,
    SpotifyConnectionError,
    SpotifyForbidden,
    SpotifyNotFound,
    SpotifyQuotaExceeded,
    SpotifyRateLimited,
    SpotifyServerError,
    SpotifyTooManyRequests,
    SpotifyUnauthorized,
)
from spotify_pipeline.spotify.retry import RetryPolicy
from spotify_pipeline.spotify.transport import Transport

from . import helpers
from .helpers import API, spotify_error
from .test_transport import StubTokens

URL = f"{API}/tracks/abc"
EP = "GET /tracks/{id}"


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.retries: list[str] = []

    def policy(self, **kw) -> RetryPolicy:
        kw.setdefault("rng", random.Random(7))
        return RetryPolicy(sleep=self.sleeps.append, on_retry=lambda ep, exc, wait: self.retries.append(ep), **kw)


def call(policy: RetryPolicy) -> object:
    transport = Transport(API, StubTokens("t1", "t2", "t3"))
    return policy.call(lambda: transport.get("tracks/abc", endpoint=EP), endpoint=EP)


@pytest.mark.parametrize(
    "failure",
    [
        dict(body=requests.ConnectionError("reset")),
        dict(body=requests.ConnectTimeout("connect timeout")),
        dict(body=requests.ReadTimeout("read timeout")),
        dict(body=spotify_error(500, "boom"), status=500),
        dict(body=spotify_error(502, "bad gateway"), status=502),
        dict(body=spotify_error(503, "unavailable"), status=503),
        dict(body=spotify_error(504, "gateway timeout"), status=504),
    ],
    ids=["connection", "connect-timeout", "read-timeout", "500", "502", "503", "504"],
)
def test_transient_failures_are_retried_then_succeed(rsps, failure) -> None:
    rsps.get(URL, **failure)
    rsps.get(URL, **failure)
    rsps.get(URL, json={"id": "abc"})
    rec = Recorder()
    assert call(rec.policy()) == {"id": "abc"}
    assert len(rsps.calls) == 3
    assert len(rec.sleeps) == 2 and rec.retries == [EP, EP]


def test_backoff_is_exponential_with_bounded_jitter(rsps) -> None:
    for _ in range(5):
        rsps.get(URL, body=spotify_error(503, "unavailable"), status=503)
    rec = Recorder()
    with pytest.raises(SpotifyServerError):
        call(rec.policy(max_attempts=5, backoff_initial_s=1.0, backoff_max_s=100))
    assert len(rsps.calls) == 5 and len(rec.sleeps) == 4
    for attempt, slept in enumerate(rec.sleeps, start=1):
        base = 2 ** (attempt - 1)
        assert base <= slept <= base + 1.0
    assert len(set(rec.sleeps)) == 4  # jittered, not a fixed schedule


def test_backoff_is_capped(rsps) -> None:
    policy = Recorder().policy(backoff_initial_s=1.0, backoff_max_s=5.0)
    assert all(policy.backoff(n) <= 5.0 for n in range(1, 20))


def test_attempts_are_capped_and_last_error_raised(rsps) -> None:
    rsps.get(URL, body=spotify_error(500, "still broken"), status=500)
    rec = Recorder()
    with pytest.raises(SpotifyServerError) as err:
        call(rec.policy(max_attempts=3))
    assert len(rsps.calls) == 3 and err.value.message == "still broken"


def test_total_wait_is_capped(rsps) -> None:
    rsps.get(URL, body=spotify_error(503, "unavailable"), status=503)
    rec = Recorder()
    with pytest.raises(SpotifyServerError):
        call(rec.policy(max_attempts=50, backoff_initial_s=1.0, backoff_max_s=100, max_retry_wait_s=10))
    assert sum(rec.sleeps) <= 10
    assert len(rsps.calls) <= 4  # waits 1+, 2+, 4+ ... the next (8+) would exceed 10 s


def test_window_429_honours_retry_after(rsps) -> None:
    rsps.get(URL, body=spotify_error(429, "rate limited"), status=429, headers={"Retry-After": "17"})
    rsps.get(URL, json={"id": "abc"})
    rec = Recorder()
    assert call(rec.policy(retry_after_jitter_s=0.5)) == {"id": "abc"}
    (slept,) = rec.sleeps
    assert 17 <= slept <= 17.5


def test_429_without_retry_after_backs_off(rsps) -> None:
    rsps.get(URL, body=spotify_error(429, "rate limited"), status=429)
    rsps.get(URL, json={"id": "abc"})
    rec = Recorder()
    call(rec.policy(backoff_initial_s=0.5))
    assert len(rec.sleeps) == 1 and 0.5 <= rec.sleeps[0] <= 1.0


def test_retry_after_above_cap_raises_at_once(rsps) -> None:
    rsps.get(URL, body=spotify_error(429, "rate limited"), status=429, headers={"Retry-After": "7200"})
    rec = Recorder()
    with pytest.raises(SpotifyRateLimited) as err:
        call(rec.policy(max_retry_after_s=120))
    assert err.value.retry_after == 7200 and err.value.endpoint == EP
    assert rec.sleeps == [] and len(rsps.calls) == 1


def test_quota_exceeded_raises_at_once(rsps) -> None:
    rsps.get(
        URL, body=spotify_error(429, "quota", reason="QUOTA_EXCEEDED"), status=429, headers={"Retry-After": "5"}
    )
    rec = Recorder()
    with pytest.raises(SpotifyQuotaExceeded):
        call(rec.policy())
    assert rec.sleeps == [] and len(rsps.calls) == 1


@pytest.mark.parametrize(
    ("status", "cls"), [(400, SpotifyBadRequest), (403, SpotifyForbidden), (404, SpotifyNotFound)]
)
def test_client_errors_are_not_retried(rsps, status, cls) -> None:
    rsps.get(URL, body=spotify_error(status, "nope"), status=status)
    rec = Recorder()
    with pytest.raises(cls) as err:
        call(rec.policy())
    assert rec.sleeps == [] and len(rsps.calls) == 1
    assert (err.value.status, err.value.endpoint, err.value.message) == (status, EP, "nope")


def test_persistent_401_is_not_retried_beyond_the_refresh(rsps) -> None:
    rsps.get(URL, body=spotify_error(401, "Invalid access token"), status=401)
    rec = Recorder()
    with pytest.raises(SpotifyUnauthorized):
        call(rec.policy())
    assert len(rsps.calls) == 2 and rec.sleeps == []


def test_connection_errors_give_up_after_max_attempts(rsps) -> None:
    rsps.get(URL, body=requests.ConnectionError("refused"))
    rec = Recorder()
    with pytest.raises(SpotifyConnectionError):
        call(rec.policy(max_attempts=2))
    assert len(rsps.calls) == 2


# -- through the client: a 429 closes the shared penalty box ------------------------------------------------
def test_client_429_penalizes_the_shared_limiter_and_counts_metrics(rsps) -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(60_000, clock=FakeClock())
    client = helpers.client(clock, limiter=limiter, app_mode="development")
    helpers.add_token(rsps)
    rsps.get(f"{API}/tracks/abc", body=spotify_error(429, "slow down"), status=429, headers={"Retry-After": "30"})
    rsps.get(f"{API}/tracks/abc", json=helpers.track_json("abc"))
    penalties = []
    original = limiter.penalize
    limiter.penalize = lambda s: (penalties.append(s), original(s))  # type: ignore[method-assign]
    track = client.get_track("abc")
    assert track.id == "abc"
    assert penalties == [30.0]
    (row,) = [r for r in client.metrics.snapshot() if r["endpoint"] == "GET /tracks/{id}"]
    assert (row["requests"], row["throttled"], row["retries"], row["errors"]) == (2, 1, 1, 1)


def test_client_quota_exceeded_closes_penalty_box_for_everyone(rsps) -> None:
    limiter = InProcessRateLimiter(60_000, clock=FakeClock())
    client = helpers.client(limiter=limiter, app_mode="development")
    helpers.add_token(rsps)
    rsps.get(
        f"{API}/tracks/abc",
        body=spotify_error(429, "quota", reason="QUOTA_EXCEEDED"),
        status=429,
        headers={"Retry-After": "86400"},
    )
    with pytest.raises(SpotifyQuotaExceeded):
        client.get_track("abc")
    # the next request - from this or any process sharing the limiter - fails fast instead of sleeping a day
    with pytest.raises(SpotifyRateLimited) as err:
        client.get_track("other")
    assert err.value.retry_after > 86000
    assert len([c for c in rsps.calls if "/tracks/" in c.request.url]) == 1


def test_rate_limited_error_is_never_retried(rsps) -> None:
    rsps.get(URL, body=spotify_error(429, "x"), status=429, headers={"Retry-After": "121"})
    rec = Recorder()
    with pytest.raises(SpotifyRateLimited):
        call(rec.policy(max_retry_after_s=120))
    assert not isinstance(SpotifyRateLimited(1.0), SpotifyTooManyRequests)
