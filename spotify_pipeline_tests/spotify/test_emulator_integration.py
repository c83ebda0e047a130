"""The client against the offline emulator (an independent implementation of the Web API).

Request counts are read from the emulator's own stats, not from the client's metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from spotify_pipeline.emulator.catalog import DEFAULT_SEED, Catalog
from spotify_pipeline.emulator.testing import EmulatorHandle, run_emulator
from spotify_pipeline.spotify import (
    SpotifyClient,
    SpotifyClientConfig,
    SpotifyQuotaExceeded,
    SpotifyRateLimited,
    build_client,
)

CATALOG_SIZE = 1_200
IDS = [t.id for t in Catalog(DEFAULT_SEED, CATALOG_SIZE).tracks[:1_000]]


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., EmulatorHandle]]:
    with ExitStack() as stack:

        def start(**config: Any) -> EmulatorHandle:
            config.setdefault("catalog_size", CATALOG_SIZE)
            config.setdefault("window_limit", None)
            return stack.enter_context(run_emulator(**config))

        yield start


def client_for(emu: EmulatorHandle, **overrides: Any) -> SpotifyClient:
    values: dict[str, Any] = dict(
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        api_base_url=emu.api_base_url,
        accounts_base_url=emu.accounts_base_url,
        rate_limit_per_minute=600_000,  # the emulator's limits are under test, not the client's default
        backoff_initial_s=0.01,
        backoff_max_s=0.1,
    )
    values.update(overrides)
    return build_client(SpotifyClientConfig(**values))


def requests_by_endpoint(emu: EmulatorHandle) -> dict[str, int]:
    return dict(emu.stats()["by_endpoint"])


def test_extended_mode_fetches_1000_tracks_in_20_requests(start_emulator) -> None:
    emu = start_emulator(mode="extended")
    client = client_for(emu)
    tracks = client.get_tracks(IDS)
    assert list(tracks) == IDS and all(t is not None and t.requested_id == i for i, t in tracks.items())
    assert all(isinstance(t.popularity, int) for t in tracks.values())
    assert requests_by_endpoint(emu) == {"/v1/tracks": 20, "/api/token": 1}
    assert client.capabilities.mode == "extended" and client.capabilities.popularity

    again = client.get_tracks(IDS)  # within the TTL: zero requests
    assert [t.id for t in again.values()] == [t.id for t in tracks.values()]
    assert emu.stats()["total_requests"] == 21


def test_development_mode_fetches_1000_tracks_one_by_one(start_emulator) -> None:
    emu = start_emulator(mode="development")
    client = client_for(emu)
    tracks = client.get_tracks(IDS)
    assert all(t is not None for t in tracks.values())
    assert all(t.popularity is None and t.available_markets is None for t in tracks.values())
    stats = emu.stats()
    assert stats["by_endpoint"]["/v1/tracks/{id}"] == 1_000
    assert stats["by_endpoint_status"]["/v1/tracks"] == {"403": 1}  # the one batch call that revealed the mode
    assert stats["by_endpoint"]["/api/token"] == 1
    assert client.capabilities.mode == "development" and client.capabilities.popularity is False

    client.get_tracks(IDS)
    assert emu.stats()["total_requests"] == stats["total_requests"]  # second call: zero requests


def test_a_second_process_reuses_token_mode_and_tracks_through_redis(start_emulator, redis_url, redis_prefix) -> None:
    emu = start_emulator(mode="development")
    first = client_for(emu, redis_url=redis_url, redis_key_prefix=redis_prefix)
    first.get_tracks(IDS[:30])
    before = emu.stats()["total_requests"]
    second = client_for(emu, redis_url=redis_url, redis_key_prefix=redis_prefix)  # a new worker
    assert all(second.get_tracks(IDS[:30]).values())
    second.get_tracks(IDS[30:40])
    stats = emu.stats()
    assert stats["total_requests"] == before + 10  # only the 10 new tracks; no token, no mode probe
    assert stats["by_endpoint"]["/api/token"] == 1


def test_expired_token_is_refreshed_once(start_emulator) -> None:
    emu = start_emulator(mode="extended")
    client = client_for(emu)
    client.get_track(IDS[0])
    assert emu.expire_tokens() >= 1
    assert client.get_track(IDS[1]).requested_id == IDS[1]
    stats = emu.stats()
    assert stats["by_endpoint"]["/api/token"] == 2
    assert stats["by_endpoint_status"]["/v1/tracks/{id}"] == {"200": 2, "401": 1}


def test_window_429_is_waited_out_and_everything_arrives(start_emulator) -> None:
    emu = start_emulator(mode="development", window_limit=4, window_seconds=1.0)
    client = client_for(emu, app_mode="development")
    tracks = client.get_tracks(IDS[:9])
    assert all(tracks.values())
    assert emu.stats()["throttled"]["window"] >= 1
    row = next(r for r in client.metrics.snapshot() if r["endpoint"] == "GET /tracks/{id}")
    assert row["throttled"] >= 1 and row["retries"] >= 1 and row["requests"] == 9 + row["throttled"]


def test_quota_exceeded_fails_fast_for_every_later_request(start_emulator) -> None:
    emu = start_emulator(mode="development", quota=3)
    client = client_for(emu, app_mode="development")
    with pytest.raises(SpotifyQuotaExceeded) as err:
        client.get_tracks(IDS[:5])
    assert err.value.retry_after and err.value.retry_after > 0
    with pytest.raises((SpotifyRateLimited, SpotifyQuotaExceeded)):
        client.get_track(IDS[10])
    assert emu.stats()["throttled"]["quota"] == 1  # the penalty box kept the later request at home


def test_server_errors_and_broken_connections_are_retried(start_emulator) -> None:
    emu = start_emulator(mode="extended", error_rate=0.15, reset_rate=0.1)
    client = client_for(emu, max_attempts=8)
    tracks = client.get_tracks(IDS[:300])
    assert all(tracks.values()) and len(tracks) == 300
    stats = emu.stats()
    assert stats["total_requests"] > 7  # 6 batches + token + the retried failures
    assert sum(r["retries"] for r in client.metrics.snapshot()) == stats["total_requests"] - 7


@pytest.mark.parametrize(("mode", "cap"), [("development", 10), ("extended", 50)])
def test_search_respects_the_mode_limit(start_emulator, mode, cap) -> None:
    emu = start_emulator(mode=mode)
    client = client_for(emu)
    page = client.search_tracks("the", limit=50)
    assert page.limit == cap and 0 < len(page.items) <= cap
    assert all(t.name for t in page.items)
    assert emu.stats()["by_endpoint_status"]["/v1/search"] == {"200": 1}


def test_relinked_tracks_keep_the_requested_id(start_emulator) -> None:
    emu = start_emulator(mode="extended")
    client = client_for(emu, market="GB")
    tracks = client.get_tracks(IDS[:300])
    relinked = [t for t in tracks.values() if t is not None and t.relinked]
    assert relinked, "the emulator relinks about 1 track in 25 per market"
    for requested_id, t in tracks.items():
        assert t is not None and t.requested_id == requested_id
    for t in relinked:
        assert t.linked_from_id == t.requested_id and t.id != t.requested_id
