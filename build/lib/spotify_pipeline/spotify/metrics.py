"""Per-endpoint usage counters and latency percentiles of one client (usually: one Dagster run).

`snapshot()` returns plain rows, ready for `MaterializeResult` metadata and for the warehouse table
``spotify_api_usage`` (run_id, endpoint, requests, cache_hits, cache_misses, retries, throttled, errors,
latency_p50_ms, latency_p95_ms).
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

USAGE_COLUMNS = (
    "run_id",
    "endpoint",
    "requests",
    "cache_hits",
    "cache_misses",
    "retries",
    "throttled",
    "errors",
    "latency_p50_ms",
    "latency_p95_ms",
)

_MAX_SAMPLES = 10_000
_COUNTERS = ("requests", "cache_hits", "cache_misses", "retries", "throttled", "errors")


@dataclass
class _EndpointStats:
    requests: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0
    throttled: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    _seen: int = 0


@dataclass(frozen=True)
class MetricsMark:
    """The counters at one moment, so a later `snapshot(since=mark)` reports only what happened after it
    (one asset's share of a client shared by several)."""

    counters: dict[str, dict[str, int]]
    samples: dict[str, int]


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


class Metrics:
    """Thread-safe counters. ``requests`` counts HTTP requests sent (each retry is one more request)."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        self._lock = threading.Lock()
        self._stats: dict[str, _EndpointStats] = {}

    def _get(self, endpoint: str) -> _EndpointStats:
        stats = self._stats.get(endpoint)
        if stats is None:
            stats = self._stats[endpoint] = _EndpointStats()
        return stats

    def record_request(self, endpoint: str, latency_s: float, *, status: int | None) -> None:
        """One HTTP exchange; ``status`` None means no answer (connection error or timeout)."""
        with self._lock:
            s = self._get(endpoint)
            s.requests += 1
            s._seen += 1
            ms = latency_s * 1000.0
            if len(s.latencies_ms) < _MAX_SAMPLES:
                s.latencies_ms.append(ms)
            else:  # keep a uniform sample of long runs without growing unbounded
                idx = random.randrange(s._seen)
                if idx < _MAX_SAMPLES:
                    s.latencies_ms[idx] = ms
            if status == 429:
                s.throttled += 1
            if status is None or status >= 400:
                s.errors += 1

    def record_cache(self, endpoint: str, *, hits: int = 0, misses: int = 0) -> None:
        with self._lock:
            s = self._get(endpoint)
            s.cache_hits += hits
            s.cache_misses += misses

    def record_retry(self, endpoint: str) -> None:
        with self._lock:
            self._get(endpoint).retries += 1

    def mark(self) -> MetricsMark:
        """The counters now; see `snapshot(since=...)`."""
        with self._lock:
            return MetricsMark(
                counters={e: {c: getattr(s, c) for c in _COUNTERS} for e, s in self._stats.items()},
                samples={e: s._seen for e, s in self._stats.items()},
            )

    def snapshot(self, run_id: str | None = None, since: MetricsMark | None = None) -> list[dict[str, Any]]:
        """One row per endpoint, sorted by endpoint; keys are `USAGE_COLUMNS`. With `since`, the counters
        count only what happened after that mark, and endpoints with nothing new are left out. (Latency
        percentiles after a mark are exact up to the sample size, then drawn from the whole sample.)"""
        rid = run_id if run_id is not None else self.run_id
        with self._lock:
            rows = []
            for endpoint in sorted(self._stats):
                s = self._stats[endpoint]
                before = since.counters.get(endpoint, {}) if since is not None else {}
                counts = {c: getattr(s, c) - before.get(c, 0) for c in _COUNTERS}
                if since is not None and not any(counts.values()):
                    continue
                seen_before = since.samples.get(endpoint, 0) if since is not None else 0
                latencies = s.latencies_ms[seen_before:] if s._seen <= _MAX_SAMPLES else s.latencies_ms
                p50 = percentile(latencies, 50)
                p95 = percentile(latencies, 95)
                rows.append(
                    {
                        "run_id": rid,
                        "endpoint": endpoint,
                        **counts,
                        "latency_p50_ms": None if p50 is None else round(p50, 3),
                        "latency_p95_ms": None if p95 is None else round(p95, 3),
                    }
                )
            return rows

    def totals(self) -> dict[str, int]:
        """Sums of the counters over every endpoint (handy for metadata and assertions)."""
        keys = ("requests", "cache_hits", "cache_misses", "retries", "throttled", "errors")
        out = dict.fromkeys(keys, 0)
        for row in self.snapshot():
            for k in keys:
                out[k] += row[k]
        return out

    def reset(self) -> None:
        with self._lock:
            self._stats.clear()
