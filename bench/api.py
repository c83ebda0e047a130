"""API efficiency: Spotify requests the client spends to refresh 1,000 tracks, counted by the emulator.

The offline emulator runs with its rate limit off; a client built the way the pipeline builds it
(`build_client`, mode auto-detected, Redis cache and limiter under a scratch key prefix) fetches 1,000
catalogue tracks with `get_tracks`. The emulator's own counters (`stats()`) say what arrived:

- ``extended_requests_per_1000``: Web API requests in Extended Quota mode (batches of 50: minimum 20);
- ``development_requests_per_1000``: the same in Development Mode (no batch endpoint: minimum 1,000);
  the one batch request answered 403 that tells the client which mode it has is counted and reported
  (``*_mode_probes``);
- ``warm_rerun_requests``: every request (token included) of a second run within the cache TTL: a new
  client, as a new run builds, on the same Redis cache, in both modes. Target 0.

Token requests (``/api/token``) are reported apart (``*_token_requests``): one per app per hour, not per track.
Run ``python -m bench.api``; `run(quick)` returns the dict (the figure is the same with ``quick``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.harness import redis_url, scratch_redis_prefix

TRACKS = 1_000
TOKEN_ENDPOINT = "/api/token"


def _counts(stats: dict[str, Any]) -> dict[str, int]:
    by_endpoint: dict[str, int] = stats["by_endpoint"]
    api = sum(n for endpoint, n in by_endpoint.items() if endpoint != TOKEN_ENDPOINT)
    probes = int(stats["by_endpoint_status"].get("/v1/tracks", {}).get("403", 0))
    return {
        "api": api,
        "token": int(by_endpoint.get(TOKEN_ENDPOINT, 0)),
        "total": int(stats["total_requests"]),
        "probes": probes,
        "throttled": int(stats["by_status"].get("429", 0)),
    }


def _refresh(emulator: Any, ids: list[str], url: str, prefix: str) -> tuple[dict[str, int], int]:
    """One run's refresh: a new client on the shared cache fetches `ids`; returns the emulator's counts."""
    from spotify_pipeline.spotify import SpotifyClientConfig, build_client

    config = SpotifyClientConfig(
        client_id=emulator.client_id,
        client_secret=emulator.client_secret,
        api_base_url=emulator.api_base_url,
        accounts_base_url=emulator.accounts_base_url,
        redis_url=url,
        redis_key_prefix=prefix,
        rate_limit_per_minute=10_000_000,  # the figure counts requests; the limiter must not pace them
    )
    emulator.reset()
    with build_client(config) as client:
        tracks = client.get_tracks(ids)
    found = sum(1 for t in tracks.values() if t is not None)
    return _counts(emulator.stats()), found


def run(quick: bool = False) -> dict[str, Any]:
    from spotify_pipeline.emulator.catalog import DEFAULT_SEED, Catalog
    from spotify_pipeline.emulator.testing import run_emulator

    # The catalogue is prefix-stable: these are the emulator's first 1,000 tracks whatever its size.
    ids = [t.id for t in Catalog(DEFAULT_SEED, TRACKS).tracks]
    out: dict[str, Any] = {"tracks": TRACKS}
    url = redis_url()
    with run_emulator(mode="extended", window_limit=None) as emulator:
        for mode in ("extended", "development"):
            emulator.configure(mode=mode)
            with scratch_redis_prefix(f"api-{mode}", url) as prefix:  # a cold cache per mode
                cold, found = _refresh(emulator, ids, url, prefix)
                warm, warm_found = _refresh(emulator, ids, url, prefix)
            if found != TRACKS or warm_found != TRACKS:
                raise RuntimeError(f"{mode}: fetched {found} and {warm_found} of {TRACKS} tracks")
            if cold["throttled"] or warm["throttled"]:
                raise RuntimeError(f"{mode}: the emulator throttled requests with its limit off")
            out[f"{mode}_requests_per_1000"] = round(cold["api"] * 1000 / TRACKS, 1)
            out[f"{mode}_mode_probes"] = cold["probes"]
            out[f"{mode}_token_requests"] = cold["token"]
            out[f"{mode}_cold_run_requests"] = cold["total"]
            out[f"{mode}_warm_rerun_requests"] = warm["total"]
    out["cold_run_requests"] = out["extended_cold_run_requests"] + out["development_cold_run_requests"]
    out["warm_rerun_requests"] = out["extended_warm_rerun_requests"] + out["development_warm_rerun_requests"]
    out["minimum_extended"] = TRACKS // 50
    out["minimum_development"] = TRACKS
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
