"""Jobs, schedules and the account sensor of the user-library assets."""

import dagster as dg

from spotify_pipeline.defs.user_library.assets import (
    accounts_partitions,
    spotify_recently_played,
    spotify_saved_tracks,
)
from spotify_pipeline.settings import get_settings
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.tokens import SqlTokenStore

spotify_recently_played_job = dg.define_asset_job(
    name="spotify_recently_played_refresh",
    selection=dg.AssetSelection.assets(spotify_recently_played),
    description="Pull each connected account's new plays (Spotify keeps only the last 50).",
)
spotify_saved_tracks_job = dg.define_asset_job(
    name="spotify_saved_tracks_refresh",
    selection=dg.AssetSelection.assets(spotify_saved_tracks),
    description="Pull each connected account's saved tracks in full.",
)


def _every_account(job, cron: str, name: str) -> dg.ScheduleDefinition:
    @dg.schedule(name=name, job=job, cron_schedule=cron, execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.RUNNING)
    def _schedule(context: dg.ScheduleEvaluationContext):
        accounts = context.instance.get_dynamic_partitions(accounts_partitions.name)
        if not accounts:
            return dg.SkipReason("no Spotify account is connected (spotify-pipeline auth login)")
        tick = context.scheduled_execution_time.isoformat()
        return [dg.RunRequest(partition_key=account, run_key=f"{account}@{tick}") for account in accounts]

    return _schedule


# Hourly: the recently-played history only holds 50 plays, so a longer gap can lose some.
spotify_recently_played_schedule = _every_account(
    spotify_recently_played_job, "0 * * * *", "spotify_recently_played_hourly"
)
spotify_saved_tracks_schedule = _every_account(spotify_saved_tracks_job, "30 5 * * *", "spotify_saved_tracks_daily")


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def spotify_accounts_sensor(context: dg.SensorEvaluationContext):
    """Keeps the `spotify_accounts` partitions in step with the connected accounts (`auth login`/`logout`)."""
    engine = create_engine(get_settings().database_url)
    try:
        connected = set(SqlTokenStore(engine, None).accounts())
    finally:
        engine.dispose()
    known = set(context.instance.get_dynamic_partitions(accounts_partitions.name))
    added, removed = sorted(connected - known), sorted(known - connected)
    if not added and not removed:
        return dg.SkipReason(f"{len(known)} account(s), no change")
    requests = []
    if added:
        requests.append(accounts_partitions.build_add_request(added))
    if removed:
        requests.append(accounts_partitions.build_delete_request(removed))
    return dg.SensorResult(dynamic_partitions_requests=requests)
