"""Enrich a local music catalogue with Spotify Web API data, orchestrated by Dagster."""

__version__ = "0.1.0"
