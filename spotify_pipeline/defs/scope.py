"""Which songs a run of the daily job works on: every song that needs it, or only the ones requested."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg

#: The assets of `spotify_daily_refresh` that take an `EnrichmentScope` config.
SCOPED_ASSETS = (
    "spotify_track_matches",
    "raw_spotify_tracks",
    "spotify_catalog",
    "spotify_popularity_snapshots",
    "songs_enriched",
)


class EnrichmentScope(dg.Config):
    """Restrict a run to some local songs (by `songs.id`); empty means every song that needs enrichment."""

    song_ids: list[int] = []


def scoped_run_config(song_ids: Iterable[int], assets: Sequence[str] = SCOPED_ASSETS) -> dg.RunConfig:
    """Run config that limits every scoped asset of the daily job to `song_ids`."""
    ids = sorted({int(i) for i in song_ids})
    return dg.RunConfig(ops={name: EnrichmentScope(song_ids=ids) for name in assets})
