"""Development mode: Spotify's February/March 2026 restrictions."""

from __future__ import annotations

from typing import Any

import requests

from spotify_pipeline.emulator.testing import EmulatorHandle


def test_development_mode_restrictions(emulator_factory: Any) -> None:
    emu: EmulatorHandle = emulator_factory(mode="development", window_limit=None)
    headers = emu.bearer(emu.client_credentials_token())

    def get(path: str, **params: Any) -> requests.Response:
        return requests.get(f"{emu.api_base_url}{path}", params=params, headers=headers, timeout=10)

    found = get("/search", q="the", type="track", limit=10)
    assert found.status_code == 200 and len(found.json()["tracks"]["items"]) == 10
    assert get("/search", q="the", type="track").json()["tracks"]["limit"] == 5
    too_many = get("/search", q="the", type="track", limit=11)
    assert too_many.status_code == 400 and too_many.json()["error"]["status"] == 400

    track = get(f"/tracks/{found.json()['tracks']['items'][0]['id']}").json()
    for removed in ("popularity", "available_markets", "linked_from"):
        assert removed not in track
    assert "available_markets" not in track["album"]
    assert track["external_ids"]["isrc"]
    for market in ("US", "DE", "JP"):
        assert "linked_from" not in get(f"/tracks/{track['id']}", market=market).json()

    album = get(f"/albums/{track['album']['id']}").json()
    assert not {"popularity", "label", "available_markets"} & set(album)
    artist = get(f"/artists/{track['artists'][0]['id']}").json()
    assert not {"popularity", "followers"} & set(artist) and artist["name"]

    for path, ids in (("/tracks", track["id"]), ("/artists", track["artists"][0]["id"]), ("/albums", track["album"]["id"])):
        forbidden = get(path, ids=ids)
        assert forbidden.status_code == 403 and forbidden.json()["error"]["status"] == 403


def test_mode_can_be_switched_at_runtime(emulator: EmulatorHandle) -> None:
    headers = emulator.bearer(emulator.client_credentials_token())
    url = f"{emulator.api_base_url}/tracks/{emulator.sample_track_id()}"
    assert "popularity" in requests.get(url, headers=headers, timeout=10).json()
    emulator.configure(mode="development")
    assert "popularity" not in requests.get(url, headers=headers, timeout=10).json()
