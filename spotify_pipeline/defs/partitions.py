"""Daily partitions keyed by the UTC capture date, from the first capture day to today.

Two kinds of daily assets share them:
- capture assets (`raw_spotify_tracks`, `spotify_popularity_snapshots`) record what Spotify says now, so only
  today's partition can be materialized; a run or backfill for any other day is refused before it writes;
- derived assets (the normalized catalogue, movers) are computed from what was captured, so any captured day
  can be re-materialized offline, with no request (a backfill of derived assets).

The partitions start at SPOTIFY_FIRST_CAPTURE_DATE, so Dagster shows no days before the first capture (days
no run could ever fill).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping

import dagster as dg

from spotify_pipeline.settings import get_settings

#: The assets that record what Spotify says now (the others derive from what they stored).
CAPTURE_ASSETS = frozenset({dg.AssetKey("raw_spotify_tracks"), dg.AssetKey("spotify_popularity_snapshots")})
#: Run tags that name the partitions of a run (one partition, or a single-run backfill's range).
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def first_capture_date() -> dt.date:
    """The first day of the daily partitions (SPOTIFY_FIRST_CAPTURE_DATE, else today)."""
    configured = get_settings().spotify_first_capture_date
    return dt.date.fromisoformat(configured) if configured else utc_today()


# end_offset=1 makes the current UTC day a partition, so the 06:00 UTC schedule captures today rather
# than yesterday (a DailyPartitionsDefinition otherwise ends at the last complete day).
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=first_capture_date().isoformat(), end_offset=1, timezone="UTC"
)

# A backfill of many days runs once over the whole range instead of launching one run per day; every
# daily asset therefore handles a range of partitions in one materialization.
single_run_backfill = dg.BackfillPolicy.single_run()


def daily_check(name: str, asset: str, description: str, *, blocking: bool = False) -> dg.AssetCheckSpec:
    """A check of one daily partition: its results belong to the partition they judge, as the UI shows them.
    (Partitioned checks are a preview feature of the pinned Dagster 1.13; the warning saying so is not
    repeated on every load of the code location.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset=asset, description=description, blocking=blocking, partitions_def=daily_partitions
        )


class CaptureDayError(dg.Failure):
    """A capture asset was asked for a day other than today."""


def partition_dates(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The UTC dates a (possibly multi-partition) run covers, oldest first."""
    window = context.partition_time_window
    days = (window.end.date() - window.start.date()).days
    return [window.start.date() + dt.timedelta(days=i) for i in range(days)]


def run_partition_days(tags: Mapping[str, str]) -> list[dt.date]:
    """The days a run targets according to its tags (empty for an unpartitioned run)."""
    if PARTITION_TAG in tags:
        return [dt.date.fromisoformat(tags[PARTITION_TAG])]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        start, end = dt.date.fromisoformat(tags[RANGE_START_TAG]), dt.date.fromisoformat(tags[RANGE_END_TAG])
        return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    return []


def require_capture_day(days: list[dt.date], what: str) -> None:
    """Refuse to capture for any day but today: Spotify only tells what is true now, and another day's
    partition must not be filled (or overwritten) with today's answers."""
    today = utc_today()
    others = [d for d in days if d != today]
    if others:
        raise CaptureDayError(
            f"{what} captures what Spotify says now, so it only runs for today's partition ({today.isoformat()}); "
            f"this run targets {', '.join(d.isoformat() for d in others)}. Nothing was written. To rebuild "
            "the normalized catalogue or the movers of a past day from what was captured then, materialize "
            "spotify_tracks/spotify_artists/spotify_albums or spotify_popularity_movers alone for that day."
        )


def assets_in_run(context: dg.AssetExecutionContext) -> frozenset[dg.AssetKey]:
    """The assets the current run materializes."""
    # A run of the whole job has no (or an empty) asset selection: then the job's assets are the run's.
    return frozenset(context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys)


def refuse_capture_runs_for_other_days(context: dg.AssetExecutionContext) -> None:
    """For an asset that runs before the capture assets in the same run (the plan, the matches): refuse,
    before it writes anything, a run that would capture for a day other than today."""
    run = context.run
    if CAPTURE_ASSETS & assets_in_run(context):
        require_capture_day(run_partition_days(run.tags), f"run {run.run_id[:8]} of {run.job_name}")
