"""Spotify Web API client: plain Python, no Dagster and no warehouse.

Typical use::

    from spotify_pipeline.settings import get_settings
    from spotify_pipeline.spotify import build_client

    client = build_client(get_settings())
    tracks = client.get_tracks(["4iV5W9uYEdYUVa79Axb7Rh", ...])
    rows = client.metrics.snapshot(run_id="...")
"""

from spotify_pipeline.spotify.cache import Cache, InMemoryCache, RedisCache, track_key
from spotify_pipeline.spotify.capabilities import Capabilities
from spotify_pipeline.spotify.client import SpotifyClient, build_client
from spotify_pipeline.spotify.clock import Clock, FakeClock, SystemClock
from spotify_pipeline.spotify.config import SpotifyClientConfig
from spotify_pipeline.spotify.errors import (
    RateLimiterUnavailable,
    SpotifyAuthError,
    SpotifyBadRequest,
    SpotifyConfigError,
    SpotifyConnectionError,
    SpotifyError,
    SpotifyForbidden,
    SpotifyHTTPError,
    SpotifyNotFound,
    SpotifyQuotaExceeded,
    SpotifyRateLimited,
    SpotifyResponseError,
    SpotifyServerError,
    SpotifyTooManyRequests,
    SpotifyUnauthorized,
)
from spotify_pipeline.spotify.limiter import InProcessRateLimiter, RateLimiter, RedisRateLimiter
from spotify_pipeline.spotify.logs import RedactionFilter, install_redaction
from spotify_pipeline.spotify.metrics import USAGE_COLUMNS, Metrics
from spotify_pipeline.spotify.models import Album, Artist, Image, SearchPage, SimplifiedAlbum, SimplifiedArtist, Track
from spotify_pipeline.spotify.sqlite_cache import SQLiteCache

__all__ = [
    "Album",
    "Artist",
    "Cache",
    "Capabilities",
    "Clock",
    "FakeClock",
    "Image",
    "InMemoryCache",
    "InProcessRateLimiter",
    "Metrics",
    "RateLimiter",
    "RateLimiterUnavailable",
    "RedactionFilter",
    "RedisCache",
    "RedisRateLimiter",
    "SQLiteCache",
    "SearchPage",
    "SimplifiedAlbum",
    "SimplifiedArtist",
    "SpotifyAuthError",
    "SpotifyBadRequest",
    "SpotifyClient",
    "SpotifyClientConfig",
    "SpotifyConfigError",
    "SpotifyConnectionError",
    "SpotifyError",
    "SpotifyForbidden",
    "SpotifyHTTPError",
    "SpotifyNotFound",
    "SpotifyQuotaExceeded",
    "SpotifyRateLimited",
    "SpotifyResponseError",
    "SpotifyServerError",
    "SpotifyTooManyRequests",
    "SpotifyUnauthorized",
    "SystemClock",
    "Track",
    "USAGE_COLUMNS",
    "build_client",
    "install_redaction",
    "track_key",
]
