"""The `Cache` interface and its two implementations (in-process TTL dict, Redis).

Values are JSON-serialisable objects. Keys are given without the deployment prefix; each implementation
adds its own ``prefix`` (``REDIS_KEY_PREFIX``), so one Redis can serve several deployments or test runs.

The Redis cache never raises on a Redis failure: reads degrade to misses and writes to no-ops, with a
warning (the pipeline still works, it just spends more requests). `lock()` degrades to an in-process lock.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import redis

from spotify_pipeline.spotify.clock import Clock, SystemClock
from spotify_pipeline.spotify.logs import get_logger

log = get_logger(__name__)

KEY_VERSION = "spotify:v1"


def encode_value(value: Any) -> str:
    """How every cache stores a value: compact JSON."""
    return json.dumps(value, separators=(",", ":"))


def decode_value(raw: str | bytes | None) -> Any | None:
    """A stored value, or None for a missing or corrupt entry (a corrupt entry is a miss, not a crash)."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def track_key(track_id: str, market: str | None) -> str:
    """Versioned key of one cached track: ``spotify:v1:track:{market}:{id}`` (market ``-`` when unset)."""
    return f"{KEY_VERSION}:track:{market or '-'}:{track_id}"


@runtime_checkable
class Cache(Protocol):
    def get(self, key: str) -> Any | None: ...

    def get_many(self, keys: Sequence[str]) -> list[Any | None]: ...

    def set(self, key: str, value: Any, ttl_s: float) -> None: ...

    def set_many(self, items: Mapping[str, Any], ttl_s: float) -> None: ...

    def delete(self, key: str) -> None: ...

    def lock(self, name: str, timeout_s: float = 30.0) -> contextlib.AbstractContextManager[None]:
        """A mutual-exclusion lock shared by every user of this backend (threads or processes)."""
        ...


class InMemoryCache:
    """Thread-safe TTL cache for a single process (the local profile)."""

    def __init__(self, clock: Clock | None = None, prefix: str = "") -> None:
        self._clock = clock or SystemClock()
        self._prefix = prefix
        self._data: dict[str, tuple[float, str]] = {}
        self._mutex = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def get(self, key: str) -> Any | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        now = self._clock.time()
        out: list[Any | None] = []
        with self._mutex:
            for key in keys:
                entry = self._data.get(self._prefix + key)
                if entry is None or entry[0] <= now:
                    self._data.pop(self._prefix + key, None)
                    out.append(None)
                else:
                    out.append(decode_value(entry[1]))
        return out

    def set(self, key: str, value: Any, ttl_s: float) -> None:
        self.set_many({key: value}, ttl_s)

    def set_many(self, items: Mapping[str, Any], ttl_s: float) -> None:
        expires = self._clock.time() + ttl_s
        encoded = {self._prefix + k: (expires, encode_value(v)) for k, v in items.items()}
        with self._mutex:
            self._data.update(encoded)

    def delete(self, key: str) -> None:
        with self._mutex:
            self._data.pop(self._prefix + key, None)

    @contextlib.contextmanager
    def lock(self, name: str, timeout_s: float = 30.0) -> Iterator[None]:
        with self._mutex:
            lk = self._locks.setdefault(name, threading.Lock())
        if not lk.acquire(timeout=timeout_s):
            raise TimeoutError(f"could not acquire lock {name!r} within {timeout_s} s")
        try:
            yield
        finally:
            lk.release()


class RedisCache:
    """Redis-backed cache shared by every process: SET with expiry, MGET, pipelined writes."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "",
        *,
        warn_every_s: float = 60.0,
    ) -> None:
        self._r = client
        self._prefix = prefix
        self._warn_every_s = warn_every_s
        self._last_warning = 0.0
        self._local_locks = InMemoryCache()

    @classmethod
    def from_url(cls, url: str, prefix: str = "", **kwargs: Any) -> RedisCache:
        return cls(redis_client(url), prefix, **kwargs)

    def _degraded(self, op: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning >= self._warn_every_s or self._last_warning == 0.0:
            self._last_warning = now
            log.warning("Redis cache unavailable during %s (%s): treating as a miss", op, type(exc).__name__)

    def get(self, key: str) -> Any | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        if not keys:
            return []
        try:
            raw = self._r.mget([self._prefix + k for k in keys])
        except (redis.RedisError, OSError) as exc:
            self._degraded("get", exc)
            return [None] * len(keys)
        return [decode_value(value) for value in raw]

    def set(self, key: str, value: Any, ttl_s: float) -> None:
        self.set_many({key: value}, ttl_s)

    def set_many(self, items: Mapping[str, Any], ttl_s: float) -> None:
        if not items:
            return
        px = max(1, int(ttl_s * 1000))
        try:
            pipe = self._r.pipeline(transaction=False)
            for k, v in items.items():
                pipe.set(self._prefix + k, encode_value(v), px=px)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._degraded("set", exc)

    def delete(self, key: str) -> None:
        try:
            self._r.delete(self._prefix + key)
        except (redis.RedisError, OSError) as exc:
            self._degraded("delete", exc)

    @contextlib.contextmanager
    def lock(self, name: str, timeout_s: float = 30.0) -> Iterator[None]:
        lk = self._r.lock(f"{self._prefix}{KEY_VERSION}:lock:{name}", timeout=timeout_s, blocking_timeout=timeout_s)
        try:
            acquired = lk.acquire()
        except (redis.RedisError, OSError) as exc:
            self._degraded("lock", exc)
            with self._local_locks.lock(name, timeout_s):
                yield
            return
        if not acquired:
            raise TimeoutError(f"could not acquire Redis lock {name!r} within {timeout_s} s")
        try:
            yield
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                lk.release()


def redis_client(url: str, *, connect_timeout_s: float = 2.0, socket_timeout_s: float = 5.0) -> redis.Redis:
    """A Redis client with short timeouts, so an unreachable Redis fails fast instead of hanging a run."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=socket_timeout_s,
        health_check_interval=30,
    )


def iter_chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
