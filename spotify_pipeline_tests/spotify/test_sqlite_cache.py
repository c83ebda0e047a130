"""`SQLiteCache` beyond the shared contract: persistence, lazy purging, leases, degradation, OS processes,
and how `build_client` picks it (the local profile's cache: a second run answers from the first's file)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spotify_pipeline.emulator.catalog import DEFAULT_SEED, Catalog
from spotify_pipeline.settings import Settings
from spotify_pipeline.spotify import (
    FakeClock,
    InMemoryCache,
    RedisCache,
    SpotifyClientConfig,
    SpotifyConfigError,
    SQLiteCache,
    build_client,
)
from spotify_pipeline_tests.spotify import helpers

SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter, as a Dagster multiprocess run uses
PROCESS_TIMEOUT_S = 60


def raw_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT key, value FROM cache_entries ORDER BY key").fetchall()


# -- the file ---------------------------------------------------------------------------------------------
def test_entries_outlive_the_handle_in_a_wal_file(tmp_path) -> None:
    path = tmp_path / "c.db"
    first = SQLiteCache(path, prefix="p:")
    first.set("k", {"v": 1}, ttl_s=60)
    first.close()
    assert SQLiteCache(path, prefix="p:").get("k") == {"v": 1}
    assert raw_rows(path) == [("p:k", '{"v":1}')]  # compact JSON under the prefixed key, like Redis
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which files are created readable by everyone unless the code says otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(path: Path) -> dict[str, int]:
    """Permission bits of the cache file and of the companions SQLite keeps beside it while it is open."""
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}


def test_the_file_holding_the_app_token_is_readable_by_its_owner_only(tmp_path, umask_022) -> None:
    path = tmp_path / "c.db"
    cache = SQLiteCache(path)
    cache.set("token", {"access_token": "BQD-secret"}, ttl_s=60)
    assert set(modes(path).values()) == {0o600}
    cache.close()


def test_an_existing_file_readable_by_others_is_made_private(tmp_path, umask_022) -> None:
    path = tmp_path / "c.db"
    earlier = SQLiteCache(path)  # still open, so its -wal and -shm files exist too
    earlier.set("token", {"access_token": "BQD-secret"}, ttl_s=60)
    for name in modes(path):
        (tmp_path / name).chmod(0o644)  # as an earlier version left them
    SQLiteCache(path).get("token")
    assert set(modes(path).values()) == {0o600}
    earlier.close()


def test_expired_rows_are_ignored_at_once_and_purged_by_a_later_write(tmp_path) -> None:
    clock = FakeClock()
    path = tmp_path / "c.db"
    cache = SQLiteCache(path, clock=clock, purge_every_s=0)
    cache.set("old", 1, ttl_s=1)
    clock.advance(2)
    assert cache.get("old") is None
    assert [k for k, _ in raw_rows(path)] == ["old"]  # reads never write: still in the file
    cache.set("new", 2, ttl_s=60)
    assert [k for k, _ in raw_rows(path)] == ["new"]


def test_corrupt_entry_is_a_miss(tmp_path) -> None:
    path = tmp_path / "c.db"
    cache = SQLiteCache(path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO cache_entries VALUES ('bad', '{not json', ?)", (time.time() + 60,))
    assert cache.get_many(["bad", "missing"]) == [None, None]


def test_get_many_beyond_one_statement_keeps_order(tmp_path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    cache.set_many({f"k{i}": i for i in range(0, 1_500, 2)}, ttl_s=60)
    keys = [f"k{i}" for i in range(1_500)]
    assert cache.get_many(keys) == [i if i % 2 == 0 else None for i in range(1_500)]


def test_many_threads_share_one_handle(tmp_path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                cache.set_many({f"t{n}:{i}": [n, i], "shared": n}, ttl_s=60)
                assert cache.get(f"t{n}:{i}") == [n, i]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cache.get("shared") in range(8)


def test_a_dead_holders_lock_expires_with_its_lease_and_never_frees_the_next_holder(tmp_path, caplog) -> None:
    clock = FakeClock()
    path = tmp_path / "c.db"
    dead = SQLiteCache(path, clock=clock).lock("token", timeout_s=5)
    dead.__enter__()  # held, never released in time (a crashed process)
    with pytest.raises(TimeoutError):
        with SQLiteCache(path, clock=clock).lock("token", timeout_s=0.1):
            pass  # pragma: no cover
    clock.advance(5.1)
    with SQLiteCache(path, clock=clock).lock("token", timeout_s=1):
        with caplog.at_level(logging.WARNING, logger="spotify_pipeline.spotify"):
            dead.__exit__(None, None, None)  # the late release must not free the current holder
        assert any("held past its lease" in r.getMessage() for r in caplog.records)
        with pytest.raises(TimeoutError):
            with SQLiteCache(path, clock=clock).lock("token", timeout_s=0.1):
                pass  # pragma: no cover


def test_locks_are_isolated_by_prefix(tmp_path) -> None:
    path = tmp_path / "c.db"
    with SQLiteCache(path, prefix="one:").lock("token", timeout_s=1):
        with SQLiteCache(path, prefix="two:").lock("token", timeout_s=0.1):
            pass


def test_a_broken_file_degrades_to_misses_with_a_warning(tmp_path, caplog) -> None:
    path = tmp_path / "c.db"
    cache = SQLiteCache(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE cache_entries")
        conn.execute("DROP TABLE cache_locks")
    with caplog.at_level(logging.WARNING, logger="spotify_pipeline.spotify"):
        cache.set("k", 1, ttl_s=60)  # no exception
        assert cache.get("k") is None
        assert cache.get_many(["a", "b"]) == [None, None]
        cache.delete("k")
        with cache.lock("token", timeout_s=1):  # still usable: an in-process lock
            pass
    assert any("SQLite cache" in r.getMessage() and "unavailable" in r.getMessage() for r in caplog.records)


def test_a_path_that_cannot_be_opened_fails_at_once(tmp_path) -> None:
    with pytest.raises(sqlite3.Error):
        SQLiteCache(tmp_path)  # a directory


# -- OS processes (spawned: nothing inherited but the path) ---------------------------------------------
def _set_value(path: str, key: str) -> None:
    SQLiteCache(path).set(key, {"pid": os.getpid()}, ttl_s=60)


def _get_value(path: str, key: str, out: Any) -> None:
    out.put(SQLiteCache(path).get(key))


def _hold_lock(path: str, held: Any, release: Any) -> None:
    with SQLiteCache(path).lock("token", timeout_s=PROCESS_TIMEOUT_S):
        held.set()
        release.wait(PROCESS_TIMEOUT_S)


def _try_lock_twice(path: str, released: Any, out: Any) -> None:
    cache = SQLiteCache(path)
    try:
        with cache.lock("token", timeout_s=0.3):
            out.put("acquired while held")
    except TimeoutError:
        out.put("timeout")
    released.wait(PROCESS_TIMEOUT_S)
    with cache.lock("token", timeout_s=PROCESS_TIMEOUT_S):
        out.put("acquired")


def _increment(path: str, times: int, start: Any, out: Any) -> None:
    cache = SQLiteCache(path)
    spans = []
    start.wait(PROCESS_TIMEOUT_S)  # all processes contend at once, not one after the other as they boot
    for _ in range(times):
        with cache.lock("counter", timeout_s=PROCESS_TIMEOUT_S):
            entered = time.time()
            value = cache.get("n") or 0
            time.sleep(0.005)  # widen the read-modify-write window: without the lock updates would be lost
            cache.set("n", value + 1, ttl_s=600)
            spans.append((entered, time.time()))
    out.put(spans)


def _run(target: Any, *args: Any) -> Any:
    process = SPAWN.Process(target=target, args=args)
    process.start()
    return process


def _joined(*processes: Any) -> None:
    for process in processes:
        process.join(PROCESS_TIMEOUT_S)
        assert process.exitcode == 0, f"{process.name} exited with {process.exitcode}"


def test_a_value_set_by_one_process_is_read_by_another(tmp_path) -> None:
    path = str(tmp_path / "c.db")
    writer = _run(_set_value, path, "shared")
    _joined(writer)
    out = SPAWN.Queue()
    reader = _run(_get_value, path, "shared", out)
    got = out.get(timeout=PROCESS_TIMEOUT_S)
    _joined(reader)
    assert got == {"pid": writer.pid}
    assert SQLiteCache(path).get("shared") == {"pid": writer.pid}


def test_only_one_process_holds_the_lock_at_a_time(tmp_path) -> None:
    path = str(tmp_path / "c.db")
    SQLiteCache(path)  # create the file first, so neither child races to set it up
    held, release, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    holder = _run(_hold_lock, path, held, release)
    try:
        assert held.wait(PROCESS_TIMEOUT_S)
        contender = _run(_try_lock_twice, path, release, out)
        assert out.get(timeout=PROCESS_TIMEOUT_S) == "timeout"  # A holds it: B cannot get it
    finally:
        release.set()
    assert out.get(timeout=PROCESS_TIMEOUT_S) == "acquired"  # A let go: now B gets it
    _joined(holder, contender)


def test_three_processes_incrementing_under_the_lock_lose_no_update(tmp_path) -> None:
    path = str(tmp_path / "c.db")
    SQLiteCache(path)
    out, start = SPAWN.Queue(), SPAWN.Barrier(3)
    workers = [_run(_increment, path, 20, start, out) for _ in range(3)]
    spans = sorted(s for _ in workers for s in out.get(timeout=PROCESS_TIMEOUT_S))
    _joined(*workers)
    assert SQLiteCache(path).get("n") == 60
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))  # never overlapping


# -- build_client -------------------------------------------------------------------------------------------
def test_build_client_uses_the_sqlite_file_and_creates_its_directory(tmp_path) -> None:
    path = tmp_path / "nested" / "dir" / "spotify_cache.db"
    client = build_client(helpers.config(cache_path=str(path)))
    assert isinstance(client.cache, SQLiteCache) and client.cache.path == path
    assert path.is_file()


@pytest.mark.parametrize("value", [None, "", "memory", " Memory ", ":memory:"])
def test_build_client_uses_memory_when_no_file_is_configured(value, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    client = build_client(helpers.config(cache_path=value))
    assert isinstance(client.cache, InMemoryCache)
    assert list(tmp_path.iterdir()) == []


def test_redis_wins_over_the_file(tmp_path, redis_url, redis_prefix) -> None:
    path = tmp_path / "c.db"
    client = build_client(helpers.config(cache_path=str(path), redis_url=redis_url, redis_key_prefix=redis_prefix))
    assert isinstance(client.cache, RedisCache)
    assert not path.exists()


def test_an_unusable_cache_path_is_a_configuration_error(tmp_path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SpotifyConfigError, match="SPOTIFY_CACHE_PATH"):
        build_client(helpers.config(cache_path=str(tmp_path / "a-file" / "c.db")))


def test_the_setting_reaches_the_client(tmp_path) -> None:
    assert Settings().spotify_cache_path == ".data/spotify_cache.db"
    assert SpotifyClientConfig.from_settings(Settings()).sqlite_cache_path == ".data/spotify_cache.db"
    memory = Settings.from_env({"SPOTIFY_CACHE_PATH": "memory"})
    assert SpotifyClientConfig.from_settings(memory).sqlite_cache_path is None
    path = tmp_path / "from-env.db"
    settings = Settings.from_env({"SPOTIFY_CACHE_PATH": str(path), "SPOTIFY_CLIENT_ID": "c", "SPOTIFY_CLIENT_SECRET": "s"})
    client = build_client(settings)
    assert isinstance(client.cache, SQLiteCache) and client.cache.path == path


def test_a_second_client_on_the_same_file_answers_from_cache_without_any_request(tmp_path, emulator_factory) -> None:
    """`make demo` run twice: the second run reuses the first run's tracks, app mode and token."""
    emu = emulator_factory(mode="extended", catalog_size=200, window_limit=None)
    ids = [t.id for t in Catalog(DEFAULT_SEED, 200).tracks[:120]]
    config = SpotifyClientConfig(
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        api_base_url=emu.api_base_url,
        accounts_base_url=emu.accounts_base_url,
        rate_limit_per_minute=600_000,
        cache_path=str(tmp_path / ".data" / "spotify_cache.db"),
    )
    with build_client(config) as first:
        tracks = first.get_tracks(ids)
    assert emu.stats()["by_endpoint"] == {"/v1/tracks": 3, "/api/token": 1}
    before = emu.stats()["total_requests"]

    with build_client(config) as second:  # a fresh client: new session, new cache handle, same file
        again = second.get_tracks(ids)
        assert second.capabilities.mode == "extended"  # remembered too
    assert emu.stats()["total_requests"] == before  # zero HTTP requests, not even for a token
    assert {k: (t.id, t.name) for k, t in again.items() if t} == {k: (t.id, t.name) for k, t in tracks.items() if t}
    rows = {r["endpoint"]: r for r in second.metrics.snapshot()}
    assert sum(r["requests"] for r in rows.values()) == 0
    assert rows["GET /tracks"]["cache_hits"] == len(ids)
