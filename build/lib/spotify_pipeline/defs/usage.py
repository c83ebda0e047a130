"""What a Spotify-calling asset reports about its API usage: metadata, and rows in `spotify_api_usage`."""

from __future__ import annotations

from typing import Any

import dagster as dg

from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.warehouse.enrichment import record_api_usage


class UsageTracker:
    """Measures one asset's own Spotify usage.

    Create it when the asset starts and call `metadata()` when it is done. What the asset's requests cost
    (per endpoint: requests, cache hits and misses, retries, 429s, errors, latency) goes into its metadata
    and into `spotify_api_usage` under (run, asset, endpoint). Every step counts only its own requests,
    whether the steps share a process (in-process executor) or not (multiprocess), so the rows of a run add
    up to what Spotify saw, token requests included.
    """

    def __init__(self, context: dg.AssetExecutionContext, spotify: SpotifyResource, warehouse: WarehouseResource):
        self.asset = context.op_execution_context.op.name
        self.spotify = spotify
        self.warehouse = warehouse
        self._mark = spotify.usage_mark()

    def metadata(self) -> dict[str, Any]:
        rows = [{**row, "asset": self.asset} for row in self.spotify.usage_rows(since=self._mark)]
        if rows:
            with self.warehouse.engine.begin() as conn:
                record_api_usage(conn, rows)
        return self.spotify.usage_metadata(since=self._mark)
