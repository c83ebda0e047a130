"""One contract, every `Cache` implementation (in-process, SQLite file, and Redis against a real Redis)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from spotify_pipeline.spotify import Cache, FakeClock, InMemoryCache, RedisCache, SQLiteCache, track_key
from spotify_pipeline.spotify.cache import redis_client


@pytest.fixture(params=["in-process", "sqlite", "redis"])
def cache_env(request, tmp_path) -> tuple[Callable[..., Cache], Callable[[float], None]]:
    """(make(prefix=...) -> a handle on one shared store, advance(seconds))."""
    if request.param == "in-process":
        clock = FakeClock()
        stores: dict[str, InMemoryCache] = {}

        def make_mem(prefix: str = "") -> Cache:
            return stores.setdefault(prefix, InMemoryCache(clock, prefix=prefix))

        return make_mem, clock.advance

    if request.param == "sqlite":
        sqlite_clock = FakeClock()
        path = tmp_path / "spotify_cache.db"

        def make_sqlite(prefix: str = "") -> Cache:  # a new handle (own connections) on the same file
            return SQLiteCache(path, prefix=prefix, clock=sqlite_clock)

        return make_sqlite, sqlite_clock.advance

    redis_url, redis_prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")

    def make_redis(prefix: str = "") -> Cache:
        return RedisCache(redis_client(redis_url), redis_prefix + prefix)

    return make_redis, time.sleep


def test_round_trip_and_miss(cache_env) -> None:
    make, _ = cache_env
    cache = make()
    assert cache.get("k") is None
    cache.set("k", {"a": [1, 2], "b": None}, ttl_s=60)
    assert cache.get("k") == {"a": [1, 2], "b": None}
    assert make().get("k") == {"a": [1, 2], "b": None}  # another handle sees it


def test_get_many_keeps_order_and_reports_misses(cache_env) -> None:
    make, _ = cache_env
    cache = make()
    cache.set_many({"a": 1, "c": 3}, ttl_s=60)
    assert cache.get_many(["a", "b", "c"]) == [1, None, 3]
    assert cache.get_many([]) == []


def test_entries_expire_after_their_ttl(cache_env) -> None:
    make, advance = cache_env
    cache = make()
    cache.set("short", "x", ttl_s=0.2)
    cache.set("long", "y", ttl_s=60)
    advance(0.35)
    assert cache.get_many(["short", "long"]) == [None, "y"]


def test_delete(cache_env) -> None:
    make, _ = cache_env
    cache = make()
    cache.set("k", 1, ttl_s=60)
    cache.delete("k")
    assert cache.get("k") is None


def test_prefixes_isolate_deployments(cache_env) -> None:
    make, _ = cache_env
    make("one:").set("k", "first", ttl_s=60)
    assert make("two:").get("k") is None
    assert make("one:").get("k") == "first"


def test_lock_is_mutually_exclusive(cache_env) -> None:
    make, _ = cache_env
    inside = 0
    overlaps = []

    def worker() -> None:
        nonlocal inside
        with make().lock("critical", timeout_s=5):
            inside += 1
            overlaps.append(inside)
            time.sleep(0.02)
            inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1] * 5


def test_values_round_trip_as_json_and_a_set_replaces_value_and_ttl(cache_env) -> None:
    make, advance = cache_env
    cache = make()
    values = {"s": "naïve ✓", "i": 7, "f": 1.5, "b": True, "n": None, "l": [1, "x", {"k": []}]}
    cache.set_many(values, ttl_s=60)
    assert cache.get_many(list(values)) == list(values.values())
    cache.set("i", 8, ttl_s=0.2)  # the newer write wins, with its own TTL
    assert cache.get("i") == 8
    advance(0.35)
    assert cache.get("i") is None and cache.get("s") == "naïve ✓"


def test_lock_times_out_while_another_holder_has_it_and_is_released_on_error(cache_env) -> None:
    make, _ = cache_env
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with make().lock("busy", timeout_s=5):
            held.set()
            done.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(5)
        with pytest.raises(TimeoutError):
            with make().lock("busy", timeout_s=0.2):
                pass  # pragma: no cover
    finally:
        done.set()
        t.join()
    with pytest.raises(RuntimeError):
        with make().lock("busy", timeout_s=2):
            raise RuntimeError("boom")
    with make().lock("busy", timeout_s=2):  # the failed block released it
        pass


def test_track_keys_are_namespaced_and_versioned() -> None:
    assert track_key("abc", "GB") == "spotify:v1:track:GB:abc"
    assert track_key("abc", None) == "spotify:v1:track:-:abc"


# -- Redis-only behaviour -----------------------------------------------------------------------------------
def test_redis_sets_expiry_under_the_prefix(redis_url, redis_prefix, redis_conn) -> None:
    cache = RedisCache(redis_client(redis_url), redis_prefix)
    cache.set_many({track_key("t1", "GB"): {"x": 1}, track_key("t2", "GB"): {"x": 2}}, ttl_s=86_400)
    key = f"{redis_prefix}spotify:v1:track:GB:t1"
    assert redis_conn.exists(key)
    assert 86_000_000 < redis_conn.pttl(key) <= 86_400_000


def test_corrupt_redis_entry_is_a_miss(redis_url, redis_prefix, redis_conn) -> None:
    redis_conn.set(f"{redis_prefix}bad", b"\xff not json")
    assert RedisCache(redis_client(redis_url), redis_prefix).get("bad") is None


def test_unreachable_redis_degrades_to_misses_with_a_warning(dead_redis_url, caplog) -> None:
    cache = RedisCache(redis_client(dead_redis_url, connect_timeout_s=0.5), "p:")
    with caplog.at_level(logging.WARNING, logger="spotify_pipeline.spotify"):
        cache.set("k", 1, ttl_s=60)  # no exception
        assert cache.get("k") is None
        assert cache.get_many(["a", "b"]) == [None, None]
        cache.delete("k")
        with cache.lock("token"):  # still usable: degrades to an in-process lock
            pass
    assert any("Redis cache unavailable" in r.getMessage() for r in caplog.records)
