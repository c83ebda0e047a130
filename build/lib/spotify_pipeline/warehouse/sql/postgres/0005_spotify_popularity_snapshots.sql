-- Popularity per track per UTC day, as read on that day (Spotify only tells the current value).
CREATE TABLE spotify_popularity_snapshots (
    snapshot_date DATE        NOT NULL,
    track_id      TEXT        NOT NULL,
    popularity    SMALLINT    NOT NULL CHECK (popularity BETWEEN 0 AND 100),
    captured_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (snapshot_date, track_id)
);
CREATE INDEX spotify_popularity_snapshots_track ON spotify_popularity_snapshots (track_id, snapshot_date);
