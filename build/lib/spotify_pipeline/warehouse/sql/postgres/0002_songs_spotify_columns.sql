-- migrate: no-transaction
-- Online and additive: nullable columns only (a catalogue change, no table rewrite), the index built
-- CONCURRENTLY, and a short lock_timeout so a busy table makes this fail (and be re-run) rather than
-- queue every reader behind it. Each statement is safe to run again after a failure.
SET lock_timeout = '500ms';

ALTER TABLE songs
    ADD COLUMN IF NOT EXISTS spotify_track_id           TEXT,
    ADD COLUMN IF NOT EXISTS spotify_uri                TEXT,
    ADD COLUMN IF NOT EXISTS spotify_popularity         SMALLINT,
    ADD COLUMN IF NOT EXISTS spotify_popularity_read_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS spotify_preview_url        TEXT,
    ADD COLUMN IF NOT EXISTS spotify_album_image_url    TEXT,
    ADD COLUMN IF NOT EXISTS spotify_explicit           BOOLEAN,
    ADD COLUMN IF NOT EXISTS spotify_match_method       TEXT,
    ADD COLUMN IF NOT EXISTS spotify_match_confidence   REAL,
    ADD COLUMN IF NOT EXISTS spotify_synced_at          TIMESTAMPTZ;

-- A failed CONCURRENTLY build leaves an invalid index behind; drop it before building again.
DROP INDEX CONCURRENTLY IF EXISTS songs_spotify_track_id;
CREATE INDEX CONCURRENTLY songs_spotify_track_id ON songs (spotify_track_id);
