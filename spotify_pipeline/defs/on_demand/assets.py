"""`spotify_on_demand_enrichment`: songs someone asked for, enriched now, beside the daily partitions."""

import dagster as dg

from spotify_pipeline.defs.catalog.landing import write_catalog
from spotify_pipeline.defs.matching.assets import match_and_record
from spotify_pipeline.defs.planning.plan import read_tracks_within
from spotify_pipeline.defs.resources import JOB_TAG, ON_DEMAND_JOB, SpotifyResource
from spotify_pipeline.defs.usage import UsageTracker
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.matching.matcher import DEFAULT_THRESHOLD, TrackMatcher
from spotify_pipeline.warehouse.backlog import record_requested_songs, settle_requested_songs
from spotify_pipeline.warehouse.enrichment import enrich_songs, matched_tracks, songs_to_match, utc_now

#: A song someone asked for is searched again even if it missed recently, but at most this often (days).
REQUESTED_MISS_RETRY_DAYS = 1 / 24


class OnDemandRequest(dg.Config):
    song_ids: list[int]
    """The local songs (`songs.id`) to enrich."""
    threshold: float = DEFAULT_THRESHOLD
    """Lowest confidence (0..1) accepted as a match."""


# Its own pool: a daily run may hold "spotify_api" for most of a day at a large catalogue's budget, and songs
# users searched for must not queue behind it. The shared rate limiter and the day's request pool still bound
# what both send together.
ON_DEMAND_POOL = "spotify_on_demand"


@dg.asset(group_name="spotify", kinds={"spotify", "sql"}, pool=ON_DEMAND_POOL, deps=["spotify_track_matches"])
def spotify_on_demand_enrichment(
    context: dg.AssetExecutionContext,
    config: OnDemandRequest,
    spotify: SpotifyResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Songs a user searched for (`spotify-pipeline search --enrich`), matched and enriched within a minute
    instead of at the next daily run.

    For just those songs: match the unmatched ones (even inside the daily miss-retry window, at most once an
    hour per song), read their tracks from Spotify (through the cache), upsert the normalized catalogue and
    write the Spotify columns of `songs`. It never lands raw pulls or popularity snapshots and never
    materializes a daily partition, so a day's partitions only ever hold complete captures. The sensor
    `spotify_enrichment_requests` launches it; each materialization is one batch of requests. The songs are
    remembered (`spotify_requested_songs`) until tried: when the run's request budget runs out first, the
    run ends successfully and the next daily run takes the rest before any other work.
    """
    usage = UsageTracker(context, spotify, warehouse)
    engine = warehouse.engine
    requested = sorted(set(config.song_ids))
    with engine.begin() as conn:
        record_requested_songs(conn, requested, now=utc_now())
    with engine.connect() as conn:
        songs = songs_to_match(conn, now=utc_now(), miss_retry_days=REQUESTED_MISS_RETRY_DAYS, song_ids=requested)
    client = spotify.get_client()
    budget = spotify.request_budget()
    matching = match_and_record(context.log, TrackMatcher(client, threshold=config.threshold), engine, songs)
    with engine.connect() as conn:
        matches = matched_tracks(conn, requested)
    read = read_tracks_within(
        client, sorted({track_id for _, track_id in matches}), allowance=budget.remaining(), need_fresh_popularity=True
    )
    now = utc_now()
    found = [(track, track.fetched_at_utc(default=now)) for track in read.tracks.values() if track is not None]
    with engine.begin() as conn:
        written = write_catalog(conn, found)
        enriched = enrich_songs(conn, now=utc_now(), song_ids=requested)
        settle_requested_songs(conn)
    exhausted = matching.budget_exhausted or read.budget_exhausted
    if exhausted:
        context.log.warning(
            f"the run's request budget ({budget.total}) is spent: {len(songs) - matching.attempted} songs and "
            f"{len(read.deferred)} tracks are left for the next daily run"
        )
    return dg.MaterializeResult(
        metadata={
            "songs_requested": len(requested),
            "songs_attempted": matching.attempted,
            "songs_deferred": len(songs) - matching.attempted,
            "matched_now": matching.outcomes.get("matched", 0),
            "songs_matched": len(matches),
            "tracks_read": written["tracks"],
            "tracks_deferred": len(read.deferred),
            "budget_exhausted": exhausted,
            **enriched,
            **usage.metadata(),
        }
    )


spotify_on_demand_enrichment_job = dg.define_asset_job(
    name="spotify_on_demand_refresh",
    selection=dg.AssetSelection.assets(spotify_on_demand_enrichment),
    description="Enrich the songs users asked for (search --enrich) now; launched by spotify_enrichment_requests.",
    tags={JOB_TAG: ON_DEMAND_JOB},  # which lets its runs spend the day's on-demand reserve
)
