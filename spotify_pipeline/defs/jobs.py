"""The daily refresh job and its 06:00 UTC schedule."""

from __future__ import annotations

import dagster as dg

from spotify_pipeline.defs.catalog.assets import raw_spotify_tracks, songs_enriched, songs_search, spotify_catalog
from spotify_pipeline.defs.matching.assets import spotify_track_matches
from spotify_pipeline.defs.planning.assets import spotify_refresh_backlog, spotify_refresh_plan
from spotify_pipeline.defs.popularity.assets import spotify_popularity_movers, spotify_popularity_snapshots

DAILY_ASSETS = [
    spotify_refresh_plan,
    spotify_track_matches,
    raw_spotify_tracks,
    spotify_catalog,
    spotify_popularity_snapshots,
    songs_enriched,
    songs_search,
    spotify_popularity_movers,
    spotify_refresh_backlog,
]

spotify_daily_refresh = dg.define_asset_job(
    name="spotify_daily_refresh",
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),
    description=(
        "Plan the run's Spotify request budget, then within it: match new songs, pull their tracks and the "
        "stale ones, normalize the catalogue, capture today's popularity, write the Spotify columns back to "
        "`songs`, rank the day's movers and report the backlog left for the next run."
    ),
    tags={"spotify_pipeline/job": "daily_refresh"},
)

# The partitions include the current UTC day, so the 06:00 UTC tick targets today's partition.
spotify_daily_refresh_schedule = dg.build_schedule_from_partitioned_job(
    spotify_daily_refresh,
    hour_of_day=6,
    minute_of_hour=0,
    name="spotify_daily_refresh_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
