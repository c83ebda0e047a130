-- Request budgets (issue 15): each run of the daily job plans what its Spotify request budget is spent on
-- (spotify_refresh_runs, spotify_refresh_kinds, spotify_refresh_plan_items), and songs users asked to have
-- enriched stay listed until they were tried (spotify_requested_songs), so the daily run serves them first.

-- One row per run that planned its Spotify work: its budget (run_budget: SPOTIFY_RUN_REQUEST_BUDGET, also the
-- daily budget the ETA is counted in), the requests available when it planned (what the plan divided: the
-- budget, less the day's pool if that was shorter), in which app mode, at what cost per song and after how
-- many days a miss is tried again; then what the matching step measured (the next runs' searches per song)
-- and, once its work was done, what the run spent and how long the backlog left would take at its budget.
CREATE TABLE spotify_refresh_runs (
    run_id            TEXT PRIMARY KEY,
    planned_at        TEXT    NOT NULL,
    app_mode          TEXT    NOT NULL CHECK (app_mode IN ('extended', 'development')),
    run_budget        INTEGER NOT NULL CHECK (run_budget > 0),
    available         INTEGER NOT NULL CHECK (available >= 0),
    searches_per_song REAL    NOT NULL CHECK (searches_per_song > 0),
    miss_retry_days   REAL    NOT NULL CHECK (miss_retry_days >= 0),
    songs_attempted   INTEGER CHECK (songs_attempted >= 0),
    matching_requests INTEGER CHECK (matching_requests >= 0),
    finished_at       TEXT,
    requests_spent    INTEGER CHECK (requests_spent >= 0),
    eta_days          REAL    CHECK (eta_days >= 0)
);
CREATE INDEX spotify_refresh_runs_planned_at ON spotify_refresh_runs (planned_at);

-- Per run and kind of work: what the plan selected, what it left (items, estimated requests), and the
-- backlog measured once the run's work was done (remaining_*).
CREATE TABLE spotify_refresh_kinds (
    run_id             TEXT    NOT NULL REFERENCES spotify_refresh_runs (run_id) ON DELETE CASCADE,
    kind               TEXT    NOT NULL CHECK (kind IN ('on_demand', 'unmatched', 'stale_metadata', 'popularity')),
    planned_items      INTEGER NOT NULL CHECK (planned_items >= 0),
    planned_requests   INTEGER NOT NULL CHECK (planned_requests >= 0),
    backlog_items      INTEGER NOT NULL CHECK (backlog_items >= 0),
    backlog_requests   INTEGER NOT NULL CHECK (backlog_requests >= 0),
    remaining_items    INTEGER CHECK (remaining_items >= 0),
    remaining_requests INTEGER CHECK (remaining_requests >= 0),
    PRIMARY KEY (run_id, kind)
);

-- The items a run planned, in the order to do them: songs (on_demand, unmatched) or tracks (the others).
-- Kept for a week (the planning step drops older runs' items); the two tables above are kept.
CREATE TABLE spotify_refresh_plan_items (
    run_id   TEXT    NOT NULL REFERENCES spotify_refresh_runs (run_id) ON DELETE CASCADE,
    kind     TEXT    NOT NULL CHECK (kind IN ('on_demand', 'unmatched', 'stale_metadata', 'popularity')),
    position INTEGER NOT NULL CHECK (position >= 0),
    song_id  INTEGER,
    track_id TEXT,
    PRIMARY KEY (run_id, kind, position),
    CHECK ((song_id IS NULL) <> (track_id IS NULL))
);

-- Songs someone asked to have enriched (an on-demand run records its songs when it starts), until they
-- were tried after the request: the daily run's first priority. No row means no one is waiting.
CREATE TABLE spotify_requested_songs (
    song_id      INTEGER PRIMARY KEY REFERENCES songs (id) ON DELETE CASCADE,
    requested_at TEXT    NOT NULL
);

-- Stale track metadata, oldest read first; and the tracks matched since a run planned (read by that run).
CREATE INDEX spotify_tracks_fetched_at ON spotify_tracks (fetched_at);
CREATE INDEX spotify_track_matches_matched_at ON spotify_track_matches (matched_at);
