"""On-demand enrichment: songs queued by `spotify-pipeline search --enrich` become scoped enrichment runs."""
