from __future__ import annotations

from spotify_pipeline.spotify import USAGE_COLUMNS, Metrics
from spotify_pipeline.spotify.metrics import percentile


def test_snapshot_rows_have_the_usage_table_columns() -> None:
    m = Metrics(run_id="run-1")
    for ms in range(1, 101):
        m.record_request("GET /tracks", ms / 1000, status=200)
    m.record_request("GET /tracks", 0.5, status=429)
    m.record_request("GET /tracks", 0.5, status=None)
    m.record_retry("GET /tracks")
    m.record_cache("GET /tracks", hits=7, misses=3)
    m.record_request("GET /search", 0.010, status=200)
    rows = m.snapshot()
    assert [r["endpoint"] for r in rows] == ["GET /search", "GET /tracks"]
    assert all(tuple(r) == USAGE_COLUMNS for r in rows)
    tracks = rows[1]
    assert tracks == {
        "run_id": "run-1",
        "endpoint": "GET /tracks",
        "requests": 102,
        "cache_hits": 7,
        "cache_misses": 3,
        "retries": 1,
        "throttled": 1,
        "errors": 2,
        "latency_p50_ms": 51.0,
        "latency_p95_ms": 97.0,  # nearest rank: ceil(0.95 * 102) = 97th of 1..100, 500, 500
    }
    assert m.snapshot(run_id="other")[0]["run_id"] == "other"
    assert m.totals()["requests"] == 103


def test_empty_metrics() -> None:
    assert Metrics().snapshot() == []
    m = Metrics()
    m.record_cache("GET /tracks", hits=3)
    (row,) = m.snapshot()
    assert row["requests"] == 0 and row["latency_p50_ms"] is None and row["cache_hits"] == 3


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile(list(range(1, 21)), 95) == 19
