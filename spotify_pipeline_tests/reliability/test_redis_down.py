"""Redis down: search keeps answering as fast, `search --enrich` warns instead of failing, and the daily job
either fails at once naming Redis or, with SPOTIFY_LIMITER_FALLBACK=local, completes on per-process limits."""

from __future__ import annotations

import logging
import statistics
import time

import pytest
import redis
from click.testing import CliRunner

from spotify_pipeline.cli import main
from spotify_pipeline.enrichment_queue import STREAM_KEY
from spotify_pipeline.warehouse.catalog import sample_catalog_path
from spotify_pipeline_tests.reliability.conftest import (
    NO_DUPLICATES,
    build_pipeline,
    compare,
    fingerprint,
    natural_key_duplicates,
    partition_counts,
    percentile,
    step_failures,
)
from spotify_pipeline_tests.servers import free_port

pytestmark = pytest.mark.reliability

SEARCHES_PER_SETUP = 150
QUERIES = ("heart", "love", "night", "blue", "the", "tonight", "river", "fire", "dream", "light")
CATALOGUE_ROWS = 80
EMPTY_PARTITIONS = {"raw_spotify_tracks": 0, "spotify_popularity_snapshots": 0, "songs_enriched": 0}


@pytest.fixture
def dead_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def catalogue_env(emulator, tmp_path) -> dict[str, str | None]:
    """The sample catalogue (not enriched yet: every search result is a song to enrich) on SQLite."""
    database_url = f"sqlite:///{tmp_path / 'search.db'}"
    build_pipeline(database_url, emulator, tmp_path / "cache.db", sample_catalog_path()).engine.dispose()
    return {"DATABASE_URL": database_url, "SPOTIFY_CACHE_PATH": "memory", "REDIS_KEY_PREFIX": None, "REDIS_URL": None}


def _search(runner: CliRunner, env: dict, query: str, *extra: str) -> float:
    started = time.perf_counter()
    result = runner.invoke(main, ["search", query, "--limit", "10", *extra], env=env, catch_exceptions=False)
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    return elapsed


def test_search_latency_with_redis_down_stays_within_twice_normal(
    catalogue_env, redis_url, redis_prefix, dead_redis_url
):
    runner = CliRunner()
    setups = {
        "up": {**catalogue_env, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": redis_prefix},
        "down": {**catalogue_env, "REDIS_URL": dead_redis_url},
    }
    timings: dict[tuple[str, str], list[float]] = {}
    for variant in ((), ("--enrich",)):
        for setup in setups:
            _search(runner, setups[setup], "warm up", *variant)
        for i in range(SEARCHES_PER_SETUP):
            query = QUERIES[i % len(QUERIES)]
            # Interleaved, in alternating order, so load from elsewhere on the machine hits both alike.
            order = ("up", "down") if i % 2 == 0 else ("down", "up")
            for setup in order:
                timings.setdefault((" ".join(variant) or "plain", setup), []).append(
                    _search(runner, setups[setup], query, *variant)
                )
    queued = redis.Redis.from_url(redis_url).xlen(redis_prefix + STREAM_KEY)
    summary = {
        key: (statistics.median(values) * 1000, percentile(values, 0.95) * 1000) for key, values in timings.items()
    }
    for (variant, setup), (median, p95) in sorted(summary.items()):
        print(f"search {variant:8} redis {setup:4}: median {median:6.2f} ms  p95 {p95:6.2f} ms  (n={SEARCHES_PER_SETUP})")
    assert queued > 0  # with Redis up, --enrich did enqueue
    for variant in ("plain", "--enrich"):
        up_median, up_p95 = summary[(variant, "up")]
        down_median, down_p95 = summary[(variant, "down")]
        # 2x normal, plus 2 ms of timer and scheduling noise on a shared machine.
        assert down_median <= 2 * up_median + 2, summary
        assert down_p95 <= 2 * up_p95 + 2, summary


def test_search_enrich_with_redis_down_warns_and_answers(catalogue_env, dead_redis_url, caplog):
    caplog.set_level(logging.WARNING)
    result = CliRunner().invoke(
        main, ["search", "heart", "--enrich"], env={**catalogue_env, "REDIS_URL": dead_redis_url},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "heart" in result.output.lower()  # the answer itself
    assert "warning: the enrichment queue is unavailable" in result.output
    assert any(
        r.levelno == logging.WARNING and "Redis request queue unavailable" in r.getMessage() for r in caplog.records
    )


def test_daily_job_with_redis_down_fails_fast_naming_redis(small_pipeline, dead_redis_url, monkeypatch):
    monkeypatch.delenv("SPOTIFY_LIMITER_FALLBACK", raising=False)
    before = fingerprint(small_pipeline.engine)
    started = time.perf_counter()
    result = small_pipeline.materialize(redis_url=dead_redis_url)
    seconds = time.perf_counter() - started
    failures = step_failures(result)
    print(f"failed in {seconds:.2f} s: {failures}")
    assert not result.success
    assert seconds < 10
    assert failures and "Redis" in failures[0] and "SPOTIFY_LIMITER_FALLBACK=local" in failures[0]
    assert fingerprint(small_pipeline.engine) == before
    assert partition_counts(small_pipeline.engine) == EMPTY_PARTITIONS


def test_daily_job_with_redis_down_and_local_fallback_completes(references, small_pipeline, dead_redis_url, monkeypatch):
    reference = references.get("sqlite", CATALOGUE_ROWS)
    monkeypatch.setenv("SPOTIFY_LIMITER_FALLBACK", "local")
    started = time.perf_counter()
    result = small_pipeline.materialize(redis_url=dead_redis_url)
    print(f"completed in {time.perf_counter() - started:.2f} s with Redis down and the local fallback")
    assert result.success, step_failures(result)
    assert compare(fingerprint(small_pipeline.engine), reference.fingerprint) == {}
    assert natural_key_duplicates(small_pipeline.engine) == NO_DUPLICATES
