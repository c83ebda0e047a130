"""Match quality on the labelled sample catalogue, against the offline emulator over real HTTP with the real
client, beside the naive first-hit baseline; and what stops a run, end to end.

Precision = correct matches / matches made; recall = correct matches / songs that truly have a track.
Figures are printed (``pytest -s`` shows them) and recorded as junit properties.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from spotify_pipeline.emulator.testing import EmulatorHandle
from spotify_pipeline.matching import SongToMatch, TrackMatcher
from spotify_pipeline.matching.evaluation import Comparison, compare_with_baseline, load_sample
from spotify_pipeline.matching.matcher import OUTCOMES
from spotify_pipeline.spotify import (
    SpotifyClient,
    SpotifyClientConfig,
    SpotifyQuotaExceeded,
    SpotifyServerError,
    build_client,
)

MIN_PRECISION = 0.99
MIN_RECALL = 0.95
LABELLED = load_sample()


def client_for(emu: EmulatorHandle, **overrides: Any) -> SpotifyClient:
    values: dict[str, Any] = dict(
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        api_base_url=emu.api_base_url,
        accounts_base_url=emu.accounts_base_url,
        rate_limit_per_minute=1_000_000,  # the client's limiter must not be the bottleneck in a quality test
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    values.update(overrides)
    return build_client(SpotifyClientConfig(**values))


def check(comparison: Comparison, emu: EmulatorHandle, mode: str, record_property: Any) -> dict[str, object]:
    summary = comparison.summary()
    print(f"\nmatching quality ({mode} mode): {json.dumps(summary)}")
    for key in ("precision", "recall", "baseline_precision", "baseline_recall", "seconds"):
        record_property(f"{mode}_{key}", summary[key])
    results = comparison.results
    # One record per song, in order, every outcome a known one, none an error.
    assert [r.song_id for r in results] == [item.song.song_id for item in LABELLED]
    assert {r.outcome for r in results} <= set(OUTCOMES) - {"error"}, summary["outcomes"]
    assert all(0.0 <= r.confidence <= 1.0 for r in results)
    assert all((r.track is not None and r.track.id == r.track_id) == r.matched for r in results)
    assert all(r.method == "isrc" for r, item in zip(results, LABELLED, strict=True) if item.case == "exact_isrc")
    # The quality bar, and the baseline it must beat.
    assert comparison.matcher.precision >= MIN_PRECISION, comparison.matcher.wrong
    assert comparison.matcher.recall >= MIN_RECALL, comparison.matcher.missed
    assert comparison.matcher.precision >= comparison.baseline.precision
    assert comparison.matcher.recall > comparison.baseline.recall
    # Songs that are not on Spotify are never matched (one in five borrows a real title by another artist).
    assert comparison.matcher.by_kind["not_on_spotify"]["wrong"] == 0
    # The queries each record lists are the requests the emulator saw (plus one per song for the baseline).
    searches = emu.stats()["by_endpoint"]["/v1/search"]
    assert searches == sum(len(r.queries) for r in results) + len(LABELLED)
    assert comparison.seconds < 20, "1,000 songs should take a few seconds"
    return summary


def test_quality_extended_mode(emulator: EmulatorHandle, record_property: Any) -> None:
    emulator.configure(window_limit=None)
    with client_for(emulator) as client:
        comparison = compare_with_baseline(client, LABELLED)
        assert client.capabilities.mode == "extended" and client.capabilities.max_search_limit == 50
    check(comparison, emulator, "extended", record_property)


def test_quality_development_mode(emulator_factory: Any, record_property: Any) -> None:
    """Development Mode: search limit 10 (the emulator answers 400 above it), detected by the client itself."""
    emu = emulator_factory(mode="development", window_limit=None)
    with client_for(emu) as client:
        comparison = compare_with_baseline(client, LABELLED)
        assert client.capabilities.mode == "development" and client.capabilities.max_search_limit == 10
    check(comparison, emu, "development", record_property)


def test_quota_exceeded_stops_the_run(emulator: EmulatorHandle) -> None:
    emulator.configure(window_limit=None, quota=5)
    songs = [item.song for item in LABELLED[:20]]
    done = []
    with client_for(emulator, app_mode="extended") as client, pytest.raises(SpotifyQuotaExceeded):
        for result in TrackMatcher(client).match_many(songs):
            done.append(result)
    assert 0 < len(done) < len(songs)


def test_server_errors_after_retries_stop_the_run(emulator: EmulatorHandle) -> None:
    emulator.configure(window_limit=None, error_rate=1.0)
    song = SongToMatch(song_id=1, title="Hold Me Home", artist="Ava Hart")
    with client_for(emulator, app_mode="extended", max_attempts=2) as client, pytest.raises(SpotifyServerError):
        TrackMatcher(client).match(song)
