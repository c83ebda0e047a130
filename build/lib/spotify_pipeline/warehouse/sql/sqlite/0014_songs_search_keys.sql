-- Accent- and case-insensitive search: each searchable field folded by the application (search.py,
-- fold_for_search) beside the original, and the indexes search reads. The application writes the keys with
-- every song; the rows already here get theirs from this migration's post-migration step
-- (catalog.backfill_search_keys), which runs inside this file's transaction, after these statements.
-- Nothing here calls a function the sqlite3 shell lacks, so analysts' shells can still write the file.
ALTER TABLE songs ADD COLUMN search_title TEXT;
ALTER TABLE songs ADD COLUMN search_artist TEXT;
ALTER TABLE songs ADD COLUMN search_album TEXT;

-- The old search's indexes: lower(title) was a Python function registered on the application's connection
-- (the shell's built-in lower() folds ASCII only, so its writes disagreed with the index), and the FTS index
-- held the text as written.
DROP INDEX songs_title_lower;
DROP TRIGGER songs_fts_after_insert;
DROP TRIGGER songs_fts_after_delete;
DROP TRIGGER songs_fts_after_update;
DROP TABLE songs_fts;

-- Exact and prefix title matches, in rank order.
CREATE INDEX songs_search_title ON songs (search_title, title);

-- Substring search: an FTS5 trigram index over the keys. They are folded already, so the index compares
-- them exactly. A song is in the index exactly when it has search keys (a row written without them, by
-- hand, joins when they are filled), which the triggers keep true.
CREATE VIRTUAL TABLE songs_fts USING fts5(
    search_title, search_artist, search_album,
    content = 'songs', content_rowid = 'id', tokenize = 'trigram case_sensitive 1'
);

CREATE TRIGGER songs_fts_after_insert AFTER INSERT ON songs WHEN new.search_title IS NOT NULL BEGIN
    INSERT INTO songs_fts (rowid, search_title, search_artist, search_album)
    VALUES (new.id, new.search_title, new.search_artist, new.search_album);
END;

CREATE TRIGGER songs_fts_after_delete AFTER DELETE ON songs WHEN old.search_title IS NOT NULL BEGIN
    INSERT INTO songs_fts (songs_fts, rowid, search_title, search_artist, search_album)
    VALUES ('delete', old.id, old.search_title, old.search_artist, old.search_album);
END;

CREATE TRIGGER songs_fts_after_update AFTER UPDATE OF search_title, search_artist, search_album ON songs BEGIN
    INSERT INTO songs_fts (songs_fts, rowid, search_title, search_artist, search_album)
    SELECT 'delete', old.id, old.search_title, old.search_artist, old.search_album
    WHERE old.search_title IS NOT NULL;
    INSERT INTO songs_fts (rowid, search_title, search_artist, search_album)
    SELECT new.id, new.search_title, new.search_artist, new.search_album
    WHERE new.search_title IS NOT NULL;
END;
