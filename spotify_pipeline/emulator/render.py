"""Catalogue records as Spotify's JSON objects, in both modes, rendered once and reused.

Each (record, mode, market) is serialised once and cached as bytes. Track popularity changes by day, so
a track is cached as the two byte strings around its popularity value and a request only splices the
day's number in: no JSON encoding on the hot path. Object `href`s are Spotify's canonical URLs, which
keeps the bytes identical whatever host and port the emulator listens on.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from spotify_pipeline.emulator.catalog import MARKETS, Album, Artist, Catalog, Image, Track, spotify_id, stable_hash
from spotify_pipeline.emulator.errors import dumps

API = "https://api.spotify.com/v1"
OPEN = "https://open.spotify.com"
_POPULARITY_SENTINEL = -918_273_645  # a number no record contains, split out of the rendered template
_SENTINEL_BYTES = str(_POPULARITY_SENTINEL).encode()
_RELINK_SHARE = 25  # one (track, market) pair in 25 is relinked, as licensing makes Spotify do


def _urls(kind: str, object_id: str) -> dict[str, Any]:
    return {
        "external_urls": {"spotify": f"{OPEN}/{kind}/{object_id}"},
        "href": f"{API}/{kind}s/{object_id}",
        "id": object_id,
    }


def _images(images: tuple[Image, ...]) -> list[dict[str, Any]]:
    return [{"height": i.height, "url": i.url, "width": i.width} for i in images]


class Renderer:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        # Licensing: one album in eight is missing from a handful of markets.
        self._album_markets = [self._markets_for(album) for album in catalog.albums]

    # -- availability -------------------------------------------------------------------------------------

    def _markets_for(self, album: Album) -> list[str]:
        if album.available_markets is not None:
            return list(album.available_markets)
        if stable_hash(self.catalog.seed, "licensing", album.index) % 8:
            return list(MARKETS)
        missing = {MARKETS[stable_hash(self.catalog.seed, "missing", album.index, n) % len(MARKETS)] for n in range(6)}
        return [m for m in MARKETS if m not in missing]

    def is_playable(self, track: Track, market: str) -> bool:
        return market in self._album_markets[track.album_index]

    def relinked_id(self, track: Track, market: str) -> str | None:
        """The id Spotify would substitute for `track` in `market`, if it relinks it there."""
        if stable_hash(self.catalog.seed, "relink", track.index, market) % _RELINK_SHARE:
            return None
        return spotify_id(self.catalog.seed, f"relink-{market}", track.index)

    # -- simplified objects -----------------------------------------------------------------------------

    def simplified_artist(self, artist: Artist) -> dict[str, Any]:
        return {
            **_urls("artist", artist.id),
            "name": artist.name,
            "type": "artist",
            "uri": f"spotify:artist:{artist.id}",
        }

    def simplified_album(self, album: Album, mode: str, market: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "album_type": album.album_type,
            "artists": [self.simplified_artist(self.catalog.artists[i]) for i in album.artist_indices],
        }
        # Kept with a market too: the OpenAPI description makes album `available_markets` required.
        if mode == "extended":
            body["available_markets"] = self._album_markets[album.index]
        body.update(_urls("album", album.id))
        body.update(
            {
                "images": _images(album.images),
                "name": album.name,
                "release_date": album.release_date,
                "release_date_precision": album.release_date_precision,
                "total_tracks": album.total_tracks if album.total_tracks is not None else len(album.track_indices),
                "type": "album",
                "uri": f"spotify:album:{album.id}",
            }
        )
        return body

    def _track_fields(self, track: Track, mode: str, market: str | None, *, full: bool) -> dict[str, Any]:
        """Track fields in Spotify's (alphabetical) order; `full` adds what only full track objects carry."""
        extended = mode == "extended"
        body: dict[str, Any] = {}
        if full:
            body["album"] = self.simplified_album(self.catalog.albums[track.album_index], mode, market)
        body["artists"] = [self.simplified_artist(self.catalog.artists[i]) for i in track.artist_indices]
        if extended and market is None:
            body["available_markets"] = self._album_markets[track.album_index]
        body["disc_number"] = track.disc_number
        body["duration_ms"] = track.duration_ms
        body["explicit"] = track.explicit
        if full:
            body["external_ids"] = {"isrc": track.isrc} if track.isrc else {}
        relinked = self.relinked_id(track, market) if extended and market is not None else None
        body.update(_urls("track", relinked or track.id))
        body["is_local"] = False
        if market is not None:
            playable = relinked is not None or self.is_playable(track, market)
            body["is_playable"] = playable
            if relinked is not None:
                body["linked_from"] = {**_urls("track", track.id), "type": "track", "uri": f"spotify:track:{track.id}"}
            elif not playable:
                body["restrictions"] = {"reason": "market"}
        body["name"] = track.name
        if full and extended:
            body["popularity"] = _POPULARITY_SENTINEL
        body["preview_url"] = track.preview_url
        body["track_number"] = track.track_number
        body["type"] = "track"
        body["uri"] = f"spotify:track:{relinked or track.id}"
        return body

    # -- cached byte templates ------------------------------------------------------------------------------

    @lru_cache(maxsize=200_000)  # noqa: B019 - the renderer lives as long as the app; the cache is the point
    def _track_template(self, index: int, mode: str, market: str | None) -> tuple[bytes, bytes | None]:
        encoded = dumps(self._track_fields(self.catalog.tracks[index], mode, market, full=True))
        if mode != "extended":
            return encoded, None
        prefix, suffix = encoded.split(_SENTINEL_BYTES)
        return prefix, suffix

    def track(self, track: Track, mode: str, market: str | None, day: date) -> bytes:
        """A full track object; popularity (extended mode) is the track's popularity on `day`."""
        prefix, suffix = self._track_template(track.index, mode, market)
        if suffix is None:
            return prefix
        return prefix + str(self.catalog.popularity_on(track, day)).encode() + suffix

    @lru_cache(maxsize=50_000)  # noqa: B019
    def artist(self, index: int, mode: str) -> bytes:
        artist = self.catalog.artists[index]
        body: dict[str, Any] = {"external_urls": {"spotify": f"{OPEN}/artist/{artist.id}"}}
        if mode == "extended":
            body["followers"] = {"href": None, "total": artist.followers}
        body["genres"] = list(artist.genres)
        body["href"] = f"{API}/artists/{artist.id}"
        body["id"] = artist.id
        body["images"] = _images(artist.images)
        body["name"] = artist.name
        if mode == "extended":
            body["popularity"] = artist.popularity
        body["type"] = "artist"
        body["uri"] = f"spotify:artist:{artist.id}"
        return dumps(body)

    @lru_cache(maxsize=50_000)  # noqa: B019
    def album(self, index: int, mode: str, market: str | None) -> bytes:
        album = self.catalog.albums[index]
        extended = mode == "extended"
        simplified = self.simplified_album(album, mode, market)
        tracks = [self._track_fields(self.catalog.tracks[i], mode, market, full=False) for i in album.track_indices]
        body: dict[str, Any] = {"album_type": simplified.pop("album_type"), "artists": simplified.pop("artists")}
        if "available_markets" in simplified:
            body["available_markets"] = simplified.pop("available_markets")
        owner = self.catalog.artists[album.artist_indices[0]].label
        body["copyrights"] = [
            {"text": f"© {album.copyright_year} {owner}", "type": "C"},
            {"text": f"℗ {album.copyright_year} {owner}", "type": "P"},
        ]
        body["external_ids"] = {"upc": album.upc}
        body["external_urls"] = simplified.pop("external_urls")
        body["genres"] = []  # Spotify has returned empty album genres for years
        body["href"] = simplified.pop("href")
        body["id"] = simplified.pop("id")
        body["images"] = simplified.pop("images")
        if extended:
            body["label"] = album.label
        body["name"] = simplified.pop("name")
        if extended:
            body["popularity"] = album.popularity
        body["release_date"] = simplified.pop("release_date")
        body["release_date_precision"] = simplified.pop("release_date_precision")
        body["total_tracks"] = simplified.pop("total_tracks")
        body["tracks"] = {
            "href": f"{API}/albums/{album.id}/tracks?offset=0&limit=50",
            "items": tracks,
            "limit": 50,
            "next": None,
            "offset": 0,
            "previous": None,
            "total": len(tracks),
        }
        body["type"] = "album"
        body["uri"] = simplified.pop("uri")
        return dumps(body)


def paging(
    href: str,
    items: list[bytes],
    limit: int,
    offset: int,
    total: int,
    page_url: str | None,
    *,
    has_next: bool | None = None,
) -> bytes:
    """An offset paging object around already-rendered items. `page_url` formats `offset=`/`limit=` links."""
    nxt = prv = None
    if page_url is not None:
        if has_next is None:
            has_next = offset + limit < total
        if has_next:
            nxt = page_url.format(offset=offset + limit, limit=limit)
        if offset > 0:
            prv = page_url.format(offset=max(0, offset - limit), limit=limit)
    head = dumps({"href": href, "limit": limit, "next": nxt, "offset": offset, "previous": prv, "total": total})
    return head[:-1] + b',"items":[' + b",".join(items) + b"]}"
