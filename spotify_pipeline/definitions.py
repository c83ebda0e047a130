"""The Dagster code location: every asset, check, job, schedule, sensor and resource of the pipeline."""

from __future__ import annotations

from typing import Any

import dagster as dg

from spotify_pipeline.defs.jobs import DAILY_ASSETS, spotify_daily_refresh, spotify_daily_refresh_schedule
from spotify_pipeline.defs.requests import spotify_enrichment_requests
from spotify_pipeline.defs.user_library.assets import spotify_recently_played, spotify_saved_tracks
from spotify_pipeline.defs.user_library.jobs import (
    spotify_accounts_sensor,
    spotify_recently_played_job,
    spotify_recently_played_schedule,
    spotify_saved_tracks_job,
    spotify_saved_tracks_schedule,
)
from spotify_pipeline.defs.resources import spotify_resource_from_env
from spotify_pipeline.defs.warehouse_resource import WarehouseResource


def build_definitions(
    resources: dict[str, Any] | None = None, loggers: dict[str, dg.LoggerDefinition] | None = None
) -> dg.Definitions:
    """The pipeline's definitions; `resources` replace the environment-configured ones (tests, the demo)."""
    return dg.Definitions(
        assets=[*DAILY_ASSETS, spotify_saved_tracks, spotify_recently_played],
        jobs=[spotify_daily_refresh, spotify_recently_played_job, spotify_saved_tracks_job],
        schedules=[spotify_daily_refresh_schedule, spotify_recently_played_schedule, spotify_saved_tracks_schedule],
        sensors=[spotify_enrichment_requests, spotify_accounts_sensor],
        resources=resources or {"spotify": spotify_resource_from_env(), "warehouse": WarehouseResource()},
        loggers=loggers,
    )


defs = build_definitions()
