-- The local music catalogue as it existed before Spotify enrichment, with its search index.
CREATE TABLE songs (
    id           INTEGER PRIMARY KEY,
    title        TEXT    NOT NULL CHECK (title <> ''),
    artist       TEXT    NOT NULL CHECK (artist <> ''),
    album        TEXT,
    duration_ms  INTEGER CHECK (duration_ms > 0),
    isrc         TEXT    CHECK (isrc GLOB '[A-Z][A-Z][A-Z0-9][A-Z0-9][A-Z0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'),
    release_year INTEGER CHECK (release_year BETWEEN 1000 AND 2999),
    -- Natural key of a catalogue entry (normalized title, artist, album, isrc): reloading a file is idempotent.
    catalog_key  TEXT    NOT NULL UNIQUE,
    created_at   TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at   TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX songs_title_lower ON songs (lower(title));
CREATE INDEX songs_isrc ON songs (isrc);

-- Substring search: an FTS5 trigram index over title, artist and album, kept in sync by triggers.
CREATE VIRTUAL TABLE songs_fts USING fts5(
    title, artist, album, content = 'songs', content_rowid = 'id', tokenize = 'trigram case_sensitive 0'
);

CREATE TRIGGER songs_fts_after_insert AFTER INSERT ON songs BEGIN
    INSERT INTO songs_fts (rowid, title, artist, album) VALUES (new.id, new.title, new.artist, new.album);
END;

CREATE TRIGGER songs_fts_after_delete AFTER DELETE ON songs BEGIN
    INSERT INTO songs_fts (songs_fts, rowid, title, artist, album)
    VALUES ('delete', old.id, old.title, old.artist, old.album);
END;

CREATE TRIGGER songs_fts_after_update AFTER UPDATE OF title, artist, album ON songs BEGIN
    INSERT INTO songs_fts (songs_fts, rowid, title, artist, album)
    VALUES ('delete', old.id, old.title, old.artist, old.album);
    INSERT INTO songs_fts (rowid, title, artist, album) VALUES (new.id, new.title, new.artist, new.album);
END;
