"""Emulator configuration: what is fixed at start-up and what tests may change while it runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date
from typing import Any, Literal

from spotify_pipeline.emulator.catalog import DEFAULT_CATALOG_SIZE, DEFAULT_SEED

Mode = Literal["extended", "development"]
RefreshRotation = Literal["sometimes", "always", "never"]
MODES: tuple[str, ...] = ("extended", "development")

# The one test app the emulator knows unless told otherwise. Not secrets: they only open this emulator.
TEST_CLIENT_ID = "emulator-test-client"
TEST_CLIENT_SECRET = "emulator-test-secret"
TEST_USER_ID = "emulator-test-user"

# Fields that shape the catalogue; changing them means building a new emulator, not patching this one.
STARTUP_ONLY_FIELDS = frozenset({"seed", "catalog_size", "catalog_path", "clients"})


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator can be told. `None` limits mean "no limit"."""

    mode: Mode = "extended"
    seed: int = DEFAULT_SEED
    catalog_size: int = DEFAULT_CATALOG_SIZE  # of the synthetic catalogue; unused with `catalog_path`
    # A JSON Lines file of track objects (optionally gzipped) to serve instead; see `catalog_file`.
    catalog_path: str | None = None
    # Rolling window per client id, as Spotify's rate limiter (length in seconds, requests admitted).
    window_limit: int | None = 180
    window_seconds: float = 30.0
    # Admitted Web API requests per client id per UTC day; beyond it 429 with reason QUOTA_EXCEEDED.
    quota: int | None = None
    error_rate: float = 0.0  # share of Web API requests answered 500/502/503
    reset_rate: float = 0.0  # share of Web API requests whose connection drops or body is cut short
    latency_ms: float = 0.0  # added to every Web API request
    date: str | None = None  # pins "today" (YYYY-MM-DD) for popularity; None = the emulator clock's UTC date
    access_token_ttl_s: int = 3600
    refresh_token_ttl_days: int = 182  # Spotify: refresh tokens die six months after consent
    refresh_rotation: RefreshRotation = "sometimes"
    deny_authorization: bool = False  # /authorize answers error=access_denied instead of consenting
    test_user_id: str = TEST_USER_ID
    clients: dict[str, str] = field(default_factory=lambda: {TEST_CLIENT_ID: TEST_CLIENT_SECRET})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("error_rate", "reset_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.error_rate + self.reset_rate > 1.0:
            raise ValueError("error_rate + reset_rate must not exceed 1")
        for name in ("window_limit", "quota"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        if self.window_seconds <= 0 or self.access_token_ttl_s <= 0 or self.latency_ms < 0:
            raise ValueError("window_seconds and access_token_ttl_s must be > 0, latency_ms >= 0")
        if self.refresh_rotation not in ("sometimes", "always", "never"):
            raise ValueError(f"refresh_rotation must be sometimes|always|never, got {self.refresh_rotation!r}")
        if self.date is not None:
            date.fromisoformat(self.date)  # raises ValueError on a malformed date
        if not self.clients:
            raise ValueError("at least one client (id -> secret) is required")

    @property
    def pinned_date(self) -> date | None:
        return date.fromisoformat(self.date) if self.date else None

    def updated(self, changes: dict[str, Any]) -> EmulatorConfig:
        """A copy with `changes` applied; rejects unknown and start-up-only fields."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        frozen = set(changes) & STARTUP_ONLY_FIELDS
        if frozen:
            raise ValueError(f"{sorted(frozen)} are fixed at start-up; start another emulator instead")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["clients"] = sorted(self.clients)  # ids only: never echo secrets back
        return data
