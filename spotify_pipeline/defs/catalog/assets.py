"""Raw Spotify pulls, the normalized Spotify catalogue, and the enriched `songs` it feeds."""

import datetime as dt

import dagster as dg

from spotify_pipeline.defs.catalog.landing import write_catalog
from spotify_pipeline.defs.partitions import (
    daily_check,
    daily_partitions,
    partition_dates,
    require_capture_day,
    single_run_backfill,
)
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.usage import UsageTracker
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.settings import get_settings
from spotify_pipeline.spotify import SpotifyResponseError, Track
from spotify_pipeline.warehouse.consistency import (
    as_utc,
    catalog_coverage,
    oldest_raw_fetch,
    raw_coverage,
    songs_agreeing_with_matches,
    track_read_times,
)
from spotify_pipeline.warehouse.enrichment import (
    enrich_songs,
    land_raw_partition,
    matched_tracks,
    raw_partition,
    search_view_summary,
    utc_now,
)
from spotify_pipeline.warehouse.migrations import applied, discover

RAW_ENDPOINT = "tracks"
RAW_COVERAGE_CHECK = "raw_covers_matched_tracks"
RAW_FRESHNESS_CHECK = "raw_partition_fresh"
CATALOG_COVERAGE_CHECK = "catalog_covers_raw_pull"
SONGS_CONSISTENCY_CHECK = "songs_agree_with_matches"


@dg.asset(
    group_name="spotify",
    kinds={"spotify", "sql"},
    partitions_def=daily_partitions,
    deps=["spotify_track_matches"],
    pool="spotify_api",
    backfill_policy=single_run_backfill,
    check_specs=[
        daily_check(
            RAW_COVERAGE_CHECK, "raw_spotify_tracks", blocking=True,
            description="Fails (and holds back the normalized catalogue) when a matched track has no raw row, "
            "found or not found, in the day's pull.",
        ),
        daily_check(
            RAW_FRESHNESS_CHECK, "raw_spotify_tracks",
            description="Warns when an object in the day's pull was sent by Spotify longer ago than the track "
            "cache TTL before the pull (a cache serving stale entries).",
        ),
    ],
)
def raw_spotify_tracks(
    context: dg.AssetExecutionContext, spotify: SpotifyResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Spotify track objects of every matched song, as Spotify returned them, per UTC pull date.

    Lands in `spotify_raw_responses` (endpoint `tracks`, one row per requested track id; status 404 with
    no body when Spotify no longer has the track). `fetched_at` is when Spotify sent the object: reads go
    through the client's cache (24 h), so a re-run the same day costs no requests and lands the same times.
    A capture asset: only today's partition can be materialized. Re-materializing it replaces it in one
    transaction: readers see the old partition or the new one, never a mix.
    """
    dates = partition_dates(context)
    require_capture_day(dates, "raw_spotify_tracks")
    usage = UsageTracker(context, spotify, warehouse)
    engine = warehouse.engine
    with engine.connect() as conn:
        track_ids = sorted({track_id for _, track_id in matched_tracks(conn)})
    client = spotify.get_client()
    tracks = client.get_tracks(track_ids)
    pulled_at = utc_now()
    responses = [
        {
            "request_key": track_id,
            "status": 200 if track is not None else 404,
            "fetched_at": track.fetched_at_utc(default=pulled_at) if track is not None else pulled_at,
            "body": track.raw if track is not None else None,
        }
        for track_id, track in tracks.items()
    ]
    day = dates[0]
    with engine.begin() as conn:
        land_raw_partition(conn, day, RAW_ENDPOINT, responses)
    with engine.connect() as conn:
        coverage = raw_coverage(conn, day, RAW_ENDPOINT)
        oldest = oldest_raw_fetch(conn, day, RAW_ENDPOINT)
    missing = sum(1 for r in responses if r["status"] == 404)
    max_age = dt.timedelta(seconds=get_settings().spotify_track_ttl_s)
    oldest_age = pulled_at - oldest if oldest is not None else dt.timedelta(0)
    return dg.MaterializeResult(
        metadata={
            "pull_date": day.isoformat(),
            "tracks_requested": len(track_ids),
            "tracks_landed": len(responses) - missing,
            "tracks_not_found": missing,
            **usage.metadata(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=RAW_COVERAGE_CHECK,
                passed=coverage.covered == coverage.expected,
                metadata={"matched_tracks": coverage.expected, "landed": coverage.covered,
                          "missing_sample": ", ".join(coverage.missing)},
                description=f"{coverage.covered} of {coverage.expected} matched tracks in the {day} pull",
            ),
            dg.AssetCheckResult(
                check_name=RAW_FRESHNESS_CHECK,
                passed=oldest_age <= max_age,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"oldest_object_age_hours": round(oldest_age.total_seconds() / 3600, 2),
                          "max_age_hours": round(max_age.total_seconds() / 3600, 2)},
            ),
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
    check_specs=[
        daily_check(
            CATALOG_COVERAGE_CHECK, "spotify_tracks", blocking=True,
            description="Fails (and holds back the songs enrichment) when a track found in the day's raw pull "
            "is missing from spotify_tracks, e.g. a body that is not a valid track object.",
        ),
    ],
)
def spotify_catalog(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """The normalized Spotify catalogue: `spotify_tracks`, `spotify_artists`, `spotify_albums` and
    `spotify_track_artists`, upserted from the day's raw partition.

    A derived asset: it reads only what `raw_spotify_tracks` captured, so any captured day can be rebuilt
    offline with no request. The newest read of a track wins: rebuilding an older day fills in only what the
    catalogue lacks or holds an older read of, so a backfill never rolls the catalogue back. Fields Spotify removed for Development Mode apps (popularity, followers,
    genres, label) stay NULL, meaning "not available to this app". A raw body that is not a valid track
    object is skipped and counted (`bodies_skipped`), never loaded half-way.
    """
    engine = warehouse.engine
    days = partition_dates(context)
    with engine.connect() as conn:
        raw_by_day = {day: raw_partition(conn, day, RAW_ENDPOINT) for day in days}
    empty = [day.isoformat() for day, raw in raw_by_day.items() if not raw]
    if empty:
        raise dg.Failure(
            f"nothing was captured on {', '.join(empty)} (no raw_spotify_tracks rows): the catalogue of a day "
            "can only be rebuilt from that day's pull. Nothing was written."
        )
    totals = {"tracks": 0, "artists": 0, "albums": 0}
    skipped: list[str] = []
    for day, raw in raw_by_day.items():
        parsed: list[tuple[Track, dt.datetime]] = []
        for key, status, fetched_at, body in raw:
            if status != 200:
                continue
            try:
                parsed.append((Track.from_json(body, endpoint="raw tracks", requested_id=key), as_utc(fetched_at)))
            except SpotifyResponseError as exc:
                skipped.append(key)
                context.log.warning(f"skipped raw track {key} of {day}: {exc}")
        with engine.begin() as conn:
            # The newest read wins: rebuilding an older day only fills in what the catalogue lacks or holds
            # an older read of, never rolls a track back.
            held = track_read_times(conn, [track.requested_id for track, _ in parsed])
            newer_or_new = [(t, at) for t, at in parsed if t.requested_id not in held or at >= held[t.requested_id]]
            counts = write_catalog(conn, newer_or_new)
        for kind in totals:
            totals[kind] += counts[kind]
    newest = days[-1]
    with engine.connect() as conn:
        coverage = catalog_coverage(conn, newest, RAW_ENDPOINT)
    common = {"pull_dates": ", ".join(d.isoformat() for d in days), "bodies_skipped": len(skipped)}
    yield dg.MaterializeResult(asset_key="spotify_tracks", metadata={**common, "tracks_upserted": totals["tracks"]})
    yield dg.MaterializeResult(asset_key="spotify_artists", metadata={**common, "artists_upserted": totals["artists"]})
    yield dg.MaterializeResult(asset_key="spotify_albums", metadata={**common, "albums_upserted": totals["albums"]})
    yield dg.AssetCheckResult(
        asset_key="spotify_tracks",
        check_name=CATALOG_COVERAGE_CHECK,
        passed=coverage.covered == coverage.expected,
        metadata={"raw_tracks": coverage.expected, "in_catalog": coverage.covered,
                  "missing_sample": ", ".join(coverage.missing)},
        description=f"{coverage.covered} of {coverage.expected} tracks of the {newest} pull in spotify_tracks",
    )


@dg.asset(
    group_name="spotify",
    kinds={"sql"},
    deps=["spotify_track_matches", "spotify_tracks", "spotify_albums", "spotify_popularity_snapshots"],
    # A daily job: older than a day plus slack means the schedule or a run is broken.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=26)),
    check_specs=[
        dg.AssetCheckSpec(
            SONGS_CONSISTENCY_CHECK, asset="songs_enriched", blocking=True,
            description="Fails when a song's Spotify track id disagrees with its current match: another track, "
            "none although the matched track was read, or one although the song has no match.",
        ),
    ],
)
def songs_enriched(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The Spotify columns of the local catalogue `songs` (track id, uri, popularity and when it was
    read, preview and album image URLs, explicit, match method and confidence, synced_at).

    Written from the current matches and the normalized catalogue; the catalogue's own columns (title,
    artist, album, duration, ISRC, year) are never touched. Running it again changes nothing but
    `spotify_synced_at`. A song whose match was withdrawn by an override gets its Spotify columns cleared.
    """
    with warehouse.engine.begin() as conn:
        counts = enrich_songs(conn, now=utc_now())
        summary = search_view_summary(conn)
        agreeing = songs_agreeing_with_matches(conn)
    return dg.MaterializeResult(
        metadata={**counts, "songs": summary["rows"], "share_enriched": summary["share_enriched"]},
        check_results=[
            dg.AssetCheckResult(
                check_name=SONGS_CONSISTENCY_CHECK,
                passed=agreeing.covered == agreeing.expected,
                metadata={"songs": agreeing.expected, "out_of_step": agreeing.expected - agreeing.covered,
                          "song_id_sample": ", ".join(agreeing.missing)},
            )
        ],
    )


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
