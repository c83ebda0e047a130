"""Web API behaviour in extended mode: lookups, batches, search, user endpoints, errors, stats."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from spotify_pipeline.emulator.testing import EmulatorHandle


@pytest.fixture
def app_get(emulator: EmulatorHandle) -> Any:
    headers = emulator.bearer(emulator.client_credentials_token())

    def get(path: str, **params: Any) -> requests.Response:
        return requests.get(f"{emulator.api_base_url}{path}", params=params, headers=headers, timeout=10)

    return get


def _search(get: Any, q: str, **params: Any) -> dict[str, Any]:
    response = get("/search", q=q, type="track", **params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()["tracks"]
    return page


def test_track_lookup_and_spotify_error_bodies(emulator: EmulatorHandle, app_get: Any) -> None:
    track_id = emulator.sample_track_id()
    track = app_get(f"/tracks/{track_id}").json()
    assert track["id"] == track_id and track["type"] == "track" and track["uri"] == f"spotify:track:{track_id}"
    assert 0 <= track["popularity"] <= 100 and track["available_markets"] and track["external_ids"]["isrc"]
    assert app_get("/tracks/abc").json() == {"error": {"status": 400, "message": "Invalid base62 id"}}
    assert app_get("/tracks/0000000000000000000000").json()["error"]["status"] == 404
    no_token = requests.get(f"{emulator.api_base_url}/tracks/{track_id}", timeout=10)
    assert no_token.status_code == 401 and no_token.json()["error"]["message"] == "No token provided"
    bad_token = requests.get(f"{emulator.api_base_url}/tracks/{track_id}", headers=emulator.bearer("x"), timeout=10)
    assert bad_token.json() == {"error": {"status": 401, "message": "Invalid access token"}}


def test_batches_return_null_for_unknown_ids_and_enforce_their_size(emulator: EmulatorHandle, app_get: Any) -> None:
    ids = [t["id"] for t in _search(app_get, "the", limit=50)["items"]]
    unknown = "0000000000000000000000"
    tracks = app_get("/tracks", ids=",".join([ids[0], unknown, ids[1]])).json()["tracks"]
    assert [t and t["id"] for t in tracks] == [ids[0], None, ids[1]]
    assert app_get("/tracks", ids=",".join(ids)).status_code == 200
    assert app_get("/tracks", ids=",".join(ids + [ids[0]])).json()["error"] == {"status": 400, "message": "Too many ids requested"}
    assert app_get("/tracks", ids=f"{ids[0]},not-an-id").status_code == 400
    track = app_get(f"/tracks/{ids[0]}").json()
    album_id, artist_id = track["album"]["id"], track["artists"][0]["id"]
    assert app_get("/artists", ids=f"{artist_id},{unknown}").json()["artists"][1] is None
    assert app_get("/albums", ids=",".join([album_id] * 20)).status_code == 200
    assert app_get("/albums", ids=",".join([album_id] * 21)).status_code == 400
    album = app_get(f"/albums/{album_id}").json()
    assert ids[0] in [t["id"] for t in album["tracks"]["items"]] and album["label"] and "popularity" in album
    artist = app_get(f"/artists/{artist_id}").json()
    assert artist["followers"]["total"] > 0 and "popularity" in artist


def test_search_filters_free_text_paging_and_limits(emulator: EmulatorHandle, app_get: Any) -> None:
    track = app_get(f"/tracks/{emulator.sample_track_id()}").json()
    isrc, title, artist, album = track["external_ids"]["isrc"], track["name"], track["artists"][0]["name"], track["album"]["name"]
    assert [t["id"] for t in _search(app_get, f"isrc:{isrc}")["items"]] == [track["id"]]
    by_fields = _search(app_get, f'track:"{title}" artist:"{artist}"')["items"]
    assert by_fields[0]["id"] == track["id"]
    assert track["id"] in [t["id"] for t in _search(app_get, f"{title} {artist} {album}", limit=50)["items"]]
    year = int(track["album"]["release_date"][:4])
    assert all(int(t["album"]["release_date"][:4]) == year for t in _search(app_get, f"year:{year} the", limit=50)["items"])
    assert track["id"] in [t["id"] for t in _search(app_get, f'album:"{album}" year:{year - 1}-{year + 1}', limit=50)["items"]]
    # Accents, case and apostrophes do not matter; a one-letter typo is forgiven.
    assert _search(app_get, f'track:"{title.upper()}" artist:"{artist.lower()}"')["items"][0]["id"] == track["id"]
    assert _search(app_get, "isrc:XX0000000000")["total"] == 0
    first = _search(app_get, "the", limit=5)
    assert first["total"] > 5 and first["previous"] is None
    page2 = _search(app_get, "the", limit=5, offset=5)
    assert [t["id"] for t in page2["items"]] != [t["id"] for t in first["items"]]
    # `next` points back at this emulator and yields the next page.
    followed = requests.get(first["next"], headers=emulator.bearer(emulator.client_credentials_token()), timeout=10)
    assert followed.json()["tracks"]["items"] == page2["items"]
    assert app_get("/search", q="the", type="track", limit=51).status_code == 400
    # Spotify's OpenAPI description: offset 0..1000, whatever the limit.
    assert app_get("/search", q="the", type="track", limit=50, offset=1000).status_code == 200
    assert app_get("/search", q="the", type="track", limit=50, offset=1001).status_code == 400
    assert app_get("/search", q="the").status_code == 400
    assert app_get("/search", type="track").status_code == 400


def test_market_relinks_a_share_of_tracks(emulator: EmulatorHandle, app_get: Any) -> None:
    ids = [t["id"] for t in _search(app_get, "the", limit=50)["items"]]
    ids += [t["id"] for t in _search(app_get, "the", limit=50, offset=50)["items"]]
    relinked = []
    for chunk in (ids[:50], ids[50:]):
        for requested, track in zip(chunk, app_get("/tracks", ids=",".join(chunk), market="US").json()["tracks"]):
            assert "available_markets" not in track and "is_playable" in track
            if "linked_from" in track:
                assert track["linked_from"]["id"] == requested and track["id"] != requested
                relinked.append(requested)
    assert 0 < len(relinked) < len(ids) / 4
    assert app_get("/tracks", ids=ids[0], market="XX").status_code == 400


def test_user_endpoints_need_a_user_token_with_the_right_scope(emulator: EmulatorHandle, app_get: Any) -> None:
    for path in ("/me", "/me/tracks", "/me/player/recently-played"):
        assert app_get(path).status_code == 403
    no_scope = emulator.bearer(emulator.user_tokens("")["access_token"])
    for path in ("/me/tracks", "/me/player/recently-played"):
        forbidden = requests.get(f"{emulator.api_base_url}{path}", headers=no_scope, timeout=10)
        assert forbidden.json() == {"error": {"status": 403, "message": "Insufficient client scope"}}
    me = requests.get(f"{emulator.api_base_url}/me", headers=no_scope, timeout=10).json()
    assert me["id"] == emulator.fixtures()["user_id"] and "email" not in me


def test_saved_tracks_offset_paging(emulator: EmulatorHandle) -> None:
    headers = emulator.bearer(emulator.user_tokens("user-library-read")["access_token"])
    url = f"{emulator.api_base_url}/me/tracks?limit=50"
    seen = []
    while url:
        page = requests.get(url, headers=headers, timeout=10).json()
        seen += [item["track"]["id"] + item["added_at"] for item in page["items"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == emulator.fixtures()["saved_tracks"]
    too_many = requests.get(f"{emulator.api_base_url}/me/tracks?limit=51", headers=headers, timeout=10)
    assert too_many.status_code == 400


def test_recently_played_cursor_paging_and_new_plays_over_time(emulator: EmulatorHandle) -> None:
    headers = emulator.bearer(emulator.user_tokens("user-read-recently-played")["access_token"])
    base = f"{emulator.api_base_url}/me/player/recently-played"
    emulator.freeze_clock()
    first = requests.get(f"{base}?limit=20", headers=headers, timeout=10).json()
    played = [item["played_at"] for item in first["items"]]
    assert played == sorted(played, reverse=True) and len(played) == 20
    older = requests.get(first["next"], headers=headers, timeout=10).json()
    assert older["items"][0]["played_at"] < played[-1]
    latest = first["cursors"]["after"]
    assert requests.get(f"{base}?after={latest}", headers=headers, timeout=10).json()["items"] == []
    emulator.advance_clock(50 * 60)  # within the token's hour, the user has listened to more
    newer = requests.get(f"{base}?after={latest}&limit=50", headers=headers, timeout=10).json()["items"]
    assert newer and all(item["played_at"] > played[0] for item in newer)
    assert requests.get(f"{base}?after=1&before=2", headers=headers, timeout=10).status_code == 400


def test_playlist_items_visibility(emulator: EmulatorHandle, app_get: Any) -> None:
    private, _, public = emulator.fixtures()["playlists"]
    with_scope = emulator.bearer(emulator.user_tokens("playlist-read-private")["access_token"])
    without_scope = emulator.bearer(emulator.user_tokens("")["access_token"])
    url = f"{emulator.api_base_url}/playlists/{private['id']}/items"
    page = requests.get(f"{url}?limit=50", headers=with_scope, timeout=10).json()
    assert page["total"] == private["total"] and page["items"][0]["item"]["type"] == "track"
    assert requests.get(url, headers=without_scope, timeout=10).status_code == 403
    assert app_get(f"/playlists/{private['id']}/items").status_code == 404
    assert app_get(f"/playlists/{public['id']}/items").status_code == 200
    assert app_get("/playlists/0000000000000000000000/items").status_code == 404


def test_stats_count_requests_per_endpoint_status_and_client(emulator: EmulatorHandle) -> None:
    track_id = emulator.sample_track_id()
    emulator.reset()
    token = emulator.client_credentials_token()
    for _ in range(20):
        requests.get(f"{emulator.api_base_url}/tracks/{track_id}", headers=emulator.bearer(token), timeout=10)
    requests.get(f"{emulator.api_base_url}/tracks/{track_id}", timeout=10)
    stats = emulator.stats()
    assert stats["total_requests"] == 22
    assert stats["by_endpoint"] == {"/api/token": 1, "/v1/tracks/{id}": 21}
    assert stats["by_endpoint_status"]["/v1/tracks/{id}"] == {"200": 20, "401": 1}
    assert stats["by_client"] == {emulator.client_id: 21, "anonymous": 1}
    assert stats["by_client_endpoint"][emulator.client_id] == {"/api/token": 1, "/v1/tracks/{id}": 20}
    emulator.reset()
    assert emulator.stats()["total_requests"] == 0
