"""Offline Spotify Web API emulator (independent of the client in `spotify_pipeline.spotify`)."""
