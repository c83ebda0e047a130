-- On-demand enrichment requests: the local profile's request queue (production uses a Redis stream).
-- `spotify-pipeline search --enrich` adds a row per song to enrich soon; the `spotify_enrichment_requests`
-- sensor claims rows (claimed_at, claim_token), requests one enrichment run for them and deletes them.
-- A claim older than the consumer's visibility timeout was abandoned (a crashed sensor tick) and the row
-- may be claimed again. No foreign key to songs: a request is a hint, and the run ignores unknown ids.
CREATE TABLE spotify_enrichment_requests (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    song_id      BIGINT      NOT NULL,
    reason       TEXT        NOT NULL CHECK (reason <> ''),
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_at   TIMESTAMPTZ,
    claim_token  TEXT,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    CHECK ((claimed_at IS NULL) = (claim_token IS NULL))
);
-- Unclaimed rows in queue order, and expired claims by age.
CREATE INDEX spotify_enrichment_requests_unclaimed ON spotify_enrichment_requests (id) WHERE claimed_at IS NULL;
CREATE INDEX spotify_enrichment_requests_claimed_at ON spotify_enrichment_requests (claimed_at)
    WHERE claimed_at IS NOT NULL;
