-- A read-only role for analysts (NOLOGIN: grant it to login roles). It reads the search view, the
-- catalogue and the snapshots, and never the token table. Roles are cluster-wide, so create it once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'spotify_analyst') THEN
        CREATE ROLE spotify_analyst NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO spotify_analyst;
GRANT SELECT ON
    songs_search,
    songs,
    spotify_tracks,
    spotify_artists,
    spotify_albums,
    spotify_track_artists,
    spotify_popularity_snapshots,
    spotify_match_attempts,
    spotify_match_overrides,
    spotify_api_usage
TO spotify_analyst;
REVOKE ALL ON spotify_oauth_tokens FROM PUBLIC;
REVOKE ALL ON spotify_oauth_tokens FROM spotify_analyst;
