-- Connected users' libraries: saved tracks (a removal is recorded, never deleted) and listening history.
CREATE TABLE spotify_saved_tracks (
    account       TEXT        NOT NULL,
    track_id      TEXT        NOT NULL,
    added_at      TIMESTAMPTZ NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The UTC day a pull first found the track no longer saved; NULL while it is saved.
    removed_on    DATE,
    PRIMARY KEY (account, track_id)
);

CREATE TABLE spotify_recently_played (
    account     TEXT        NOT NULL,
    played_at   TIMESTAMPTZ NOT NULL,
    -- Spotify's cursor unit (ms since the epoch): the next pull asks for plays after the newest one.
    played_at_ms BIGINT     NOT NULL,
    track_id    TEXT        NOT NULL,
    context_uri TEXT,
    loaded_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account, played_at_ms)
);
CREATE INDEX spotify_recently_played_track ON spotify_recently_played (track_id);
