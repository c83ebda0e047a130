"""On-demand enrichment: songs queued by `spotify-pipeline search --enrich` become scoped enrichment runs."""

from spotify_pipeline.defs.requests.sensors import (
    MAX_REQUESTS_PER_RUN,
    request_run_key,
    spotify_enrichment_requests,
)

__all__ = ["MAX_REQUESTS_PER_RUN", "request_run_key", "spotify_enrichment_requests"]
