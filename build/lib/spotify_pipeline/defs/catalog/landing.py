"""Track objects into the normalized catalogue: the one write path of every asset that reads tracks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from spotify_pipeline.defs.catalog.normalize import normalize_tracks
from spotify_pipeline.spotify import Track
from spotify_pipeline.warehouse.enrichment import upsert_catalog

# Popularity belongs to the daily snapshots; endpoints that may omit it (the user library's) must not erase it.
_POPULARITY_COLUMNS = ("popularity", "popularity_read_at")


def write_catalog(
    conn: sa.Connection, tracks: Iterable[tuple[Track, dt.datetime]], *, with_popularity: bool = True
) -> dict[str, int]:
    """Upsert `tracks` (each with the time Spotify sent it) with their albums, artists and artist links;
    returns the rows written per table. Without `with_popularity`, stored popularity is left as it is."""
    rows = normalize_tracks(tracks)
    track_rows = list(rows.tracks.values())
    if not with_popularity:
        track_rows = [{k: v for k, v in row.items() if k not in _POPULARITY_COLUMNS} for row in track_rows]
    return upsert_catalog(
        conn,
        albums=list(rows.albums.values()),
        artists=list(rows.artists.values()),
        tracks=track_rows,
        track_artists=rows.track_artists,
    )
