-- User OAuth tokens, encrypted by the application (Fernet) before they reach this table: ciphertext only.
CREATE TABLE spotify_oauth_tokens (
    account                  TEXT PRIMARY KEY,
    spotify_user_id          TEXT,
    scopes                   TEXT    NOT NULL,
    access_token_ciphertext  BLOB    NOT NULL,
    refresh_token_ciphertext BLOB    NOT NULL,
    access_token_expires_at  TEXT    NOT NULL,
    consented_at             TEXT    NOT NULL,
    refresh_token_expires_at TEXT    NOT NULL,
    needs_reauth             INTEGER NOT NULL DEFAULT 0,
    updated_at               TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
