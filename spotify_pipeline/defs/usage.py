"""What a Spotify-calling asset reports about its API usage: metadata, and rows in `spotify_api_usage`."""

from __future__ import annotations

from typing import Any

import dagster as dg

from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.warehouse.enrichment import record_api_usage

COUNTERS = ("requests", "cache_hits", "cache_misses", "retries", "throttled", "errors")


class UsageTracker:
    """Measures one asset's share of the run's Spotify usage.

    Create it when the asset starts and call `metadata()` when it is done: the metadata counts this
    asset's requests, cache hits and misses, retries, 429s and errors, and the run's per-endpoint rows
    (cumulative for the run, so each asset upserts them again and `spotify_api_usage` ends with the
    run's totals) are saved to the warehouse.
    """

    def __init__(self, spotify: SpotifyResource, warehouse: WarehouseResource) -> None:
        self.spotify = spotify
        self.warehouse = warehouse
        self._start = _totals(spotify.usage_rows())

    def metadata(self) -> dict[str, Any]:
        rows = self.spotify.usage_rows()
        if rows:
            with self.warehouse.engine.begin() as conn:
                record_api_usage(conn, rows)
        now = _totals(rows)
        meta: dict[str, Any] = {
            key: value for key, value in self.spotify.usage_metadata().items() if not key.startswith("spotify_")
            or key in ("spotify_api_usage", "spotify_app_mode", "spotify_popularity_available")
        }
        for counter in COUNTERS:
            meta[f"spotify_{counter}"] = dg.MetadataValue.int(now[counter] - self._start[counter])
        return meta


def _totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {counter: sum(int(row[counter]) for row in rows) for counter in COUNTERS}
