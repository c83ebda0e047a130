"""Raw Spotify pulls, the normalized Spotify catalogue, and the enriched `songs` it feeds."""

import datetime as dt
from typing import Any

import dagster as dg
import sqlalchemy as sa

from spotify_pipeline.defs.catalog.normalize import normalize_tracks
from spotify_pipeline.defs.partitions import daily_partitions, partition_dates, single_run_backfill
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.scope import EnrichmentScope
from spotify_pipeline.defs.usage import UsageTracker
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.spotify import SpotifyResponseError, Track
from spotify_pipeline.warehouse.enrichment import (
    enrich_songs,
    land_raw_partition,
    matched_tracks,
    raw_partition,
    search_view_summary,
    upsert_catalog,
    utc_now,
)
from spotify_pipeline.warehouse.migrations import applied, discover

RAW_ENDPOINT = "tracks"
RAW_NOT_EMPTY_CHECK = "raw_partition_not_empty"
UNIQUE_TRACKS_CHECK = "unique_track_ids"


@dg.asset(
    group_name="spotify",
    kinds={"spotify", "sql"},
    partitions_def=daily_partitions,
    deps=["spotify_track_matches"],
    pool="spotify_api",
    backfill_policy=single_run_backfill,
    check_specs=[dg.AssetCheckSpec(
            RAW_NOT_EMPTY_CHECK, asset="raw_spotify_tracks",
            description="Fails when songs are matched but the pull landed no track object for them.",
        )],
)
def raw_spotify_tracks(
    context: dg.AssetExecutionContext,
    config: EnrichmentScope,
    spotify: SpotifyResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Spotify track objects of every matched song, as Spotify returned them, per UTC pull date.

    Lands in `spotify_raw_responses` (endpoint `tracks`, one row per requested track id; status 404 with
    no body when Spotify no longer has the track). Reads go through the client's cache (24 h), so a
    re-run the same day costs no requests. Re-materializing a partition replaces it in one transaction:
    readers see the old partition or the new one, never a mix.
    """
    usage = UsageTracker(context, spotify, warehouse)
    engine = warehouse.engine
    with engine.connect() as conn:
        matches = matched_tracks(conn, config.song_ids)
    track_ids = sorted({track_id for _, track_id in matches})
    client = spotify.get_client()
    tracks = client.get_tracks(track_ids)
    fetched_at = utc_now()
    responses = [
        {"request_key": track_id, "status": 200 if track is not None else 404, "fetched_at": fetched_at,
         "body": track.raw if track is not None else None}
        for track_id, track in tracks.items()
    ]
    dates = partition_dates(context)
    with engine.begin() as conn:
        for day in dates:
            # An on-demand run (some songs) adds their tracks to the day; only a full pull replaces it.
            land_raw_partition(conn, day, RAW_ENDPOINT, responses, replace=not config.song_ids)
    missing = sum(1 for r in responses if r["status"] == 404)
    return dg.MaterializeResult(
        metadata={
            "pull_dates": ", ".join(d.isoformat() for d in dates),
            "tracks_requested": len(track_ids),
            "tracks_landed": len(responses) - missing,
            "tracks_not_found": missing,
            **usage.metadata(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=RAW_NOT_EMPTY_CHECK,
                passed=not matches or len(responses) - missing > 0,
                metadata={"matched_songs": len(matches), "tracks_landed": len(responses) - missing},
            )
        ],
    )


@dg.multi_asset(
    group_name="spotify",
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    specs=[
        dg.AssetSpec(name, kinds={"sql"}, description=description, deps=["raw_spotify_tracks"])
        for name, description in (
            ("spotify_tracks", "Spotify tracks of the matched songs, normalized (one row per track id)."),
            ("spotify_artists", "Artists of those tracks and of their albums."),
            ("spotify_albums", "Albums of those tracks, with the largest cover image."),
        )
    ],
    check_specs=[dg.AssetCheckSpec(
            UNIQUE_TRACKS_CHECK, asset="spotify_tracks",
            description="Fails when a Spotify track id appears more than once in spotify_tracks.",
        )],
)
def spotify_catalog(context: dg.AssetExecutionContext, config: EnrichmentScope, warehouse: WarehouseResource):
    """The normalized Spotify catalogue: `spotify_tracks`, `spotify_artists`, `spotify_albums` and
    `spotify_track_artists`, upserted from the day's raw partition.

    Artists and albums come from the simplified objects inside each track, so this costs no requests.
    Fields Spotify removed for Development Mode apps (popularity, followers, genres, label) stay NULL,
    meaning "not available to this app". A raw body that is not a valid track object is skipped and
    counted (`bodies_skipped`), never loaded half-way.
    """
    engine = warehouse.engine
    day = partition_dates(context)[-1]  # the newest pull is the catalogue's current state
    scope = set(config.song_ids)
    with engine.connect() as conn:
        wanted = {track_id for _, track_id in matched_tracks(conn, config.song_ids)} if scope else None
        raw = raw_partition(conn, day, RAW_ENDPOINT)
    parsed: list[tuple[Track, dt.datetime]] = []
    skipped: list[str] = []
    for key, status, fetched_at, body in raw:
        if status != 200 or (wanted is not None and key not in wanted):
            continue
        try:
            parsed.append((Track.from_json(body, endpoint="raw tracks", requested_id=key), _as_datetime(fetched_at)))
        except SpotifyResponseError as exc:
            skipped.append(key)
            context.log.warning(f"skipped raw track {key}: {exc}")
    rows = normalize_tracks(parsed)
    with engine.begin() as conn:
        counts = upsert_catalog(
            conn,
            albums=list(rows.albums.values()),
            artists=list(rows.artists.values()),
            tracks=list(rows.tracks.values()),
            track_artists=rows.track_artists,
        )
        duplicates = conn.execute(
            sa.text("SELECT count(*) - count(DISTINCT track_id) FROM spotify_tracks")
        ).scalar_one()
    common = {"pull_date": day.isoformat(), "bodies_skipped": len(skipped)}
    yield dg.MaterializeResult(asset_key="spotify_tracks", metadata={**common, "tracks_upserted": counts["tracks"]})
    yield dg.MaterializeResult(asset_key="spotify_artists", metadata={**common, "artists_upserted": counts["artists"]})
    yield dg.MaterializeResult(asset_key="spotify_albums", metadata={**common, "albums_upserted": counts["albums"]})
    yield dg.AssetCheckResult(
        asset_key="spotify_tracks",
        check_name=UNIQUE_TRACKS_CHECK,
        passed=duplicates == 0,
        metadata={"duplicate_track_ids": duplicates},
    )


def _as_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.timezone.utc)


@dg.asset(
    group_name="spotify",
    kinds={"sql"},
    deps=["spotify_track_matches", "spotify_tracks", "spotify_albums", "spotify_popularity_snapshots"],
    # A daily job: older than a day plus slack means the schedule or a run is broken.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=26)),
)
def songs_enriched(config: EnrichmentScope, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The Spotify columns of the local catalogue `songs` (track id, uri, popularity and when it was
    read, preview and album image URLs, explicit, match method and confidence, synced_at).

    Written from the current matches and the normalized catalogue; the catalogue's own columns (title,
    artist, album, duration, ISRC, year) are never touched. Running it again changes nothing but
    `spotify_synced_at`. A song whose match was withdrawn by an override gets its Spotify columns cleared.
    """
    with warehouse.engine.begin() as conn:
        counts = enrich_songs(conn, now=utc_now(), song_ids=config.song_ids)
        summary = search_view_summary(conn)
    return dg.MaterializeResult(metadata={**counts, "songs": summary["rows"], "share_enriched": summary["share_enriched"]})


@dg.asset(group_name="spotify", kinds={"sql"}, deps=["songs_enriched"])
def songs_search(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The `songs_search` view: what analysts and `spotify-pipeline search` read.

    One row per local song with its Spotify enrichment and `enrichment_status` ('unmatched', 'matched',
    or 'stale' when not synced in 26 h). The view is defined by the warehouse migrations; this asset
    checks the schema is current and reports how much of the catalogue is enriched.
    """
    engine = warehouse.engine
    expected = {m.version for m in discover(engine.dialect.name)}
    missing = sorted(expected - {m.version for m in applied(engine)})
    if missing:
        raise dg.Failure(
            f"the warehouse schema is behind (migrations {missing} not applied): run `spotify-pipeline migrate`"
        )
    with engine.connect() as conn:
        summary = search_view_summary(conn)
    return dg.MaterializeResult(metadata=summary)
