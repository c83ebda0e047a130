-- The pipeline's current view of each song's match (overrides applied), and the daily popularity movers.
CREATE TABLE spotify_track_matches (
    song_id    BIGINT PRIMARY KEY REFERENCES songs (id) ON DELETE CASCADE,
    track_id   TEXT        NOT NULL,
    method     TEXT        NOT NULL CHECK (method IN ('isrc', 'search', 'override')),
    confidence REAL        NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    matched_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX spotify_track_matches_track ON spotify_track_matches (track_id);

-- When the track data was last read from Spotify (popularity_read_at covers popularity alone).
ALTER TABLE spotify_tracks ADD COLUMN fetched_at TIMESTAMPTZ;

CREATE TABLE spotify_popularity_movers (
    snapshot_date       DATE     NOT NULL,
    track_id            TEXT     NOT NULL,
    popularity          SMALLINT NOT NULL,
    previous_date       DATE,
    previous_popularity SMALLINT,
    change_vs_previous  SMALLINT,
    week_ago_popularity SMALLINT,
    change_vs_week_ago  SMALLINT,
    -- 'riser' or 'faller' against the previous snapshot; rank 1 is the biggest move of its kind.
    direction           TEXT     NOT NULL CHECK (direction IN ('riser', 'faller')),
    rank                SMALLINT NOT NULL,
    PRIMARY KEY (snapshot_date, track_id)
);

GRANT SELECT ON spotify_track_matches, spotify_popularity_movers TO spotify_analyst;
