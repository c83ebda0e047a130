-- Spotify API usage per pipeline run and endpoint (what the run cost, and how Spotify answered).
CREATE TABLE spotify_api_usage (
    run_id         TEXT        NOT NULL,
    endpoint       TEXT        NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    requests       INTEGER     NOT NULL DEFAULT 0,
    cache_hits     INTEGER     NOT NULL DEFAULT 0,
    cache_misses   INTEGER     NOT NULL DEFAULT 0,
    retries        INTEGER     NOT NULL DEFAULT 0,
    throttled      INTEGER     NOT NULL DEFAULT 0,
    errors         INTEGER     NOT NULL DEFAULT 0,
    latency_p50_ms REAL,
    latency_p95_ms REAL,
    PRIMARY KEY (run_id, endpoint)
);
CREATE INDEX spotify_api_usage_recorded_at ON spotify_api_usage (recorded_at);
