"""Spotify track objects -> rows of the normalized catalogue tables.

Artists and albums come from the simplified objects inside each track, so normalizing costs no requests.
Fields Spotify removed for Development Mode apps arrive as None and stay NULL ("not available"), never 0.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from spotify_pipeline.spotify import Track


@dataclass
class CatalogRows:
    albums: dict[str, dict[str, Any]] = field(default_factory=dict)
    artists: dict[str, dict[str, Any]] = field(default_factory=dict)
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)
    artists_by_track: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def track_artists(self) -> list[dict[str, Any]]:
        return [row for rows in self.artists_by_track.values() for row in rows]


def normalize_tracks(tracks: Iterable[tuple[Track, dt.datetime]]) -> CatalogRows:
    """Rows for `spotify_albums`, `spotify_artists`, `spotify_tracks`, `spotify_track_artists`.

    Each track comes with the time it was read from Spotify. Tracks are keyed by the id the pipeline asked
    for (a relinked track records the id Spotify served in `served_track_id`).
    """
    rows = CatalogRows()
    for track, fetched_at in tracks:
        album = track.album
        rows.albums[album.id] = {
            "album_id": album.id,
            "name": album.name,
            "album_type": album.album_type,
            "release_date": album.release_date,
            "release_date_precision": album.release_date_precision,
            "total_tracks": album.total_tracks,
            "image_url": _largest_image(album.images),
            "uri": album.uri,
        }
        for artist in [*album.artists, *track.artists]:
            rows.artists.setdefault(artist.id, {"artist_id": artist.id, "name": artist.name, "uri": artist.uri})
        key = track.requested_id
        rows.tracks[key] = {
            "track_id": key,
            "name": track.name,
            "album_id": album.id,
            "duration_ms": track.duration_ms,
            "explicit": track.explicit,
            "isrc": track.isrc,
            "disc_number": track.disc_number,
            "track_number": track.track_number,
            "preview_url": track.raw.get("preview_url") if isinstance(track.raw.get("preview_url"), str) else None,
            "uri": track.uri,
            "served_track_id": track.id if track.relinked else None,
            "popularity": track.popularity,
            "popularity_read_at": fetched_at if track.popularity is not None else None,
            "fetched_at": fetched_at,
        }
        rows.artists_by_track[key] = [
            {"track_id": key, "position": position, "artist_id": artist.id}
            for position, artist in enumerate(track.artists)
        ]
    return rows


def _largest_image(images: list[Any]) -> str | None:
    if not images:
        return None
    return max(images, key=lambda image: (image.width or 0) * (image.height or 0)).url
