"""Acceptance: spotipy, a widely used Spotify client, works against the emulator as against Spotify.

spotipy is pointed at the emulator the way it allows: its API prefix and its token URL (an attribute of the
auth manager); nothing of the emulator is patched. It sends what it sends to Spotify, e.g. `tracks()` asks
for `GET /v1/tracks/?ids=...` with a trailing slash.
"""

from __future__ import annotations

from typing import Any

import pytest
import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.oauth2 import SpotifyClientCredentials

from spotify_pipeline.emulator.testing import EmulatorHandle


def _spotipy(emulator: EmulatorHandle) -> spotipy.Spotify:
    auth = SpotifyClientCredentials(emulator.client_id, emulator.client_secret, cache_handler=MemoryCacheHandler())
    auth.OAUTH_TOKEN_URL = emulator.token_url
    client = spotipy.Spotify(auth_manager=auth, retries=0, status_retries=0, requests_timeout=10)
    client.prefix = f"{emulator.api_base_url}/"
    return client


def _first_hit(client: spotipy.Spotify, q: str) -> dict[str, Any]:
    found = client.search(q, limit=10)["tracks"]
    assert found["total"] > 0 and found["items"], q
    hit: dict[str, Any] = found["items"][0]
    return hit


def test_spotipy_in_extended_mode(emulator: EmulatorHandle) -> None:
    client = _spotipy(emulator)
    assert client.search("a", limit=50)["tracks"]["total"] > 1_000  # a one-letter search finds thousands
    hit = _first_hit(client, "the")
    track = client.track(hit["id"])
    assert track["id"] == hit["id"] and "popularity" in track
    isrc_hits = client.search(f"isrc:{track['external_ids']['isrc']}")["tracks"]["items"]
    assert track["id"] in [t["id"] for t in isrc_hits]
    ids = [t["id"] for t in client.search("the", limit=5)["tracks"]["items"]]
    assert [t["id"] for t in client.tracks(ids)["tracks"]] == ids
    assert client.artist(track["artists"][0]["id"])["id"] == track["artists"][0]["id"]
    album = client.album(track["album"]["id"])
    assert track["id"] in [t["id"] for t in album["tracks"]["items"]]
    by_fields = client.search(f'track:"{track["name"]}" artist:"{track["artists"][0]["name"]}"')["tracks"]["items"]
    assert by_fields[0]["id"] == track["id"]


def test_spotipy_in_development_mode(emulator_factory: Any) -> None:
    emulator: EmulatorHandle = emulator_factory(mode="development", window_limit=None)
    client = _spotipy(emulator)
    found = client.search("the", limit=10)["tracks"]
    assert len(found["items"]) == 10 and found["total"] > 10
    track = client.track(found["items"][0]["id"])
    assert track["id"] == found["items"][0]["id"] and "popularity" not in track
    assert client.artist(track["artists"][0]["id"])["name"] == track["artists"][0]["name"]
    assert client.album(track["album"]["id"])["id"] == track["album"]["id"]
    # Spotify took the batch endpoints from Development Mode apps: spotipy's `tracks()` gets Spotify's 403.
    with pytest.raises(spotipy.SpotifyException) as refused:
        client.tracks([track["id"]])
    assert refused.value.http_status == 403
    with pytest.raises(spotipy.SpotifyException) as too_many:
        client.search("the", limit=11)  # the search limit stops at 10 there
    assert too_many.value.http_status == 400
