"""What this Spotify app may do: Extended Quota (batch endpoints, popularity) or Development Mode.

Development Mode apps lost the batch endpoints (``GET /tracks?ids=`` answers 403), the fields ``popularity``,
``available_markets`` and ``linked_from``, and may search at most 10 results per page. The client detects
the mode once (the first batch call, or one probe) and keeps the answer in the cache, keyed by the app and
the Spotify service it talks to, so every fresh process of every run skips the probe. Spotify's own answers
keep it current: a batch call refused with 403 means the app is now in Development Mode, a single-track
answer carrying popularity means it has Extended Quota again; the change is recorded with its time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
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
    detected_at: float | None = None  # epoch seconds when Spotify's answers last established this mode
    changed_at: float | None = None  # when the app was last seen to change mode
    previous_mode: Mode | None = None  # the mode before that change

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

    def detected(self, at: float, *, previous: Capabilities | None = None) -> Capabilities:
        """These capabilities as established at `at`, carrying the mode-change history of `previous`."""
        if previous is not None and previous.mode != self.mode:
            return replace(self, detected_at=at, changed_at=at, previous_mode=previous.mode)
        changed_at = previous.changed_at if previous is not None else None
        previous_mode = previous.previous_mode if previous is not None else None
        return replace(self, detected_at=at, changed_at=changed_at, previous_mode=previous_mode)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Capabilities | None:
        """The capabilities stored in the cache, or None when the entry is unusable."""
        if not isinstance(data, dict) or data.get("mode") not in ("extended", "development"):
            return None
        base = cls.for_mode(data["mode"], source="cache", popularity=bool(data.get("popularity", True)))
        previous = data.get("previous_mode")
        return replace(
            base,
            detected_at=_number(data.get("detected_at")),
            changed_at=_number(data.get("changed_at")),
            previous_mode=previous if previous in ("extended", "development") else None,
        )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
