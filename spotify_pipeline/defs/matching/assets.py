"""`spotify_track_matches`: which Spotify track each local song is."""

from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg
import sqlalchemy as sa

from spotify_pipeline.defs.partitions import refuse_capture_runs_for_other_days
from spotify_pipeline.defs.planning.plan import ensure_plan
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.usage import UsageTracker
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.matching.matcher import DEFAULT_THRESHOLD, MatchResult, SongToMatch, TrackMatcher
from spotify_pipeline.planning import WorkKind
from spotify_pipeline.spotify import SpotifyBudgetExhausted
from spotify_pipeline.warehouse.backlog import planned_songs, record_matching_cost, settle_requested_songs
from spotify_pipeline.warehouse.enrichment import (
    CatalogSong,
    MatchAttempt,
    apply_overrides,
    match_summary,
    record_match_attempts,
    utc_now,
)

#: Attempts are saved in batches of this size, so a run that dies keeps what it already learned.
SAVE_EVERY = 100
MATCH_RATE_CHECK = "match_rate_above_floor"


class MatchingConfig(dg.Config):
    threshold: float = DEFAULT_THRESHOLD
    """Lowest confidence (0..1) accepted as a match."""
    min_match_rate: float = 0.5
    """The match-rate check warns below this share of songs matched."""


@dg.asset(
    group_name="spotify",
    kinds={"spotify", "sql"},
    pool="spotify_api",
    deps=["spotify_refresh_plan"],
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

    Tries the songs the run's plan (`spotify_refresh_plan`) chose, in its order: songs users searched for
    first, then songs never matched or whose last miss is past the retry delay, within what the run's
    request budget has left but for the shares planned for the later steps; the rest waits for the next
    run. Songs are looked up by ISRC first (`isrc:CODE`), else by title and artist search; candidates are
    scored on normalized title, artist and duration, and accepted above the confidence threshold. Ties and
    weak candidates stay unmatched, with the reason.
    Every attempt is kept in `spotify_match_attempts` (saved as it goes, so a run that stops keeps them);
    a row in `spotify_match_overrides` always wins (a NULL track id there means "not on Spotify").
    """
    refuse_capture_runs_for_other_days(context)
    usage = UsageTracker(context, spotify, warehouse)
    engine = warehouse.engine
    run_id = context.run.run_id
    with engine.begin() as conn:
        overrides_applied = apply_overrides(conn, now=utc_now())
    plan = ensure_plan(context, spotify, warehouse)
    with engine.connect() as conn:
        songs = [
            song
            for kind in (WorkKind.ON_DEMAND, WorkKind.UNMATCHED)
            for song in planned_songs(conn, run_id, kind, not_tried_since=plan.planned_at)
        ]
    # The plan's requests for these songs are an estimate: matching may use whatever the run has left, but
    # for the shares planned for the later steps (stale tracks, popularity).
    later = plan.planned_requests(WorkKind.STALE_METADATA, WorkKind.POPULARITY)
    allowance = max(0, spotify.request_budget().remaining() - later)
    context.log.info(
        f"{len(songs)} planned songs to match within {allowance} requests ({overrides_applied} overrides applied)"
    )
    client = spotify.get_client()
    with client.spending_limit(allowance) as share:
        matching = match_and_record(context.log, TrackMatcher(client, threshold=config.threshold), engine, songs)
        spent = share.spent()
    with engine.begin() as conn:
        record_matching_cost(conn, run_id, songs_attempted=matching.attempted, requests=spent)
        settle_requested_songs(conn)

    with engine.connect() as conn:
        summary = match_summary(conn)
    match_rate = summary["matched"] / summary["songs"] if summary["songs"] else 0.0
    return dg.MaterializeResult(
        metadata={
            "songs_planned": len(songs),
            "songs_attempted": matching.attempted,
            "songs_deferred": len(songs) - matching.attempted,
            "requests_planned": plan.planned_requests(WorkKind.ON_DEMAND, WorkKind.UNMATCHED),
            "requests_allowed": allowance,
            "budget_exhausted": matching.budget_exhausted,
            "matched_now": matching.outcomes.get("matched", 0),
            "outcomes": dg.MetadataValue.json(matching.outcomes),
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


@dataclass
class Matching:
    """What `match_and_record` did: songs attempted (each recorded), their outcomes, and whether it stopped
    because the request budget was spent."""

    attempted: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    budget_exhausted: bool = False


def match_and_record(
    log: dg.DagsterLogManager, matcher: TrackMatcher, engine: sa.Engine, songs: Sequence[CatalogSong]
) -> Matching:
    """Match `songs`, recording every attempt (and each new match) in batches, so a run that stops keeps
    what it already learned. Stops early, successfully, when the request budget (or the caller's share of
    it) is spent: the song being matched then is left for a later run, unrecorded."""
    matching = Matching()
    pending: list[MatchResult] = []

    def save() -> None:
        with engine.begin() as conn:
            counts = record_match_attempts(conn, (_attempt(r) for r in pending), now=utc_now())
        for outcome, n in counts.items():
            matching.outcomes[outcome] = matching.outcomes.get(outcome, 0) + n
        matching.attempted += len(pending)
        pending.clear()

    try:
        for done, result in enumerate(matcher.match_many(_song(s) for s in songs), start=1):
            pending.append(result)
            if len(pending) >= SAVE_EVERY:
                save()
                log.info(f"attempted {done}/{len(songs)} songs")
    except SpotifyBudgetExhausted as exc:
        matching.budget_exhausted = True
        log.info(f"request budget spent after {matching.attempted + len(pending)}/{len(songs)} songs: {exc}")
    finally:
        save()  # keep the attempts made before a stop (the budget, or a stop-the-run error: quota, outage)
    return matching


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
