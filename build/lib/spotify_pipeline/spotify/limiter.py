"""The `RateLimiter` interface: one request budget per Spotify app, shared by every process that uses it.

Both implementations use GCRA (generic cell rate algorithm) with a burst of one: requests are spaced by
``60 / rate`` seconds, never bunched, so a rolling window of any length sees at most ``1 + window / spacing``
requests. ``headroom`` keeps a small fraction of the budget unused, which absorbs network jitter between
our clock and Spotify's window.

A penalty box sits in front of the budget: a 429 from Spotify stores "blocked until" in the same backend
(`penalize`), and every `acquire` in every process waits it out. If the wait is longer than the caller
accepts, `acquire` raises `SpotifyRateLimited` instead of sleeping. A slot is reserved ahead of time (a
caller may sleep several intervals for it), so the box is checked again when the slot comes due: a 429
that closed it meanwhile voids the slot, and the caller queues again behind the penalty.

`RedisRateLimiter` runs both as Lua scripts (atomic, one round trip). When Redis is unreachable it raises
`RateLimiterUnavailable` - it never silently turns into a per-process limit - unless it was built with
``fallback="local"``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import redis

from spotify_pipeline.spotify.clock import Clock, SystemClock
from spotify_pipeline.spotify.config import redact_url
from spotify_pipeline.spotify.errors import RateLimiterUnavailable, SpotifyRateLimited
from spotify_pipeline.spotify.logs import get_logger

log = get_logger(__name__)


@runtime_checkable
class RateLimiter(Protocol):
    rate_per_minute: float

    def acquire(self, max_block_s: float | None = None) -> float:
        """Block until one request may be sent; return the seconds waited.

        Raises `SpotifyRateLimited(retry_after=...)` if the penalty box is closed for longer than
        ``max_block_s`` (None: wait however long it takes).
        """
        ...

    def penalize(self, retry_after_s: float) -> None:
        """Close the penalty box for ``retry_after_s`` seconds for every user of this limiter."""
        ...

    def blocked_for(self) -> float:
        """Seconds the penalty box stays closed (0 when open)."""
        ...


def _interval_s(rate_per_minute: float, headroom: float) -> float:
    if rate_per_minute <= 0:
        raise ValueError("rate_per_minute must be positive")
    return 60.0 / (rate_per_minute * (1.0 - headroom))


def _acquire(
    reserve: Callable[[], tuple[float, bool]],
    blocked_for: Callable[[], float],
    sleep: Callable[[float], None],
    max_block_s: float | None,
) -> float:
    """The `acquire` of both implementations, over their atomic ``reserve() -> (wait, blocked)``.

    ``reserve`` either reports the penalty box closed (wait = its remaining seconds) or books the next slot
    (wait = seconds until it comes due). Returns the seconds waited in all.
    """
    waited = 0.0
    while True:
        wait, blocked = reserve()
        if blocked and max_block_s is not None and wait > max_block_s:
            raise SpotifyRateLimited(retry_after=wait)
        if wait > 0:
            sleep(wait)
            waited += wait
        if blocked:
            continue
        # A slot booked ahead was booked before any 429 that came while sleeping for it. If one closed the
        # box meanwhile, a request sent now goes out during the penalty (Spotify counts it against the
        # app): the slot is void, and going round again waits out the penalty and books a new one. A slot
        # due at once needs no check: the atomic step that booked it found the box open.
        if wait <= 0 or blocked_for() <= 0:
            return waited


class InProcessRateLimiter:
    """GCRA limiter for the threads of one process."""

    def __init__(self, rate_per_minute: float, *, clock: Clock | None = None, headroom: float = 0.0) -> None:
        self.rate_per_minute = rate_per_minute
        self.interval_s = _interval_s(rate_per_minute, headroom)
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._tat = 0.0
        self._blocked_until = 0.0

    def _reserve(self) -> tuple[float, bool]:
        with self._lock:
            now = self._clock.time()
            if self._blocked_until > now:
                return self._blocked_until - now, True
            tat = max(self._tat, now)
            self._tat = tat + self.interval_s
            return tat - now, False

    def acquire(self, max_block_s: float | None = None) -> float:
        return _acquire(self._reserve, self.blocked_for, self._clock.sleep, max_block_s)

    def penalize(self, retry_after_s: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock.time() + retry_after_s)

    def blocked_for(self) -> float:
        with self._lock:
            return max(0.0, self._blocked_until - self._clock.time())


# Times are integer microseconds (exact in Lua's doubles), formatted with %.0f so nothing is rounded away.
_NOW_LUA = """
local now
if ARGV[#ARGV] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[#ARGV])
end
"""

# KEYS: tat, blocked-until. ARGV: interval us, now us ('' = Redis server time). Returns {wait us, blocked}.
_ACQUIRE_LUA = _NOW_LUA + """
local interval = tonumber(ARGV[1])
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then
  return {string.format('%.0f', blocked - now), '1'}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {string.format('%.0f', tat - now), '0'}
"""

# KEYS: blocked-until. ARGV: retry-after us, now us ('' = server time). Returns the blocked-until time (us).
_PENALIZE_LUA = _NOW_LUA + """
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < untl then
  redis.call('SET', KEYS[1], string.format('%.0f', untl), 'PX', math.ceil((untl - now) / 1000) + 1000)
  cur = untl
end
return string.format('%.0f', cur)
"""

# KEYS: blocked-until. ARGV: now us or ''. Returns the remaining microseconds.
_BLOCKED_LUA = _NOW_LUA + """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur > now then return string.format('%.0f', cur - now) end
return '0'
"""


class RedisRateLimiter:
    """GCRA limiter in Redis, shared by every process and machine using the same ``prefix`` and ``name``.

    Time comes from the Redis server (``TIME`` inside the script) so machines with skewed clocks agree;
    pass ``clock`` to drive it from a fake clock in tests.
    """

    #: after a Redis failure with fallback 'local', how long to stay local before trying Redis again
    RECHECK_S = 10.0

    def __init__(
        self,
        client: redis.Redis,
        rate_per_minute: float,
        *,
        prefix: str = "",
        name: str = "default",
        clock: Clock | None = None,
        headroom: float = 0.0,
        fallback: str | None = None,
    ) -> None:
        if fallback not in (None, "local"):
            raise ValueError("fallback must be None or 'local'")
        self.rate_per_minute = rate_per_minute
        self.interval_s = _interval_s(rate_per_minute, headroom)
        self._interval_us = math.ceil(self.interval_s * 1_000_000)  # rounded up: never faster than the rate
        self._r = client
        self._clock = clock
        self._sleeper: Clock = clock or SystemClock()
        base = f"{prefix}spotify:v1:limiter:{name}"
        self._tat_key = f"{base}:tat"
        self._blocked_key = f"{base}:blocked_until"
        self._acquire_script = client.register_script(_ACQUIRE_LUA)
        self._penalize_script = client.register_script(_PENALIZE_LUA)
        self._blocked_script = client.register_script(_BLOCKED_LUA)
        self.fallback = fallback
        self._local = InProcessRateLimiter(rate_per_minute, clock=clock, headroom=headroom)
        self._local_until = 0.0

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(round(self._clock.time() * 1_000_000))

    def _use_local(self) -> bool:
        return self.fallback == "local" and time.monotonic() < self._local_until

    def _redis_failed(self, exc: Exception) -> None:
        where = redact_url(_describe(self._r))
        if self.fallback != "local":
            raise RateLimiterUnavailable(
                f"Redis ({where}) is unreachable, so the Spotify rate limit shared by every process cannot be "
                f"enforced ({type(exc).__name__}: {exc}). Fix Redis, or set SPOTIFY_LIMITER_FALLBACK=local to "
                "fall back to a per-process limit."
            ) from exc
        log.warning(
            "Redis (%s) unreachable (%s): rate limiting per process (SPOTIFY_LIMITER_FALLBACK=local)",
            where,
            type(exc).__name__,
        )
        self._local_until = time.monotonic() + self.RECHECK_S

    def acquire(self, max_block_s: float | None = None) -> float:
        return _acquire(self._reserve, self.blocked_for, self._sleeper.sleep, max_block_s)

    def _reserve(self) -> tuple[float, bool]:
        if not self._use_local():
            try:
                wait_us, blocked = self._acquire_script(
                    keys=[self._tat_key, self._blocked_key], args=[self._interval_us, self._now_arg()]
                )
            except (redis.RedisError, OSError) as exc:
                self._redis_failed(exc)  # raises unless falling back to the local limiter
            else:
                return int(wait_us) / 1_000_000, int(blocked) == 1
        return self._local._reserve()

    def penalize(self, retry_after_s: float) -> None:
        self._local.penalize(retry_after_s)
        try:
            self._penalize_script(
                keys=[self._blocked_key], args=[math.ceil(retry_after_s * 1_000_000), self._now_arg()]
            )
        except (redis.RedisError, OSError) as exc:
            self._redis_failed(exc)

    def blocked_for(self) -> float:
        if self._use_local():
            return self._local.blocked_for()
        try:
            remaining = self._blocked_script(keys=[self._blocked_key], args=[self._now_arg()])
        except (redis.RedisError, OSError) as exc:
            self._redis_failed(exc)
            return self._local.blocked_for()
        return int(remaining) / 1_000_000


def _describe(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}"
    return f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
