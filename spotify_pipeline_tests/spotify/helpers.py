"""Shared builders for the client's unit tests (HTTP mocked with `responses`, time with `FakeClock`)."""

from __future__ import annotations

import copy
import json
from typing import Any

import responses

from spotify_pipeline.spotify import FakeClock, SpotifyClient, SpotifyClientConfig, build_client
from spotify_pipeline.spotify.cache import Cache
from spotify_pipeline.spotify.limiter import RateLimiter

API = "https://api.spotify.test/v1"
ACCOUNTS = "https://accounts.spotify.test"
TOKEN_URL = f"{ACCOUNTS}/api/token"
CLIENT_ID = "unit-test-client-id"
CLIENT_SECRET = "unit-test-client-secret-0123456789"

_TRACK: dict[str, Any] = {
    "album": {
        "album_type": "album",
        "artists": [{"id": "artist-1", "name": "The Artists", "type": "artist", "uri": "spotify:artist:artist-1"}],
        "available_markets": ["GB", "US"],
        "id": "album-1",
        "images": [{"url": "https://img.test/1.jpg", "height": 640, "width": 640}],
        "name": "The Album",
        "release_date": "1999-03-01",
        "release_date_precision": "day",
        "total_tracks": 12,
        "type": "album",
        "uri": "spotify:album:album-1",
    },
    "artists": [{"id": "artist-1", "name": "The Artists", "type": "artist", "uri": "spotify:artist:artist-1"}],
    "available_markets": ["GB", "US"],
    "disc_number": 1,
    "duration_ms": 215000,
    "explicit": False,
    "external_ids": {"isrc": "GBAAA9900001"},
    "id": "track-1",
    "is_local": False,
    "name": "The Song",
    "popularity": 61,
    "track_number": 3,
    "type": "track",
    "uri": "spotify:track:track-1",
}


def track_json(track_id: str = "track-1", *, drop: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    """A Spotify track object; ``drop`` removes fields (dotted paths allowed), keyword fields override."""
    data = copy.deepcopy(_TRACK)
    data["id"] = track_id
    data["uri"] = f"spotify:track:{track_id}"
    data.update(fields)
    for path in drop:
        obj = data
        *parents, last = path.split(".")
        for p in parents:
            obj = obj[p]
        obj.pop(last, None)
    return data


def dev_track_json(track_id: str) -> dict[str, Any]:
    """A track as Development Mode apps see it: no popularity, available_markets or linked_from."""
    return track_json(track_id, drop=("popularity", "available_markets", "album.available_markets"))


def config(**overrides: Any) -> SpotifyClientConfig:
    values: dict[str, Any] = dict(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        api_base_url=API,
        accounts_base_url=ACCOUNTS,
        rate_limit_per_minute=6000,
        backoff_initial_s=0.5,
    )
    values.update(overrides)
    return SpotifyClientConfig(**values)


def client(
    clock: FakeClock | None = None,
    *,
    cache: Cache | None = None,
    limiter: RateLimiter | None = None,
    **overrides: Any,
) -> SpotifyClient:
    return build_client(config(**overrides), clock=clock or FakeClock(), cache=cache, limiter=limiter)


def add_token(rsps: responses.RequestsMock, token: str = "access-token-1", expires_in: int = 3600) -> Any:
    return rsps.post(
        TOKEN_URL, json={"access_token": token, "token_type": "Bearer", "expires_in": expires_in}, status=200
    )


def spotify_error(status: int, message: str, **extra: Any) -> str:
    return json.dumps({"error": {"status": status, "message": message, **extra}})


def calls_to(rsps: responses.RequestsMock, prefix: str) -> list[Any]:
    return [c for c in rsps.calls if c.request.url.startswith(prefix)]
