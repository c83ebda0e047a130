"""A run's plan, shared by its steps, and how a step spends its share of the run's request budget.

The first step of a run that needs the plan makes it (`ensure_plan`): in the daily job that is
`spotify_refresh_plan`, at its head; a run of some assets alone makes it in its first Spotify step. The plan is
stored under the run id (`spotify_pipeline.warehouse.backlog`), so every step process of a multiprocess run
reads the same one, and a run only plans the kinds of work whose assets it materializes.

Each Spotify step then spends only its share:

* `spotify_track_matches` tries the planned songs (on demand first), within what the run has left but for the
  shares planned for the later steps (the plan's requests for songs are an estimate);
* `raw_spotify_tracks` reads the planned stale tracks, then the tracks the run just matched (never read yet),
  within what the run has left but for the popularity capture's planned share;
* `spotify_popularity_snapshots` captures the tracks read today (their objects carry popularity, so that costs
  nothing within the popularity TTL), then the planned tracks, within what the run has left.

Every step stops cleanly when its share or the run's budget is spent (`SpotifyBudgetExhausted`): it keeps what
it did, ends successfully, and what it did not reach stays in the backlog for the next run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

from spotify_pipeline.defs.partitions import assets_in_run, utc_today
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.planning import (
    DEFAULT_SEARCHES_PER_SONG,
    PRIORITY,
    BacklogColumns,
    ColumnPlan,
    CostModel,
    WorkKind,
    plan_columns,
)
from spotify_pipeline.settings import get_settings
from spotify_pipeline.spotify import Capabilities, SpotifyBudgetExhausted, SpotifyClient, Track
from spotify_pipeline.warehouse.backlog import (
    StoredPlan,
    load_plan,
    measure_backlog,
    measured_searches_per_song,
    save_plan,
)
from spotify_pipeline.warehouse.enrichment import utc_now

#: A song that found no match is planned again after this many days (a song asked for on demand at once).
DEFAULT_MISS_RETRY_DAYS = 7.0
#: Which kinds of work each Spotify-calling asset of the daily job does.
KINDS_BY_ASSET: dict[dg.AssetKey, tuple[WorkKind, ...]] = {
    dg.AssetKey("spotify_track_matches"): (WorkKind.ON_DEMAND, WorkKind.UNMATCHED),
    dg.AssetKey("raw_spotify_tracks"): (WorkKind.STALE_METADATA,),
    dg.AssetKey("spotify_popularity_snapshots"): (WorkKind.POPULARITY,),
}


def kinds_in_run(context: dg.AssetExecutionContext) -> tuple[WorkKind, ...]:
    """The kinds of work the current run's assets do, in priority order."""
    in_run = assets_in_run(context)
    kinds = {kind for key, asset_kinds in KINDS_BY_ASSET.items() if key in in_run for kind in asset_kinds}
    return tuple(kind for kind in PRIORITY if kind in kinds)


def ensure_plan(
    context: dg.AssetExecutionContext,
    spotify: SpotifyResource,
    warehouse: WarehouseResource,
    *,
    miss_retry_days: float = DEFAULT_MISS_RETRY_DAYS,
) -> StoredPlan:
    """The current run's plan: the stored one, or a new one made now and stored (the first step to get here
    makes it; one made meanwhile by another process of the run wins, and is returned)."""
    run_id = context.run.run_id
    engine = warehouse.engine
    with engine.connect() as conn:
        stored = load_plan(conn, run_id)
    if stored is not None:
        return stored
    settings = get_settings()
    now = utc_now()
    client = spotify.get_client()
    caps = app_capabilities(client)
    available = spotify.request_budget().remaining()
    kinds = kinds_in_run(context)
    with engine.connect() as conn:
        searches = measured_searches_per_song(conn, default=DEFAULT_SEARCHES_PER_SONG)
        backlog = measure_backlog(
            conn,
            [k for k in kinds if k is not WorkKind.POPULARITY or caps.popularity],
            now=now,
            miss_retry_days=miss_retry_days,
            track_ttl=dt.timedelta(seconds=settings.spotify_track_ttl_s),
            day=utc_today(),
        )
    empty = BacklogColumns.of([])
    backlog = {kind: backlog.get(kind, empty) for kind in kinds}  # popularity without popularity: nothing
    cost = cost_model(caps, searches)
    plan = plan_columns(backlog, available, cost, now=now)
    with engine.begin() as conn:
        made = save_plan(
            conn, run_id, plan, backlog, planned_at=now, app_mode=caps.mode,
            run_budget=spotify.budget_total(settings), searches_per_song=searches, miss_retry_days=miss_retry_days,
        )
    if made:
        context.log.info(
            f"planned {plan_summary(plan)} with {available} of the run's {spotify.budget_total(settings)} requests"
        )
    with engine.connect() as conn:
        stored = load_plan(conn, run_id)
    assert stored is not None  # stored just now, or by another process of the run
    return stored


def app_capabilities(client: SpotifyClient) -> Capabilities:
    """The app's mode and what it allows (one probe request if no process of the run knows it yet). With no
    budget left for the probe, Development Mode is assumed: the plan is empty then anyway, and its backlog
    estimates err on the side of more requests."""
    try:
        return client.capabilities
    except SpotifyBudgetExhausted:
        return client.known_capabilities or Capabilities.for_mode("development")


def cost_model(caps: Capabilities, searches_per_song: float) -> CostModel:
    """What a request buys this app: 50 tracks or 1, popularity or not."""
    return CostModel(
        searches_per_song=searches_per_song, tracks_per_request=caps.batch_size, popularity_available=caps.popularity
    )


def plan_summary(plan: ColumnPlan) -> str:
    return ", ".join(
        f"{len(plan.selected_positions[kind])} {kind.value} ({plan.planned_requests[kind]} requests)"
        for kind in PRIORITY
        if kind in plan.selected_positions
    )


def backlog_after(
    warehouse: WarehouseResource, caps: Capabilities, searches_per_song: float, *, miss_retry_days: float
) -> ColumnPlan:
    """The whole backlog as it stands now, as a plan of no requests (every item left, with its estimated
    requests)."""
    settings = get_settings()
    now = utc_now()
    kinds = [k for k in PRIORITY if k is not WorkKind.POPULARITY or caps.popularity]
    with warehouse.engine.connect() as conn:
        backlog = measure_backlog(
            conn, kinds, now=now, miss_retry_days=miss_retry_days,
            track_ttl=dt.timedelta(seconds=settings.spotify_track_ttl_s), day=utc_today(),
        )
    return plan_columns(backlog, 0, cost_model(caps, searches_per_song), now=now)


@dataclass
class TrackRead:
    """What a step read of the tracks it set out to read, within its share of the budget."""

    tracks: dict[str, Track | None] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)
    requests: int = 0
    budget_exhausted: bool = False


def read_tracks_within(
    client: SpotifyClient, track_ids: Sequence[str], *, allowance: int, need_fresh_popularity: bool = False
) -> TrackRead:
    """Read `track_ids` (tracks the cache answers cost nothing), spending at most `allowance` requests; the
    ids not reached when the allowance or the run's budget is spent are `deferred`, in order. ``tracks`` maps
    each id read to its track (None: Spotify has no such track)."""
    wanted = list(dict.fromkeys(track_ids))
    with client.spending_limit(allowance) as share:
        tracks = client.get_tracks(wanted, need_fresh_popularity=need_fresh_popularity, until_budget_spent=True)
        spent = share.spent()
    deferred = [track_id for track_id in wanted if track_id not in tracks]
    return TrackRead(tracks=tracks, deferred=deferred, requests=spent, budget_exhausted=bool(deferred))
