-- Usage per run, asset and endpoint: each step of a run records its own requests, so no step overwrites
-- another's and a run's rows add up to what Spotify saw. Rows recorded before keep asset ''.
ALTER TABLE spotify_api_usage ADD COLUMN asset TEXT NOT NULL DEFAULT '';
ALTER TABLE spotify_api_usage DROP CONSTRAINT spotify_api_usage_pkey;
ALTER TABLE spotify_api_usage ADD PRIMARY KEY (run_id, asset, endpoint);
