"""Benchmark: track matching quality and speed on the labelled sample catalogue, against a naive baseline.

Starts a fresh offline emulator (Extended Quota mode, no rolling-window limit, so the limits under test are
the matcher's, not Spotify's), matches the ~1,000 songs of `spotify_pipeline/data/sample_catalog.csv` with
`TrackMatcher` through the real client over HTTP, and scores the matches against
`sample_catalog_labels.csv`. The baseline sends one query per song (``isrc:`` or ``track:"" artist:""``) and
takes the first hit. Then the same in Development Mode (search limit 10, auto-detected by the client).

- ``precision`` = correct matches / matches made; ``recall`` = correct matches / songs that truly have a track;
- ``seconds``: wall time of the matcher over all songs (Extended Quota mode);
- ``search_requests``: search requests the matcher sent (the baseline sends one per song);
- ``development_*``: the matcher's figures in Development Mode.

Run ``python -m bench.matching [--quick]`` (``--quick``: the first 250 songs); `run(quick)` returns the dict.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

QUICK_SONGS = 250


def _measure(mode: str, labelled: list[Any]) -> dict[str, Any]:
    from spotify_pipeline.emulator.testing import run_emulator
    from spotify_pipeline.matching.evaluation import compare_with_baseline
    from spotify_pipeline.spotify import SpotifyClientConfig, build_client

    with run_emulator(mode=mode, window_limit=None) as emulator:
        config = SpotifyClientConfig(
            client_id=emulator.client_id,
            client_secret=emulator.client_secret,
            api_base_url=emulator.api_base_url,
            accounts_base_url=emulator.accounts_base_url,
            rate_limit_per_minute=1_000_000,  # the client's own limiter must not be the bottleneck here
        )
        with build_client(config) as client:
            summary = compare_with_baseline(client, labelled).summary()
            summary["search_limit"] = client.capabilities.max_search_limit
    return summary


def run(quick: bool = False) -> dict[str, Any]:
    """Matcher vs first-hit baseline; returns precision, recall, baseline_precision, baseline_recall, songs,
    seconds (Extended Quota mode) plus the Development Mode figures and request counts."""
    from spotify_pipeline.matching.evaluation import load_sample

    labelled = load_sample()
    if quick:
        labelled = labelled[:QUICK_SONGS]
    extended = _measure("extended", labelled)
    development = _measure("development", labelled)
    return {
        "precision": extended["precision"],
        "recall": extended["recall"],
        "baseline_precision": extended["baseline_precision"],
        "baseline_recall": extended["baseline_recall"],
        "songs": extended["songs"],
        "seconds": extended["seconds"],
        "baseline_seconds": extended["baseline_seconds"],
        "songs_per_second": round(extended["songs"] / extended["seconds"], 1) if extended["seconds"] else None,
        "outcomes": extended["outcomes"],
        "matched_by_method": extended["matched_by_method"],
        "search_requests": extended["search_requests"],
        "baseline_search_requests": extended["baseline_search_requests"],
        "development_precision": development["precision"],
        "development_recall": development["recall"],
        "development_baseline_precision": development["baseline_precision"],
        "development_baseline_recall": development["baseline_recall"],
        "development_seconds": development["seconds"],
        "development_search_limit": development["search_limit"],
        "development_search_requests": development["search_requests"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_SONGS} songs only")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
