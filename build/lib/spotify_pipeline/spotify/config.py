"""Explicit, typed configuration of the Spotify client (the client never reads the environment)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from spotify_pipeline.spotify.errors import SpotifyConfigError

if TYPE_CHECKING:  # pragma: no cover
    from spotify_pipeline.settings import Settings

AppMode = Literal["auto", "extended", "development"]
#: ``cache_path`` values meaning "no file, an in-process cache".
_IN_MEMORY = frozenset({"", "memory", ":memory:"})


@dataclass(frozen=True)
class SpotifyClientConfig:
    """Everything the client needs, with the same defaults as `spotify_pipeline.settings.Settings`.

    Build it with `SpotifyClientConfig.from_settings(settings)` in the pipeline, or directly in a test or notebook.
    One exception: ``cache_path`` defaults to the in-process cache here, so a config built directly never writes
    a file; `from_settings` passes SPOTIFY_CACHE_PATH (default ``.data/spotify_cache.db``).
    """

    client_id: str | None = None
    client_secret: str | None = None
    api_base_url: str = "https://api.spotify.com/v1"
    accounts_base_url: str = "https://accounts.spotify.com"
    market: str | None = None
    # Shared backends: redis_url set -> Redis limiter, cache and token store shared by every process.
    redis_url: str | None = None
    redis_key_prefix: str = ""
    # Rate limit
    rate_limit_per_minute: int = 100
    limiter_fallback: Literal["local"] | None = None
    limiter_headroom: float = 0.02
    # Cache: without redis_url, an SQLite file shared by the processes of one machine and kept between runs;
    # None, "" or "memory" -> in-process cache (lost at exit).
    cache_path: str | None = None
    track_ttl_s: int = 86_400
    popularity_ttl_s: int = 3_600
    # Long: Spotify's answers correct a stale mode (a batch call refused, popularity reappearing) at once.
    capabilities_ttl_s: int = 7 * 86_400
    # Retries and timeouts
    max_retry_after_s: float = 120
    max_attempts: int = 5
    max_retry_wait_s: float = 300.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    # Auth
    token_refresh_margin_s: float = 60.0
    # HTTP connection pool
    pool_maxsize: int = 10
    # "auto" detects Extended Quota vs Development Mode once per run (cached); the others skip detection.
    app_mode: AppMode = "auto"

    def __post_init__(self) -> None:
        if self.rate_limit_per_minute <= 0:
            raise SpotifyConfigError("rate_limit_per_minute must be positive")
        if self.limiter_fallback not in (None, "local"):
            raise SpotifyConfigError(f"limiter_fallback must be 'local' or None, got {self.limiter_fallback!r}")
        if not 0.0 <= self.limiter_headroom < 0.5:
            raise SpotifyConfigError("limiter_headroom must be in [0, 0.5)")
        if self.max_attempts < 1:
            raise SpotifyConfigError("max_attempts must be at least 1")
        if self.app_mode not in ("auto", "extended", "development"):
            raise SpotifyConfigError(f"app_mode must be auto, extended or development, got {self.app_mode!r}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SpotifyClientConfig:
        """The client configuration described by the pipeline's settings (keyword overrides win)."""
        values: dict[str, Any] = dict(
            client_id=settings.spotify_client_id,
            client_secret=settings.spotify_client_secret,
            api_base_url=settings.spotify_api_base_url,
            accounts_base_url=settings.spotify_accounts_base_url,
            market=settings.spotify_market,
            redis_url=settings.redis_url,
            redis_key_prefix=settings.redis_key_prefix,
            rate_limit_per_minute=settings.spotify_rate_limit_per_minute,
            limiter_fallback=settings.spotify_limiter_fallback,
            cache_path=settings.spotify_cache_path,
            track_ttl_s=settings.spotify_track_ttl_s,
            popularity_ttl_s=settings.spotify_popularity_ttl_s,
            max_retry_after_s=settings.spotify_max_retry_after_s,
            max_attempts=settings.spotify_max_attempts,
            max_retry_wait_s=settings.spotify_max_retry_wait_s,
            connect_timeout_s=settings.spotify_connect_timeout_s,
            read_timeout_s=settings.spotify_read_timeout_s,
        )
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> SpotifyClientConfig:
        return replace(self, **overrides)

    def require_credentials(self) -> tuple[str, str]:
        """(client_id, client_secret), or a `SpotifyConfigError` naming the missing environment variables."""
        missing = [
            var
            for var, value in (("SPOTIFY_CLIENT_ID", self.client_id), ("SPOTIFY_CLIENT_SECRET", self.client_secret))
            if not value
        ]
        if missing:
            raise SpotifyConfigError(
                f"Spotify credentials missing: set {' and '.join(missing)} (the app's Client Credentials, "
                "from the Spotify developer dashboard, or the emulator's for offline work)"
            )
        assert self.client_id and self.client_secret
        return self.client_id, self.client_secret

    @property
    def app_key(self) -> str:
        """A short, non-secret tag of the app as one Spotify service knows it (client id and the API and
        accounts URLs): shared keys (token, capabilities, rate limit) are per app and service, never per
        process, and an emulator on another port never inherits what another server said."""
        identity = "\n".join((self.client_id or "", self.api_base_url.rstrip("/"), self.accounts_base_url.rstrip("/")))
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    @property
    def sqlite_cache_path(self) -> str | None:
        """The SQLite cache file to use, or None for the in-process cache (``cache_path`` unset, "" or "memory").
        Meaningful only without ``redis_url``: Redis, when set, is the cache."""
        path = (str(self.cache_path) if self.cache_path is not None else "").strip()
        if path.lower() in _IN_MEMORY:
            return None
        return path

    @property
    def token_url(self) -> str:
        return self.accounts_base_url.rstrip("/") + "/api/token"

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout_s, self.read_timeout_s)

    def __repr__(self) -> str:  # never print the secret
        secret = "***" if self.client_secret else None
        return (
            f"SpotifyClientConfig(client_id={self.client_id!r}, client_secret={secret!r}, "
            f"api_base_url={self.api_base_url!r}, redis_url={redact_url(self.redis_url)!r}, "
            f"rate_limit_per_minute={self.rate_limit_per_minute}, app_mode={self.app_mode!r})"
        )


def redact_url(url: str | None) -> str | None:
    """The URL with any password replaced by ``***`` (safe to log)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
