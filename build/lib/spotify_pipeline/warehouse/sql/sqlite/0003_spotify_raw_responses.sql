-- Raw Spotify responses as pulled, one row per request and UTC pull date (the raw_spotify_tracks partitions).
CREATE TABLE spotify_raw_responses (
    pull_date   TEXT    NOT NULL,
    endpoint    TEXT    NOT NULL,
    request_key TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    fetched_at  TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    body        TEXT    CHECK (body IS NULL OR json_valid(body)),
    PRIMARY KEY (pull_date, endpoint, request_key)
);
