-- What analysts and `spotify-pipeline search` read: the catalogue with its Spotify enrichment.
-- enrichment_status: 'unmatched' (no Spotify track yet), 'stale' (matched, not synced in the last 26 h,
-- one daily run plus slack), 'matched' (synced within 26 h).
CREATE VIEW songs_search AS
SELECT
    s.id                         AS song_id,
    s.title,
    s.artist,
    s.album,
    s.duration_ms,
    s.isrc,
    s.release_year,
    s.spotify_track_id,
    s.spotify_uri,
    CASE WHEN s.spotify_track_id IS NOT NULL
         THEN 'https://open.spotify.com/track/' || s.spotify_track_id END AS spotify_url,
    s.spotify_popularity         AS popularity,
    s.spotify_popularity_read_at AS popularity_read_at,
    s.spotify_preview_url        AS preview_url,
    s.spotify_album_image_url    AS album_image_url,
    s.spotify_explicit           AS explicit,
    s.spotify_match_method       AS match_method,
    s.spotify_match_confidence   AS match_confidence,
    s.spotify_synced_at          AS synced_at,
    CASE WHEN s.spotify_track_id IS NULL THEN 'unmatched'
         WHEN s.spotify_synced_at IS NULL OR s.spotify_synced_at < datetime('now', '-26 hours') THEN 'stale'
         ELSE 'matched' END      AS enrichment_status
FROM songs AS s;
