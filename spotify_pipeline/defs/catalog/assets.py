"""Raw Spotify pulls, the normalized Spotify catalogue, and the enriched `songs` it feeds."""

import datetime as dt

import dagster as dg

from spotify_pipeline.defs.catalog.landing import write_catalog
from spotify_pipeline.defs.partitions import (
    assets_in_run,
    daily_check,
    daily_partitions,
    partition_dates,
    require_capture_day,
    single_run_backfill,
)
from spotify_pipeline.defs.planning.plan import ensure_plan, read_tracks_within
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.usage import UsageTracker
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.planning import WorkKind
from spotify_pipeline.settings import get_settings
from spotify_pipeline.spotify import SpotifyResponseError, Track
from spotify_pipeline.warehouse.backlog import RAW_TRACKS_ENDPOINT, planned_tracks, tracks_matched_since
from spotify_pipeline.warehouse.consistency import (
    as_utc,
    catalog_coverage,
    oldest_raw_fetch,
    raw_keys_coverage,
    songs_agreeing_with_matches,
    track_read_times,
)
from spotify_pipeline.warehouse.enrichment import (
    enrich_songs,
    land_raw_partition,
    raw_partition,
    search_view_summary,
    utc_now,
)
from spotify_pipeline.warehouse.migrations import applied, discover

RAW_ENDPOINT = RAW_TRACKS_ENDPOINT
RAW_COVERAGE_CHECK = "raw_covers_planned_tracks"
RAW_FRESHNESS_CHECK = "raw_partition_fresh"
CATALOG_COVERAGE_CHECK = "catalog_covers_raw_pull"
SONGS_CONSISTENCY_CHECK = "songs_agree_with_matches"


@dg.asset(
    group_name="spotify",
    kinds={"spotify", "sql"},
    partitions_def=daily_partitions,
    deps=["spotify_track_matches", "spotify_refresh_plan"],
    pool="spotify_api",
    backfill_policy=single_run_backfill,
    check_specs=[
        daily_check(
            RAW_COVERAGE_CHECK, "raw_spotify_tracks", blocking=True,
            description="Fails (and holds back the normalized catalogue) when a track this pull read, found or "
            "not found, has no row in the day's raw partition.",
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
    """Spotify track objects, as Spotify returned them, per UTC pull date: what the day's runs read.

    Reads the stale tracks the run's plan chose (metadata older than the track TTL or never read, stalest
    first), then the tracks this run just matched, within what the run's request budget has left but for
    the popularity capture's planned share; what it does not reach waits for the next run (a match not read
    yet is first in line there). Lands in
    `spotify_raw_responses` (endpoint `tracks`, one row per track read; status 404 with no body when Spotify
    no longer has the track), added to what earlier runs of the day landed, in one transaction. `fetched_at`
    is when Spotify sent the object. A capture asset: only today's partition can be materialized.
    """
    dates = partition_dates(context)
    require_capture_day(dates, "raw_spotify_tracks")
    usage = UsageTracker(context, spotify, warehouse)
    engine = warehouse.engine
    plan = ensure_plan(context, spotify, warehouse)
    with engine.connect() as conn:
        new_matches = tracks_matched_since(conn, plan.planned_at)
        stale = planned_tracks(conn, context.run.run_id, WorkKind.STALE_METADATA)
    # The plan's stale tracks first: their share is what keeps them from waiting behind new matches for ever.
    wanted = list(dict.fromkeys([*stale, *new_matches]))
    # Whatever the run has left, but the popularity capture's share, which runs after this step.
    allowance = max(0, spotify.request_budget().remaining() - plan.planned_requests(WorkKind.POPULARITY))
    read = read_tracks_within(spotify.get_client(), wanted, allowance=allowance)
    pulled_at = utc_now()
    responses = [
        {
            "request_key": track_id,
            "status": 200 if track is not None else 404,
            "fetched_at": track.fetched_at_utc(default=pulled_at) if track is not None else pulled_at,
            "body": track.raw if track is not None else None,
        }
        for track_id, track in read.tracks.items()
    ]
    day = dates[0]
    with engine.begin() as conn:
        land_raw_partition(conn, day, RAW_ENDPOINT, responses, replace=False)
    with engine.connect() as conn:
        coverage = raw_keys_coverage(conn, day, RAW_ENDPOINT, list(read.tracks))
        oldest = oldest_raw_fetch(conn, day, RAW_ENDPOINT)
    if read.deferred:
        context.log.info(f"{len(read.deferred)} of {len(wanted)} tracks left for the next run (request budget)")
    missing = sum(1 for r in responses if r["status"] == 404)
    max_age = dt.timedelta(seconds=get_settings().spotify_track_ttl_s)
    oldest_age = pulled_at - oldest if oldest is not None else dt.timedelta(0)
    return dg.MaterializeResult(
        metadata={
            "pull_date": day.isoformat(),
            "tracks_planned": len(stale),
            "tracks_newly_matched": len(new_matches),
            "tracks_requested": len(wanted),
            "tracks_landed": len(responses) - missing,
            "tracks_not_found": missing,
            "tracks_deferred": len(read.deferred),
            "requests_allowed": allowance,
            "budget_exhausted": read.budget_exhausted,
            **usage.metadata(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=RAW_COVERAGE_CHECK,
                passed=coverage.covered == coverage.expected,
                metadata={"tracks_read": coverage.expected, "landed": coverage.covered,
                          "missing_sample": ", ".join(coverage.missing)},
                description=f"{coverage.covered} of the {coverage.expected} tracks read in the {day} pull",
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
    `spotify_track_artists`, upserted from the day's raw partition (the tracks the day's runs read).

    A derived asset: it reads only what `raw_spotify_tracks` captured, so any captured day can be rebuilt
    offline with no request. The newest read of a track wins: rebuilding an older day fills in only what the
    catalogue lacks or holds an older read of, so a backfill never rolls the catalogue back. Fields Spotify
    removed for Development Mode apps (popularity, followers, genres, label) stay NULL, meaning "not available to this app". A raw body that is not a valid track
    object is skipped and counted (`bodies_skipped`), never loaded half-way.
    """
    engine = warehouse.engine
    days = partition_dates(context)
    with engine.connect() as conn:
        raw_by_day = {day: raw_partition(conn, day, RAW_ENDPOINT) for day in days}
    empty = [day.isoformat() for day, raw in raw_by_day.items() if not raw]
    # A pull of this run that found nothing due (everything fresh, or no budget) is a day with nothing to
    # normalize; a day no pull ever captured cannot be rebuilt.
    if empty and dg.AssetKey("raw_spotify_tracks") not in assets_in_run(context):
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
