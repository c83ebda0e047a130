"""Rate limits and fault injection, applied to every Web API request after authentication.

* Rolling window per client id: at most `window_limit` admitted requests in any `window_seconds`.
  A refused request is not admitted, so it does not extend the wait: `Retry-After` is the whole number
  of seconds until the oldest admitted request leaves the window, after which a request is admitted.
* Daily quota per client id (UTC day of the emulator clock): beyond `quota`, 429 with
  `"reason": "QUOTA_EXCEEDED"` and a Retry-After running to the next UTC midnight (hours, as Spotify's).
* Faults: a seeded random share of 500/502/503 (Spotify's body) and of broken connections, half
  dropped before any byte is sent and half cut off mid-body, plus fixed added latency.
"""

from __future__ import annotations

import math
import random
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from spotify_pipeline.emulator.errors import ApiError

if TYPE_CHECKING:
    from spotify_pipeline.emulator.app import Emulator

Breakage = Literal["drop", "truncate"]
_SERVER_ERRORS = ((500, "Server error."), (502, "Bad gateway."), (503, "Service unavailable"))


class RateLimits:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._windows: dict[str, deque[float]] = {}
        self._daily: dict[str, tuple[str, int]] = {}  # client id -> (UTC day, admitted requests)

    def reset(self) -> None:
        self._windows.clear()
        self._daily.clear()

    def admit(self, client_id: str) -> None:
        """Admit one request for `client_id`, or raise the 429 Spotify would answer."""
        config = self.emulator.config
        now = self.emulator.clock.now()
        if config.window_limit is not None:
            window = self._windows.setdefault(client_id, deque())
            horizon = now - config.window_seconds
            while window and window[0] <= horizon:
                window.popleft()
            if len(window) >= config.window_limit:
                # With limit 0 nothing is ever admitted; tell the client to wait a whole window.
                frees_at = window[0] + config.window_seconds if window else now + config.window_seconds
                retry_after = max(1, math.ceil(frees_at - now))
                raise ApiError(429, "API rate limit exceeded", headers={"Retry-After": str(retry_after)})
        if config.quota is not None:
            today = datetime.fromtimestamp(now, UTC).date()
            day, used = self._daily.get(client_id, ("", 0))
            if day != today.isoformat():
                used = 0
            if used >= config.quota:
                midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC).timestamp()
                raise ApiError(
                    429,
                    "API quota exceeded for this app. Try again tomorrow.",
                    headers={"Retry-After": str(max(1, math.ceil(midnight - now)))},
                    reason="QUOTA_EXCEEDED",
                )
            self._daily[client_id] = (today.isoformat(), used + 1)
        if config.window_limit is not None:
            self._windows[client_id].append(now)


class Faults:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.reset()

    def reset(self) -> None:
        # Seeded, and re-seeded on reset, so a test sees the same faults on the same request sequence.
        self._random = random.Random(f"{self.emulator.config.seed}:faults")

    def draw(self) -> ApiError | Breakage | None:
        """What goes wrong with the next request, if anything."""
        config = self.emulator.config
        if config.error_rate <= 0 and config.reset_rate <= 0:
            return None
        roll = self._random.random()
        if roll < config.error_rate:
            status, message = self._random.choice(_SERVER_ERRORS)
            return ApiError(status, message)
        if roll < config.error_rate + config.reset_rate:
            return self._random.choice(("drop", "truncate"))
        return None
