-- Every attempt to match a local song to a Spotify track, and the manual overrides that beat matching.
CREATE TABLE spotify_match_attempts (
    id           INTEGER PRIMARY KEY,
    song_id      INTEGER NOT NULL REFERENCES songs (id) ON DELETE CASCADE,
    attempted_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    method       TEXT    NOT NULL CHECK (method IN ('isrc', 'search', 'override')),
    outcome      TEXT    NOT NULL CHECK (outcome IN ('matched', 'no_candidates', 'low_confidence', 'ambiguous', 'error')),
    track_id     TEXT,
    confidence   REAL    CHECK (confidence BETWEEN 0 AND 1),
    reason       TEXT,
    candidates   TEXT    CHECK (candidates IS NULL OR json_valid(candidates))
);
CREATE INDEX spotify_match_attempts_song ON spotify_match_attempts (song_id, attempted_at DESC);

CREATE TABLE spotify_match_overrides (
    song_id    INTEGER PRIMARY KEY REFERENCES songs (id) ON DELETE CASCADE,
    -- NULL track_id means "this song is not on Spotify: never match it".
    track_id   TEXT,
    note       TEXT,
    created_by TEXT,
    created_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
