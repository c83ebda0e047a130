-- User OAuth tokens, encrypted by the application (Fernet) before they reach this table: ciphertext only.
CREATE TABLE spotify_oauth_tokens (
    account                  TEXT PRIMARY KEY,
    spotify_user_id          TEXT,
    scopes                   TEXT        NOT NULL,
    access_token_ciphertext  BYTEA       NOT NULL,
    refresh_token_ciphertext BYTEA       NOT NULL,
    access_token_expires_at  TIMESTAMPTZ NOT NULL,
    consented_at             TIMESTAMPTZ NOT NULL,
    refresh_token_expires_at TIMESTAMPTZ NOT NULL,
    needs_reauth             BOOLEAN     NOT NULL DEFAULT false,
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now()
);
