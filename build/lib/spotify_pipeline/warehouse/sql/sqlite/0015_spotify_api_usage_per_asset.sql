-- Usage per run, asset and endpoint: each step of a run records its own requests, so no step overwrites
-- another's and a run's rows add up to what Spotify saw. Rows recorded before keep asset ''.
-- SQLite cannot change a primary key in place: the table is rebuilt (it is small: one row per step and endpoint).
CREATE TABLE spotify_api_usage_by_asset (
    run_id         TEXT    NOT NULL,
    asset          TEXT    NOT NULL DEFAULT '',
    endpoint       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    requests       INTEGER NOT NULL DEFAULT 0,
    cache_hits     INTEGER NOT NULL DEFAULT 0,
    cache_misses   INTEGER NOT NULL DEFAULT 0,
    retries        INTEGER NOT NULL DEFAULT 0,
    throttled      INTEGER NOT NULL DEFAULT 0,
    errors         INTEGER NOT NULL DEFAULT 0,
    latency_p50_ms REAL,
    latency_p95_ms REAL,
    PRIMARY KEY (run_id, asset, endpoint)
);
INSERT INTO spotify_api_usage_by_asset (
    run_id, endpoint, recorded_at, requests, cache_hits, cache_misses, retries, throttled, errors,
    latency_p50_ms, latency_p95_ms
)
SELECT run_id, endpoint, recorded_at, requests, cache_hits, cache_misses, retries, throttled, errors,
       latency_p50_ms, latency_p95_ms
FROM spotify_api_usage;
DROP TABLE spotify_api_usage;
ALTER TABLE spotify_api_usage_by_asset RENAME TO spotify_api_usage;
CREATE INDEX spotify_api_usage_recorded_at ON spotify_api_usage (recorded_at);
