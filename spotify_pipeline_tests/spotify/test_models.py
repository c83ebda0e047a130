from __future__ import annotations

import pytest

from spotify_pipeline.spotify import Album, Artist, SpotifyResponseError, Track

from .helpers import dev_track_json, track_json

EP = "GET /tracks"


def test_full_track_parses() -> None:
    t = Track.from_json(track_json("t1"), endpoint=EP)
    assert (t.id, t.name, t.requested_id, t.relinked) == ("t1", "The Song", "t1", False)
    assert [a.name for a in t.artists] == ["The Artists"]
    assert t.album.name == "The Album" and t.album.release_date == "1999-03-01"
    assert t.isrc == "GBAAA9900001" and t.duration_ms == 215000
    assert t.popularity == 61 and t.available_markets == ["GB", "US"]


def test_absent_deprecated_fields_are_none_not_errors() -> None:
    t = Track.from_json(dev_track_json("t1"), endpoint=EP)
    assert t.popularity is None and t.available_markets is None and t.linked_from_id is None
    assert t.album.available_markets is None


def test_null_deprecated_fields_are_none() -> None:
    t = Track.from_json(track_json("t1", popularity=None, linked_from=None), endpoint=EP)
    assert t.popularity is None and t.linked_from_id is None


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (dict(drop=("id",)), "tracks[2].id"),
        (dict(drop=("name",)), "tracks[2].name"),
        (dict(drop=("artists",)), "tracks[2].artists"),
        (dict(drop=("album",)), "tracks[2].album"),
        (dict(id=123), "tracks[2].id"),
        (dict(name=["x"]), "tracks[2].name"),
        (dict(artists="Someone"), "tracks[2].artists"),
        (dict(album="An Album"), "tracks[2].album"),
        (dict(drop=("album.name",)), "tracks[2].album.name"),
        (dict(artists=[{"id": "a"}]), "tracks[2].artists[0].name"),
        (dict(popularity="high"), "tracks[2].popularity"),
        (dict(popularity=True), "tracks[2].popularity"),
        (dict(available_markets=["GB", 7]), "tracks[2].available_markets[1]"),
    ],
)
def test_required_or_mistyped_fields_name_endpoint_and_field(mutate, field) -> None:
    with pytest.raises(SpotifyResponseError) as err:
        Track.from_json(track_json("t1", **mutate), endpoint=EP, path="tracks[2]")
    assert err.value.endpoint == EP and err.value.field == field
    assert EP in str(err.value) and field in str(err.value)


def test_non_object_is_an_error() -> None:
    with pytest.raises(SpotifyResponseError) as err:
        Track.from_json(["not", "an", "object"], endpoint=EP)
    assert err.value.endpoint == EP


def test_relinked_track_keeps_requested_id_and_records_served_id() -> None:
    raw = track_json("served-id", linked_from={"id": "asked-id", "type": "track", "uri": "spotify:track:asked-id"})
    t = Track.from_json(raw, endpoint=EP, requested_id="asked-id")
    assert (t.requested_id, t.id, t.linked_from_id, t.relinked) == ("asked-id", "served-id", "asked-id", True)
    # without an explicit requested id, linked_from tells which id was asked for
    assert Track.from_json(raw, endpoint=EP).requested_id == "asked-id"


def test_artist_deprecated_fields_optional() -> None:
    full = {"id": "a1", "name": "A", "genres": ["rock"], "followers": {"href": None, "total": 10}, "popularity": 5}
    a = Artist.from_json(full, endpoint="GET /artists/{id}")
    assert (a.genres, a.followers, a.popularity) == (["rock"], 10, 5)
    bare = Artist.from_json({"id": "a1", "name": "A"}, endpoint="GET /artists/{id}")
    assert (bare.genres, bare.followers, bare.popularity) == (None, None, None)
    with pytest.raises(SpotifyResponseError) as err:
        Artist.from_json({"id": "a1"}, endpoint="GET /artists/{id}")
    assert err.value.field == "name"


def test_album_parses_and_requires_name() -> None:
    raw = track_json()["album"] | {"label": "L", "external_ids": {"upc": "123"}}
    album = Album.from_json(raw, endpoint="GET /albums/{id}")
    assert (album.id, album.label, album.upc, album.popularity, album.genres) == ("album-1", "L", "123", None, None)
    with pytest.raises(SpotifyResponseError):
        Album.from_json({"id": "x"}, endpoint="GET /albums/{id}")
