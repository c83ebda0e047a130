"""Dagster definitions, one folder per concern; `spotify_pipeline.definitions` loads them all."""
