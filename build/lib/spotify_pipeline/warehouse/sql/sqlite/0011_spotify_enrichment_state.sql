-- The pipeline's current view of each song's match (overrides applied), and the daily popularity movers.
CREATE TABLE spotify_track_matches (
    song_id    INTEGER PRIMARY KEY REFERENCES songs (id) ON DELETE CASCADE,
    track_id   TEXT    NOT NULL,
    method     TEXT    NOT NULL CHECK (method IN ('isrc', 'search', 'override')),
    confidence REAL    NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    matched_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX spotify_track_matches_track ON spotify_track_matches (track_id);

-- When the track data was last read from Spotify (popularity_read_at covers popularity alone).
ALTER TABLE spotify_tracks ADD COLUMN fetched_at TEXT;

CREATE TABLE spotify_popularity_movers (
    snapshot_date       TEXT    NOT NULL,
    track_id            TEXT    NOT NULL,
    popularity          INTEGER NOT NULL,
    previous_date       TEXT,
    previous_popularity INTEGER,
    change_vs_previous  INTEGER,
    week_ago_popularity INTEGER,
    change_vs_week_ago  INTEGER,
    -- 'riser' or 'faller' against the previous snapshot; rank 1 is the biggest move of its kind.
    direction           TEXT    NOT NULL CHECK (direction IN ('riser', 'faller')),
    rank                INTEGER NOT NULL,
    PRIMARY KEY (snapshot_date, track_id)
);
