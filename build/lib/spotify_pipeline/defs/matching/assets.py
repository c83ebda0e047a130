"""`spotify_track_matches`: which Spotify track each local song is."""

from collections.abc import Sequence

import dagster as dg
import sqlalchemy as sa

from spotify_pipeline.defs.partitions import refuse_capture_runs_for_other_days
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.usage import UsageTracker
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.matching.matcher import DEFAULT_THRESHOLD, MatchResult, SongToMatch, TrackMatcher
from spotify_pipeline.warehouse.enrichment import (
    CatalogSong,
    MatchAttempt,
    apply_overrides,
    match_summary,
    record_match_attempts,
    songs_to_match,
    utc_now,
)

#: Attempts are saved in batches of this size, so a run that dies keeps what it already learned.
SAVE_EVERY = 100
MATCH_RATE_CHECK = "match_rate_above_floor"


class MatchingConfig(dg.Config):
    threshold: float = DEFAULT_THRESHOLD
    """Lowest confidence (0..1) accepted as a match."""
    miss_retry_days: float = 7.0
    """A song that found no match is not searched again for this many days."""
    min_match_rate: float = 0.5
    """The match-rate check warns below this share of songs matched."""


@dg.asset(
    group_name="spotify",
    kinds={"spotify", "sql"},
    pool="spotify_api",
    check_specs=[dg.AssetCheckSpec(
            MATCH_RATE_CHECK, asset="spotify_track_matches",
            description="Warns when the share of catalogue songs matched to a Spotify track falls below "
            "the floor (a sign of a broken search or a catalogue Spotify does not have).",
        )],
)
def spotify_track_matches(
    context: dg.AssetExecutionContext,
    config: MatchingConfig,
    spotify: SpotifyResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Which Spotify track each local song (`songs`) is, in table `spotify_track_matches`.

    Songs without a match are looked up by ISRC first (`isrc:CODE`), else by title and artist search;
    candidates are scored on normalized title, artist and duration, and accepted above the confidence
    threshold. Ties and weak candidates stay unmatched, with the reason. Every attempt is kept in
    `spotify_match_attempts`; a miss is not searched again for `miss_retry_days`; a row in
    `spotify_match_overrides` always wins (a NULL track id there means "not on Spotify").
    """
    refuse_capture_runs_for_other_days(context)
    usage = UsageTracker(context, spotify, warehouse)
    engine = warehouse.engine
    now = utc_now()
    with engine.begin() as conn:
        overrides_applied = apply_overrides(conn, now=now)
        songs = songs_to_match(conn, now=now, miss_retry_days=config.miss_retry_days)
    context.log.info(f"{len(songs)} songs to match ({overrides_applied} overrides applied)")
    matcher = TrackMatcher(spotify.get_client(), threshold=config.threshold)
    outcomes = match_and_record(context.log, matcher, engine, songs)

    with engine.connect() as conn:
        summary = match_summary(conn)
    match_rate = summary["matched"] / summary["songs"] if summary["songs"] else 0.0
    return dg.MaterializeResult(
        metadata={
            "songs_attempted": len(songs),
            "matched_now": outcomes.get("matched", 0),
            "outcomes": dg.MetadataValue.json(outcomes),
            "overrides_applied": overrides_applied,
            "songs_total": summary["songs"],
            "songs_matched": summary["matched"],
            "match_rate": round(match_rate, 4),
            **usage.metadata(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=MATCH_RATE_CHECK,
                passed=match_rate >= config.min_match_rate,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"match_rate": round(match_rate, 4), "floor": config.min_match_rate},
                description=f"{summary['matched']} of {summary['songs']} songs matched",
            )
        ],
    )


def match_and_record(
    log: dg.DagsterLogManager, matcher: TrackMatcher, engine: sa.Engine, songs: Sequence[CatalogSong]
) -> dict[str, int]:
    """Match `songs`, recording every attempt (and each new match) in batches, so a run that stops keeps
    what it already learned; returns the count of each outcome."""
    outcomes: dict[str, int] = {}
    pending: list[MatchResult] = []

    def save() -> None:
        with engine.begin() as conn:
            counts = record_match_attempts(conn, (_attempt(r) for r in pending), now=utc_now())
        for outcome, n in counts.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        pending.clear()

    try:
        for done, result in enumerate(matcher.match_many(_song(s) for s in songs), start=1):
            pending.append(result)
            if len(pending) >= SAVE_EVERY:
                save()
                log.info(f"attempted {done}/{len(songs)} songs")
    finally:
        save()  # keep the attempts made before a stop-the-run error (rate limit, quota, outage)
    return outcomes


def _song(song: CatalogSong) -> SongToMatch:
    return SongToMatch(
        song_id=song.song_id,
        title=song.title,
        artist=song.artist,
        album=song.album,
        duration_ms=song.duration_ms,
        isrc=song.isrc,
        release_year=song.release_year,
    )


def _attempt(result: MatchResult) -> MatchAttempt:
    return MatchAttempt(
        song_id=result.song_id,
        method=result.method,
        outcome=result.outcome,
        track_id=result.track_id,
        confidence=max(0.0, min(1.0, float(result.confidence))),
        reason=result.reason,
        candidates=result.candidates,
    )
