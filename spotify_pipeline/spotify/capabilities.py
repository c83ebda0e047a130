"""What this Spotify app may do: Extended Quota (batch endpoints, popularity) or Development Mode.

Development Mode apps lost the batch endpoints (``GET /tracks?ids=`` answers 403), the fields ``popularity``,
``available_markets`` and ``linked_from``, and may search at most 10 results per page. The client detects
the mode once per run (the first batch call, or one probe) and shares the answer through the cache for
an hour, so every process of every run in that hour skips the probe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Mode = Literal["extended", "development"]

EXTENDED_BATCH_SIZE = 50
EXTENDED_SEARCH_LIMIT = 50
DEVELOPMENT_SEARCH_LIMIT = 10


@dataclass(frozen=True)
class Capabilities:
    mode: Mode
    batch_endpoints: bool
    popularity: bool
    max_search_limit: int
    batch_size: int
    source: str = "detected"  # "detected" (probe or first batch call), "cache", or "configured"

    @classmethod
    def for_mode(cls, mode: Mode, *, source: str = "detected", popularity: bool | None = None) -> Capabilities:
        if mode == "extended":
            return cls(
                mode="extended",
                batch_endpoints=True,
                popularity=True if popularity is None else popularity,
                max_search_limit=EXTENDED_SEARCH_LIMIT,
                batch_size=EXTENDED_BATCH_SIZE,
                source=source,
            )
        return cls(
            mode="development",
            batch_endpoints=False,
            popularity=False,
            max_search_limit=DEVELOPMENT_SEARCH_LIMIT,
            batch_size=1,
            source=source,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Capabilities | None:
        """The capabilities stored in the cache, or None when the entry is unusable."""
        if not isinstance(data, dict) or data.get("mode") not in ("extended", "development"):
            return None
        base = cls.for_mode(data["mode"], source="cache", popularity=bool(data.get("popularity", True)))
        return base
