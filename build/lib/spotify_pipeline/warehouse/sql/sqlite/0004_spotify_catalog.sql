-- Normalized Spotify catalogue. Fields Spotify removed for Development Mode apps are nullable: NULL
-- there means "not available to this app", never "zero".
CREATE TABLE spotify_artists (
    artist_id  TEXT PRIMARY KEY,
    name       TEXT    NOT NULL,
    uri        TEXT,
    genres     TEXT    CHECK (genres IS NULL OR json_valid(genres)),
    followers  INTEGER,
    popularity INTEGER CHECK (popularity BETWEEN 0 AND 100),
    updated_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE spotify_albums (
    album_id               TEXT PRIMARY KEY,
    name                   TEXT    NOT NULL,
    album_type             TEXT,
    release_date           TEXT,
    release_date_precision TEXT,
    total_tracks           INTEGER,
    image_url              TEXT,
    label                  TEXT,
    popularity             INTEGER CHECK (popularity BETWEEN 0 AND 100),
    uri                    TEXT,
    updated_at             TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE spotify_tracks (
    track_id           TEXT PRIMARY KEY,
    name               TEXT    NOT NULL,
    album_id           TEXT    REFERENCES spotify_albums (album_id),
    duration_ms        INTEGER,
    explicit           INTEGER,
    isrc               TEXT,
    disc_number        INTEGER,
    track_number       INTEGER,
    preview_url        TEXT,
    uri                TEXT,
    -- The id Spotify actually served when it relinked the requested id for a market.
    served_track_id    TEXT,
    popularity         INTEGER CHECK (popularity BETWEEN 0 AND 100),
    popularity_read_at TEXT,
    updated_at         TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX spotify_tracks_isrc ON spotify_tracks (isrc);
CREATE INDEX spotify_tracks_album_id ON spotify_tracks (album_id);

CREATE TABLE spotify_track_artists (
    track_id  TEXT    NOT NULL REFERENCES spotify_tracks (track_id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    artist_id TEXT    NOT NULL REFERENCES spotify_artists (artist_id),
    PRIMARY KEY (track_id, position)
);
CREATE INDEX spotify_track_artists_artist_id ON spotify_track_artists (artist_id);
