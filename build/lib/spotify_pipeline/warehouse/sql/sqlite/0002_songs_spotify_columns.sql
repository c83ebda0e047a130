-- Additive: nullable columns only (SQLite adds a column without rewriting the table).
ALTER TABLE songs ADD COLUMN spotify_track_id TEXT;
ALTER TABLE songs ADD COLUMN spotify_uri TEXT;
ALTER TABLE songs ADD COLUMN spotify_popularity INTEGER;
ALTER TABLE songs ADD COLUMN spotify_popularity_read_at TEXT;
ALTER TABLE songs ADD COLUMN spotify_preview_url TEXT;
ALTER TABLE songs ADD COLUMN spotify_album_image_url TEXT;
ALTER TABLE songs ADD COLUMN spotify_explicit INTEGER;
ALTER TABLE songs ADD COLUMN spotify_match_method TEXT;
ALTER TABLE songs ADD COLUMN spotify_match_confidence REAL;
ALTER TABLE songs ADD COLUMN spotify_synced_at TEXT;

CREATE INDEX songs_spotify_track_id ON songs (spotify_track_id);
