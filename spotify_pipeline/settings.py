"""The one place that reads the environment.

Everything else receives a `Settings` object (or the values it needs from one), so a test or a notebook
can build any piece with explicit values and no environment at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///.data/warehouse.db"
DEFAULT_TOKEN_KEY_FILE = ".data/token.key"
#: Minutes between two runs of the daily job: the budget of one run is what the app may send in that time.
MINUTES_BETWEEN_DAILY_RUNS = 1440


class SettingsError(ValueError):
    """An environment variable holds a value the pipeline cannot use."""


@dataclass(frozen=True)
class EnvVar:
    """How one setting is read: its variable name, default and meaning (the README table is built from these)."""

    name: str
    default: Any
    help: str
    #: The type a value is read as, when the default (None: derived from other settings) does not tell.
    kind: type | None = None


def _setting(name: str, default: Any, help: str, kind: type | None = None) -> Any:
    return field(default=default, metadata={"env": EnvVar(name, default, help, kind)})


@dataclass(frozen=True)
class Settings:
    # Warehouse
    database_url: str = _setting(
        "DATABASE_URL", DEFAULT_DATABASE_URL, "SQLAlchemy URL of the warehouse (SQLite file or PostgreSQL)."
    )
    # Shared backends: unset means in-process implementations (single process only).
    redis_url: str | None = _setting(
        "REDIS_URL", None, "Redis for the shared rate limiter, cache and request queue; unset = in-process."
    )
    dagster_home: str = _setting(
        "DAGSTER_HOME", ".dagster", "Dagster instance directory (local profile: SQLite storage in it)."
    )
    redis_key_prefix: str = _setting(
        "REDIS_KEY_PREFIX", "", "Prefix for every Redis key, to share one Redis between deployments."
    )
    # Spotify
    spotify_client_id: str | None = _setting("SPOTIFY_CLIENT_ID", None, "Spotify app client id.")
    spotify_client_secret: str | None = _setting("SPOTIFY_CLIENT_SECRET", None, "Spotify app client secret.")
    spotify_api_base_url: str = _setting(
        "SPOTIFY_API_BASE_URL", "https://api.spotify.com/v1", "Web API base URL (the emulator's for offline work)."
    )
    spotify_accounts_base_url: str = _setting(
        "SPOTIFY_ACCOUNTS_BASE_URL", "https://accounts.spotify.com", "Accounts (OAuth) base URL."
    )
    spotify_emulator: str | None = _setting(
        "SPOTIFY_EMULATOR",
        None,
        "'extended' or 'development': SPOTIFY_API_BASE_URL is the bundled emulator (loopback), started in that "
        "mode when nothing answers there (`make demo` sets it in .env); unset = never start an emulator.",
    )
    spotify_first_capture_date: str | None = _setting(
        "SPOTIFY_FIRST_CAPTURE_DATE",
        None,
        "First UTC day (YYYY-MM-DD) the daily partitions start at: the deployment's first capture. Unset = the "
        "day the definitions load (`make demo` records it in .env).",
    )
    spotify_market: str | None = _setting(
        "SPOTIFY_MARKET", None, "ISO 3166-1 market for track relinking; unset = no market parameter."
    )
    spotify_rate_limit_per_minute: int = _setting(
        "SPOTIFY_RATE_LIMIT_PER_MINUTE", 100, "Requests per minute shared by every process."
    )
    spotify_limiter_fallback: str | None = _setting(
        "SPOTIFY_LIMITER_FALLBACK",
        None,
        "'local' lets the limiter and the run's request budget fall back to per-process accounting when Redis "
        "is down; unset = fail.",
    )
    spotify_run_request_budget: int | None = _setting(
        "SPOTIFY_RUN_REQUEST_BUDGET",
        None,
        "Web API requests one run may send (token requests aside); the run plans its work to fit, ends "
        "successfully when it is spent and leaves the rest to the next run. Unset = what the rate limit allows "
        "between two daily runs, less the on-demand reserve.",
        kind=int,
    )
    spotify_on_demand_reserve: float = _setting(
        "SPOTIFY_ON_DEMAND_RESERVE",
        0.1,
        "Share (0 to 1) of the app's daily requests kept for on-demand enrichment runs: the default run budget "
        "leaves it out, and scheduled runs together never spend it.",
    )
    spotify_track_ttl_s: int = _setting("SPOTIFY_TRACK_TTL_S", 86_400, "Cache TTL of track metadata (s).")
    spotify_popularity_ttl_s: int = _setting("SPOTIFY_POPULARITY_TTL_S", 3_600, "Cache TTL of popularity (s).")
    spotify_cache_path: str = _setting(
        "SPOTIFY_CACHE_PATH",
        ".data/spotify_cache.db",
        "SQLite file caching Spotify tracks and the app token across runs and processes; used only when "
        "REDIS_URL is unset. 'memory' = in-process cache, lost when the process exits.",
    )
    spotify_max_retry_after_s: int = _setting(
        "SPOTIFY_MAX_RETRY_AFTER_S", 120, "Longest Retry-After a worker waits; longer raises SpotifyRateLimited."
    )
    spotify_max_attempts: int = _setting("SPOTIFY_MAX_ATTEMPTS", 5, "Attempts per request, first one included.")
    spotify_max_retry_wait_s: float = _setting(
        "SPOTIFY_MAX_RETRY_WAIT_S", 300.0, "Total time one request may spend waiting between retries (s)."
    )
    spotify_connect_timeout_s: float = _setting("SPOTIFY_CONNECT_TIMEOUT_S", 5.0, "HTTP connect timeout (s).")
    spotify_read_timeout_s: float = _setting("SPOTIFY_READ_TIMEOUT_S", 15.0, "HTTP read timeout (s).")
    spotify_token_key: str | None = _setting(
        "SPOTIFY_TOKEN_KEY", None, "Fernet key(s), comma-separated, encrypting stored user tokens."
    )
    spotify_token_key_file: str = _setting(
        "SPOTIFY_TOKEN_KEY_FILE",
        DEFAULT_TOKEN_KEY_FILE,
        "File holding the token key, read only when SPOTIFY_TOKEN_KEY is unset (`make demo` creates it, mode 0600).",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default: the process environment); empty strings count as unset."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            spec: EnvVar = f.metadata["env"]
            raw = env.get(spec.name)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _convert(spec, raw.strip())
        settings = cls(**values)
        settings._validate()
        return settings

    def _validate(self) -> None:
        if self.spotify_limiter_fallback not in (None, "local"):
            raise SettingsError(
                f"SPOTIFY_LIMITER_FALLBACK must be 'local' or unset, got {self.spotify_limiter_fallback!r}"
            )
        if self.spotify_emulator not in (None, "extended", "development"):
            raise SettingsError(
                f"SPOTIFY_EMULATOR must be 'extended', 'development' or unset, got {self.spotify_emulator!r}"
            )
        if self.spotify_emulator and not self.spotify_api_base_url.startswith(("http://127.0.0.1:", "http://localhost:")):
            raise SettingsError(
                f"SPOTIFY_EMULATOR is set but SPOTIFY_API_BASE_URL is {self.spotify_api_base_url}: the bundled "
                "emulator serves http://127.0.0.1:PORT/v1 only (unset SPOTIFY_EMULATOR to use Spotify)"
            )
        if self.spotify_first_capture_date is not None:
            try:
                date.fromisoformat(self.spotify_first_capture_date)
            except ValueError:
                raise SettingsError(
                    f"SPOTIFY_FIRST_CAPTURE_DATE must be a date (YYYY-MM-DD), got {self.spotify_first_capture_date!r}"
                ) from None
        if self.spotify_rate_limit_per_minute <= 0:
            raise SettingsError("SPOTIFY_RATE_LIMIT_PER_MINUTE must be a positive integer")
        if self.spotify_run_request_budget is not None and self.spotify_run_request_budget <= 0:
            raise SettingsError(
                "SPOTIFY_RUN_REQUEST_BUDGET must be a positive whole number of requests, got "
                f"{self.spotify_run_request_budget} (unset it for the default derived from the rate limit)"
            )
        if not 0.0 <= self.spotify_on_demand_reserve < 1.0:
            raise SettingsError(
                "SPOTIFY_ON_DEMAND_RESERVE must be a share from 0 up to (not including) 1, "
                f"got {self.spotify_on_demand_reserve}"
            )

    @property
    def daily_request_capacity(self) -> int:
        """Requests the app may send in one UTC day at SPOTIFY_RATE_LIMIT_PER_MINUTE."""
        return self.spotify_rate_limit_per_minute * MINUTES_BETWEEN_DAILY_RUNS

    @property
    def run_request_budget(self) -> int:
        """Web API requests one run may send: SPOTIFY_RUN_REQUEST_BUDGET, else the rate limit times the minutes
        between two daily runs, less the on-demand reserve (129,600 at 100 requests a minute)."""
        if self.spotify_run_request_budget is not None:
            return self.spotify_run_request_budget
        # Rounded first: 0.3 of a capacity is not exact in binary and must not lose a request to flooring.
        return max(1, math.floor(round(self.daily_request_capacity * (1.0 - self.spotify_on_demand_reserve), 6)))

    def token_key(self) -> str | None:
        """The Fernet key(s) encrypting stored user tokens: SPOTIFY_TOKEN_KEY when set, else the content of
        SPOTIFY_TOKEN_KEY_FILE when that file exists (the local profile's generated key), else None."""
        if self.spotify_token_key:
            return self.spotify_token_key
        path = Path(self.spotify_token_key_file)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(
                f"SPOTIFY_TOKEN_KEY is unset and the key file {path} cannot be read ({type(exc).__name__})"
            ) from None
        if os.name == "posix" and mode & 0o077:
            raise SettingsError(
                f"SPOTIFY_TOKEN_KEY is unset and the key file {path} is readable by other users: chmod 600 {path}"
            )
        return text or None

    @staticmethod
    def documented() -> list[EnvVar]:
        """Every environment variable the pipeline reads, with its default and meaning."""
        return [f.metadata["env"] for f in fields(Settings)]


_KIND_NAMES = {int: "a whole number", float: "a number"}


def _convert(spec: EnvVar, raw: str) -> Any:
    kind = spec.kind or (type(spec.default) if spec.default is not None else str)
    try:
        if kind is bool:
            return raw.lower() in {"1", "true", "yes", "on"}
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{spec.name} must be {_KIND_NAMES.get(kind, 'a ' + kind.__name__)}, got {raw!r}") from None


def get_settings() -> Settings:
    """Settings of the current process environment."""
    return Settings.from_env()
