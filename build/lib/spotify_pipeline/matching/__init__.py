"""Matching local songs to Spotify tracks (pure logic, no Dagster): see `matcher`."""

from spotify_pipeline.matching.matcher import (
    MatchMethod,
    MatchOutcome,
    MatchResult,
    ScoredCandidate,
    SearchClient,
    SongToMatch,
    TrackMatcher,
)

__all__ = ["MatchMethod", "MatchOutcome", "MatchResult", "ScoredCandidate", "SearchClient", "SongToMatch", "TrackMatcher"]
