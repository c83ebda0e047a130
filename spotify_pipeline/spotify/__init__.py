"""Spotify Web API client: plain Python, no Dagster and no warehouse.

Typical use::

    from spotify_pipeline.settings import get_settings
    from spotify_pipeline.spotify import build_client

    client = build_client(get_settings())
    tracks = client.get_tracks(["4iV5W9uYEdYUVa79Axb7Rh", ...])
    rows = client.metrics.snapshot(run_id="...")
"""

from spotify_pipeline.spotify.budget import (
    CappedRequestBudget,
    DayPool,
    InProcessRequestBudget,
    RedisRequestBudget,
    RequestBudget,
    SQLiteRequestBudget,
    open_request_budget,
)
from spotify_pipeline.spotify.cache import Cache, InMemoryCache, RedisCache, track_key
from spotify_pipeline.spotify.capabilities import Capabilities
from spotify_pipeline.spotify.client import SpotifyClient, build_client
from spotify_pipeline.spotify.clock import Clock, FakeClock, SystemClock
from spotify_pipeline.spotify.config import SpotifyClientConfig
from spotify_pipeline.spotify.errors import (
    RateLimiterUnavailable,
    RequestBudgetUnavailable,
    SpotifyAuthError,
    SpotifyBadRequest,
    SpotifyBudgetExhausted,
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
    "CappedRequestBudget",
    "Clock",
    "DayPool",
    "FakeClock",
    "Image",
    "InMemoryCache",
    "InProcessRateLimiter",
    "InProcessRequestBudget",
    "Metrics",
    "RateLimiter",
    "RateLimiterUnavailable",
    "RedactionFilter",
    "RedisCache",
    "RedisRateLimiter",
    "RedisRequestBudget",
    "RequestBudget",
    "RequestBudgetUnavailable",
    "SQLiteCache",
    "SQLiteRequestBudget",
    "SearchPage",
    "SimplifiedAlbum",
    "SimplifiedArtist",
    "SpotifyAuthError",
    "SpotifyBadRequest",
    "SpotifyBudgetExhausted",
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
    "open_request_budget",
    "track_key",
]
