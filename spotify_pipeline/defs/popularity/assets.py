"""Daily popularity snapshots and the day's movers."""

import datetime as dt

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from spotify_pipeline.defs.partitions import (
    daily_check,
    daily_partitions,
    partition_dates,
    require_capture_day,
    single_run_backfill,
)
from spotify_pipeline.defs.planning.plan import app_capabilities, ensure_plan, read_tracks_within
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.usage import UsageTracker
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.planning import WorkKind
from spotify_pipeline.warehouse.backlog import planned_tracks, tracks_read_without_snapshot
from spotify_pipeline.warehouse.consistency import snapshot_coverage, snapshot_keys_coverage
from spotify_pipeline.warehouse.enrichment import (
    popularity_frame,
    replace_movers,
    utc_now,
    write_popularity_snapshot,
)

SNAPSHOT_COVERAGE_CHECK = "snapshot_covers_planned_tracks"
POPULARITY_AVAILABLE_CHECK = "popularity_available"
#: Spotify leaves popularity out of a track now and then; below this share of the tracks read a capture is
#: incomplete (and of the matched tracks, the day's movers rank a part of the catalogue as if it were the whole).
MIN_SNAPSHOT_COVERAGE = 0.95
MOVERS_SHOWN = 10


@dg.asset(
    group_name="spotify",
    kinds={"spotify", "sql"},
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    deps=["spotify_tracks", "spotify_refresh_plan"],
    pool="spotify_api",
    check_specs=[
        daily_check(
            SNAPSHOT_COVERAGE_CHECK, "spotify_popularity_snapshots", blocking=True,
            description=f"Fails (and holds back the movers) when fewer than {MIN_SNAPSHOT_COVERAGE:.0%} of the "
            "tracks this capture read from Spotify got a popularity reading in the day's snapshot. Passes with "
            "nothing to judge when the app cannot see popularity.",
        ),
        daily_check(
            POPULARITY_AVAILABLE_CHECK, "spotify_popularity_snapshots",
            description="Warns when this Spotify app cannot read popularity (Development Mode apps since "
            "2026): no snapshots are written then.",
        ),
    ],
)
def spotify_popularity_snapshots(
    context: dg.AssetExecutionContext, spotify: SpotifyResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Spotify popularity (0-100) of matched tracks, one row per track per UTC day, in
    `spotify_popularity_snapshots`.

    Captures the tracks read from Spotify today that have no reading yet (their objects carry popularity, so
    this costs no request within the hour: the popularity cache TTL), then the tracks the run's plan chose
    (no reading today, stalest then most popular first), within what the run's request budget has left; what
    it does not reach waits for the next run. Readings are added to the day's snapshot. A capture asset:
    Spotify only tells today's popularity, so only today's partition can be materialized; any other day is
    refused before anything is written rather than invent history. `captured_at` is when Spotify sent the
    value. Apps in Development Mode cannot see popularity: then no request is made, nothing is written or
    deleted, `popularity_available` is false and a WARN check says so; a NULL is never stored in place of a
    value.
    """
    days = partition_dates(context)
    require_capture_day(days, "spotify_popularity_snapshots")
    today = days[0]
    usage = UsageTracker(context, spotify, warehouse)
    engine = warehouse.engine
    client = spotify.get_client()
    available = app_capabilities(client).popularity
    wanted: list[str] = []
    read_ids: list[str] = []
    written = 0
    deferred = 0
    if available:
        ensure_plan(context, spotify, warehouse)  # the run's plan, made here when the run has none yet
        with engine.connect() as conn:
            read_today = tracks_read_without_snapshot(conn, today)
            planned = planned_tracks(conn, context.run.run_id, WorkKind.POPULARITY)
        wanted = list(dict.fromkeys([*read_today, *planned]))
        read = read_tracks_within(
            client, wanted, allowance=spotify.request_budget().remaining(), need_fresh_popularity=True
        )
        deferred = len(read.deferred)
        now = utc_now()
        rows = [
            {"track_id": track_id, "popularity": track.popularity, "captured_at": track.fetched_at_utc(default=now)}
            for track_id, track in read.tracks.items()
            if track is not None and track.popularity is not None
        ]
        read_ids = [track_id for track_id, track in read.tracks.items() if track is not None]
        with engine.begin() as conn:
            written = write_popularity_snapshot(conn, today, rows, replace=False)
        if deferred:
            context.log.info(f"{deferred} of {len(wanted)} tracks left for the next run (request budget)")
    else:
        # A belief about the app is no reason to touch what an earlier capture stored for today.
        context.log.warning(
            "this Spotify app cannot see popularity (Development Mode): today's snapshot is left as it is"
        )
    with engine.connect() as conn:
        captured = snapshot_keys_coverage(conn, today, read_ids)
        coverage = snapshot_coverage(conn, today)
    complete = not available or captured.share >= MIN_SNAPSHOT_COVERAGE
    return dg.MaterializeResult(
        metadata={
            "snapshot_date": today.isoformat(),
            "rows": written,
            "tracks": len(wanted),
            "tracks_deferred": deferred,
            "coverage": round(coverage.share, 4),
            "popularity_available": available,
            **usage.metadata(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=SNAPSHOT_COVERAGE_CHECK,
                passed=complete,
                metadata={"tracks_read": captured.expected, "snapshotted": captured.covered,
                          "coverage": round(captured.share, 4), "missing_sample": ", ".join(captured.missing)},
                description=None if available else "popularity unavailable to this app: nothing to judge",
            ),
            dg.AssetCheckResult(
                check_name=POPULARITY_AVAILABLE_CHECK,
                passed=available,
                severity=dg.AssetCheckSeverity.WARN,
                description=None if available else (
                    "the Spotify app is in Development Mode, which has no popularity: no snapshots are captured"
                ),
            ),
        ],
    )


@dg.asset(
    group_name="spotify",
    kinds={"pandas", "sql"},
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    deps=["spotify_popularity_snapshots"],
)
def spotify_popularity_movers(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The day's biggest popularity risers and fallers, in `spotify_popularity_movers`.

    Each track's popularity on the partition day is compared with its previous snapshot and with the
    snapshot 7 days before; tracks that moved are ranked by the size of the move against the previous
    snapshot. The metadata shows the top movers as a table. With no snapshots to compare (the first
    day, or a Development Mode app that has no popularity) there is nothing to rank, and it says so.
    A derived asset: any captured day can be recomputed offline. In the daily job it waits for a complete
    snapshot (the blocking coverage check); computed from an incomplete one, its metadata says `partial`.
    """
    days = partition_dates(context)
    engine = warehouse.engine
    with engine.connect() as conn:
        frame = popularity_frame(conn, days[0] - dt.timedelta(days=30), days[-1])
        names = dict(conn.execute(sa.text("SELECT track_id, name FROM spotify_tracks")).all())
    by_day = {day: compute_movers(frame, day) for day in days}
    with engine.begin() as conn:
        written = sum(replace_movers(conn, day, movers) for day, movers in by_day.items())
    movers = by_day[days[-1]]  # the metadata shows the newest day
    with engine.connect() as conn:
        coverage = snapshot_coverage(conn, days[-1])
    completeness = {"snapshot_coverage": round(coverage.share, 4), "partial": coverage.share < MIN_SNAPSHOT_COVERAGE}
    if movers.empty:
        reason = "no popularity snapshot for this day" if frame[frame.snapshot_date == days[-1]].empty else (
            "no earlier snapshot to compare with"
        )
        return dg.MaterializeResult(
            metadata={"movers": written, **completeness,
                      "summary": dg.MetadataValue.md(f"Nothing to compare: {reason}.")}
        )
    if completeness["partial"]:
        context.log.warning(
            f"the {days[-1]} snapshot covers {coverage.share:.0%} of the matched tracks: these movers rank only "
            "part of the catalogue"
        )
    return dg.MaterializeResult(
        metadata={
            "movers": written,
            **completeness,
            "risers": int((movers.direction == "riser").sum()),
            "fallers": int((movers.direction == "faller").sum()),
            "top_movers": dg.MetadataValue.md(_markdown(movers, names)),
        }
    )


def compute_movers(snapshots: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """Risers and fallers of `day` against each track's previous snapshot and the one 7 days earlier."""
    columns = ["snapshot_date", "track_id", "popularity", "previous_date", "previous_popularity",
               "change_vs_previous", "week_ago_popularity", "change_vs_week_ago", "direction", "rank"]
    today = snapshots[snapshots.snapshot_date == day][["track_id", "popularity"]]
    earlier = snapshots[snapshots.snapshot_date < day].sort_values("snapshot_date")
    if today.empty or earlier.empty:
        return pd.DataFrame(columns=columns)
    previous = earlier.groupby("track_id").tail(1).rename(
        columns={"snapshot_date": "previous_date", "popularity": "previous_popularity"}
    )
    week_ago = snapshots[snapshots.snapshot_date == day - dt.timedelta(days=7)][["track_id", "popularity"]].rename(
        columns={"popularity": "week_ago_popularity"}
    )
    merged = today.merge(previous, on="track_id", how="inner").merge(week_ago, on="track_id", how="left")
    merged["change_vs_previous"] = merged.popularity - merged.previous_popularity
    merged["change_vs_week_ago"] = merged.popularity - merged.week_ago_popularity
    merged = merged[merged.change_vs_previous != 0].copy()
    merged["direction"] = merged.change_vs_previous.map(lambda change: "riser" if change > 0 else "faller")
    merged["magnitude"] = merged.change_vs_previous.abs()
    merged = merged.sort_values(["direction", "magnitude", "track_id"], ascending=[True, False, True])
    merged["rank"] = merged.groupby("direction").cumcount() + 1
    merged["snapshot_date"] = day
    merged["week_ago_popularity"] = merged.week_ago_popularity.astype("Int64")
    merged["change_vs_week_ago"] = merged.change_vs_week_ago.astype("Int64")
    return merged[columns].reset_index(drop=True)


def _markdown(movers: pd.DataFrame, names: dict[str, str]) -> str:
    lines = ["| | track | popularity | vs previous | vs 7 days ago |", "|---|---|---|---|---|"]
    for direction, label in (("riser", "▲"), ("faller", "▼")):
        top = movers[movers.direction == direction].head(MOVERS_SHOWN)
        for row in top.itertuples():
            week = "" if pd.isna(row.change_vs_week_ago) else f"{int(row.change_vs_week_ago):+d}"
            name = names.get(row.track_id, row.track_id).replace("|", "/")
            lines.append(f"| {label} {row.rank} | {name} | {row.popularity} | {int(row.change_vs_previous):+d} | {week} |")
    return "\n".join(lines)
