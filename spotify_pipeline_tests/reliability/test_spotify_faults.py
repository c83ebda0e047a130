"""Spotify misbehaving: server errors, dropped connections, latency and 429 bursts; Spotify unreachable;
the daily quota spent or a Retry-After of hours. The daily job either completes with exactly the tables of
a fault-free run, or stops quickly with an error that names the cause and leaves no partial partition."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from spotify_pipeline.emulator.testing import run_emulator
from spotify_pipeline.spotify import SpotifyClientConfig, build_client
from spotify_pipeline.spotify.errors import SpotifyConnectionError
from spotify_pipeline.warehouse.search import search
from spotify_pipeline_tests.reliability.conftest import (
    NO_DUPLICATES,
    build_pipeline,
    catalogue_subset,
    compare,
    fingerprint,
    natural_key_duplicates,
    partition_counts,
    step_failures,
)
from spotify_pipeline_tests.servers import free_port

pytestmark = pytest.mark.reliability

CATALOGUE_ROWS = 80
FAULTS = {
    "error_rate": 0.10,  # 500 / 502 / 503
    "reset_rate": 0.02,  # connections dropped before the answer, or cut off mid-body
    "latency_ms": 5.0,
    # 429 bursts: at most 12 requests in any second (the client itself does not limit), Retry-After 1 s.
    "window_limit": 12,
    "window_seconds": 1.0,
}
EMPTY_PARTITIONS = {"raw_spotify_tracks": 0, "spotify_popularity_snapshots": 0, "songs_enriched": 0}


def test_server_errors_resets_latency_and_429_bursts_end_in_the_fault_free_tables(references, emulator, tmp_path):
    reference = references.get("sqlite", CATALOGUE_ROWS)
    emulator.configure(**FAULTS)
    emulator.reset()  # re-seed the faults for this test
    built = build_pipeline(
        f"sqlite:///{tmp_path / 'faults.db'}", emulator, tmp_path / "cache.db", catalogue_subset(tmp_path, CATALOGUE_ROWS)
    )
    try:
        runs = []
        result = built.materialize()
        runs.append(result.success)
        if not result.success:  # allowed once: the re-run must then complete
            print("first run failed:", step_failures(result))
            result = built.materialize()
            runs.append(result.success)
        assert result.success, f"the daily job failed twice under faults: {step_failures(result)}"
        stats = emulator.stats()
        by_status = stats["by_status"]
        injected = {
            "5xx": sum(by_status.get(s, 0) for s in ("500", "502", "503")),
            "dropped": by_status.get("dropped", 0),
            "truncated": by_status.get("truncated", 0),
            "429": by_status.get("429", 0),
        }
        print(f"runs {runs}; requests {stats['total_requests']}; injected {injected}")
        # The faults did happen, every kind of them.
        assert injected["5xx"] > 0 and injected["dropped"] + injected["truncated"] > 0 and injected["429"] > 0
        assert compare(fingerprint(built.engine), reference.fingerprint) == {}
        assert natural_key_duplicates(built.engine) == NO_DUPLICATES
        # No song was written off as a miss because of a fault: every attempt ended in a real outcome.
        assert built.scalar("SELECT count(*) FROM spotify_match_attempts WHERE outcome = 'error'") == 0
    finally:
        built.engine.dispose()


def test_dropped_and_cut_off_answers_are_retried_connection_errors_not_malformed_bodies(emulator):
    """Every answer broken: dropped before a byte, or cut off mid-body. Each one is a retryable connection
    error (never a "malformed body" that would record a song as a miss), and the last one is raised."""
    emulator.configure(reset_rate=1.0, window_limit=None)
    config = SpotifyClientConfig(
        client_id=emulator.client_id, client_secret=emulator.client_secret, api_base_url=emulator.api_base_url,
        accounts_base_url=emulator.accounts_base_url, rate_limit_per_minute=10**6, app_mode="extended",
        max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02,
    )
    with build_client(config) as client:
        for query in ("love", "heart", "night", "river"):
            with pytest.raises(SpotifyConnectionError, match="no answer from Spotify"):
                client.search_tracks(query)
        [search_usage] = [row for row in client.metrics.snapshot() if row["endpoint"] == "GET /search"]
        assert search_usage["retries"] == 4 * 2  # three attempts each
    by_status = emulator.stats()["by_status"]
    assert by_status.get("dropped", 0) > 0 and by_status.get("truncated", 0) > 0, by_status


@pytest.fixture(params=["refused", "silent"])
def dead_spotify(request):
    """A Spotify nobody answers at: a closed port (connection refused at once), or a listener that accepts
    connections and never says a word (every request runs into the read timeout)."""
    if request.param == "refused":
        yield f"http://127.0.0.1:{free_port()}", request.param
        return
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        yield f"http://127.0.0.1:{silent.getsockname()[1]}", request.param


def test_spotify_unreachable_fails_the_run_in_bounded_time_naming_spotify(small_pipeline, dead_spotify, monkeypatch):
    dead, kind = dead_spotify
    attempts, connect_timeout, read_timeout = 2, 1.0, 1.0
    monkeypatch.setenv("SPOTIFY_MAX_ATTEMPTS", str(attempts))
    monkeypatch.setenv("SPOTIFY_CONNECT_TIMEOUT_S", str(connect_timeout))
    monkeypatch.setenv("SPOTIFY_READ_TIMEOUT_S", str(read_timeout))
    before = fingerprint(small_pipeline.engine)
    searched_before = search("heart", engine=small_pipeline.engine)
    started = time.perf_counter()
    result = small_pipeline.materialize(api_base_url=f"{dead}/v1", accounts_base_url=dead)
    seconds = time.perf_counter() - started
    failures = step_failures(result)
    print(f"Spotify {kind}: failed in {seconds:.2f} s: {failures}")
    assert not result.success
    # Every attempt waits at most its timeouts, with one backoff (at most 1 s) between them; plus Dagster.
    assert seconds < attempts * (connect_timeout + read_timeout) + 1 + 5
    assert failures and "no answer from Spotify at 127.0.0.1:" in failures[0]
    assert fingerprint(small_pipeline.engine) == before  # nothing written, not even a miss
    assert search("heart", engine=small_pipeline.engine) == searched_before  # search does not need Spotify


def test_spotify_going_down_mid_run_leaves_no_partial_partition(references, small_pipeline, monkeypatch):
    monkeypatch.setenv("SPOTIFY_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("SPOTIFY_CONNECT_TIMEOUT_S", "1")
    monkeypatch.setenv("SPOTIFY_READ_TIMEOUT_S", "2")
    reference = references.get("sqlite", CATALOGUE_ROWS)
    serving = run_emulator(window_limit=None, latency_ms=20.0)
    doomed = serving.__enter__()
    outcome: dict = {}

    def run() -> None:
        started = time.perf_counter()
        outcome["result"] = small_pipeline.materialize(
            api_base_url=doomed.api_base_url, accounts_base_url=doomed.accounts_base_url,
            client_id=doomed.client_id, client_secret=doomed.client_secret,
        )
        outcome["seconds"] = time.perf_counter() - started

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while doomed.stats()["total_requests"] < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    stopped_at = time.perf_counter()
    serving.__exit__(None, None, None)  # Spotify goes away in the middle of matching
    worker.join(timeout=120)
    result = outcome["result"]
    failures = step_failures(result)
    print(f"failed {time.perf_counter() - stopped_at:.2f} s after Spotify went down: {failures}")
    assert not result.success and failures and "Spotify" in failures[0]
    assert partition_counts(small_pipeline.engine) == EMPTY_PARTITIONS
    # The songs attempted before the outage keep their outcome; none was recorded as a miss by the outage.
    assert small_pipeline.scalar("SELECT count(*) FROM spotify_match_attempts WHERE outcome = 'error'") == 0
    assert natural_key_duplicates(small_pipeline.engine) == NO_DUPLICATES
    # Once Spotify is back, a re-run completes and ends exactly where a run without the outage would.
    rerun = small_pipeline.materialize()
    assert rerun.success
    assert compare(fingerprint(small_pipeline.engine), reference.fingerprint) == {}


@pytest.mark.parametrize(
    "limits, expected",
    [
        ({"quota": 25}, "quota"),  # 429 QUOTA_EXCEEDED, Retry-After until midnight
        ({"window_limit": 25, "window_seconds": 4 * 3600}, "retry after"),  # a rolling-window 429 of hours
    ],
    ids=["quota_exceeded", "retry_after_of_hours"],
)
def test_quota_or_hours_long_retry_after_stops_the_run_at_once(small_pipeline, emulator, limits, expected):
    emulator.configure(**limits)
    started = time.perf_counter()
    result = small_pipeline.materialize()
    seconds = time.perf_counter() - started
    failures = step_failures(result)
    print(f"stopped in {seconds:.2f} s: {failures}")
    assert not result.success
    assert seconds < 10, "a worker slept instead of stopping the run"
    assert failures and expected in failures[0].lower()
    assert emulator.stats()["by_status"].get("429", 0) <= 2  # stopped at the first refusal, no retry loop
    assert partition_counts(small_pipeline.engine) == EMPTY_PARTITIONS
    assert small_pipeline.scalar("SELECT count(*) FROM spotify_match_attempts WHERE outcome = 'error'") == 0
    assert natural_key_duplicates(small_pipeline.engine) == NO_DUPLICATES
