-- Raw Spotify responses as pulled, one row per request and UTC pull date (the raw_spotify_tracks partitions).
CREATE TABLE spotify_raw_responses (
    pull_date   DATE        NOT NULL,
    endpoint    TEXT        NOT NULL,
    request_key TEXT        NOT NULL,
    status      SMALLINT    NOT NULL,
    fetched_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    body        JSONB,
    PRIMARY KEY (pull_date, endpoint, request_key)
);
