-- migrate: no-transaction
-- Accent- and case-insensitive search: each searchable field folded by the application (search.py,
-- fold_for_search) beside the original, and the indexes search reads. The application writes the keys with
-- every song; the rows already here get theirs from this migration's post-migration step
-- (catalog.backfill_search_keys), which runs after these statements and before the version is recorded.
-- The keys compare in code-point order ("C"), as search ranks them.
-- Online and additive like 0002: nullable columns only (no table rewrite), indexes built CONCURRENTLY, and a
-- short lock_timeout so a busy table makes this fail (and be re-run) rather than queue every reader behind
-- it. Each statement is safe to run again after a failure.
SET lock_timeout = '500ms';

ALTER TABLE songs
    ADD COLUMN IF NOT EXISTS search_title  TEXT COLLATE "C",
    ADD COLUMN IF NOT EXISTS search_artist TEXT COLLATE "C",
    ADD COLUMN IF NOT EXISTS search_album  TEXT COLLATE "C";

-- A failed CONCURRENTLY build leaves an invalid index behind; drop it before building again.
-- Exact and prefix title matches, in rank order.
DROP INDEX CONCURRENTLY IF EXISTS songs_search_title;
CREATE INDEX CONCURRENTLY songs_search_title ON songs (search_title, (title COLLATE "C"), id);
-- Substring matches.
DROP INDEX CONCURRENTLY IF EXISTS songs_search_title_trgm;
CREATE INDEX CONCURRENTLY songs_search_title_trgm ON songs USING gin (search_title gin_trgm_ops);
DROP INDEX CONCURRENTLY IF EXISTS songs_search_artist_trgm;
CREATE INDEX CONCURRENTLY songs_search_artist_trgm ON songs USING gin (search_artist gin_trgm_ops);
DROP INDEX CONCURRENTLY IF EXISTS songs_search_album_trgm;
CREATE INDEX CONCURRENTLY songs_search_album_trgm ON songs USING gin (search_album gin_trgm_ops);
