"""Search at catalogue scale: `search()` beside an ILIKE sequential scan of the same PostgreSQL table.

Loads N synthetic songs (default 1,000,000) through the project's own load path (`upsert_songs`, which adds
the folded search keys) into a fresh PostgreSQL database, then times
`spotify_pipeline.warehouse.search.search()` over a query mix drawn from the loaded rows (see QUERY_MIX),
and the same predicates as an ILIKE sequential scan with index scans disabled. Then the same queries again
with Redis down (see `time_search_redis_down`). Run: `python -m bench.search [--songs N] [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Iterator

import sqlalchemy as sa

from bench.harness import percentile, scratch_database
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import upsert_songs
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.search import search

SEED = 20261128

# Words real titles repeat a lot, so some queries hit thousands of rows, as "love" does in a real catalogue.
COMMON_WORDS = (
    "love heart night day time life world baby girl boy home dream fire light rain summer blue gold wild "
    "dance run fall stay away back down up over again forever never always tonight tomorrow yesterday "
    "sweet lonely broken little young free high low slow fast last first new old good bad real"
).split()
CONSONANTS = "bcdfghjklmnprstvwyz"
VOWELS = "aeiouyéöa"


def _word(rng: random.Random) -> str:
    """An invented word: names and rare words are what make most of a real catalogue's vocabulary."""
    letters = [rng.choice(CONSONANTS if (i + rng.randint(0, 1)) % 2 == 0 else VOWELS) for i in range(rng.randint(3, 9))]
    return "".join(letters)


def synthetic_songs(n: int, seed: int = SEED) -> Iterator[dict]:
    """`n` songs with a long-tailed vocabulary: a few very common words, many rare invented ones."""
    rng = random.Random(seed)
    rare = list({_word(rng).capitalize() for _ in range(200_000)})
    artists = [" ".join(rng.choice(rare) for _ in range(rng.randint(1, 3))) for _ in range(max(n // 20, 10))]
    albums = [" ".join(rng.choice(rare) for _ in range(rng.randint(1, 3))) for _ in range(max(n // 10, 10))]
    for i in range(n):
        words = [
            rng.choice(COMMON_WORDS).capitalize() if rng.random() < 0.35 else rng.choice(rare)
            for _ in range(rng.randint(1, 4))
        ]
        yield {
            "title": " ".join(words),
            "artist": artists[rng.randrange(len(artists))],
            "album": albums[rng.randrange(len(albums))],
            "duration_ms": rng.randint(90_000, 420_000),
            "isrc": None,
            "release_year": rng.randint(1960, 2026),
            "catalog_key": f"bench-{i}",
        }


# What people type into a catalogue search box, drawn from rows that exist.
QUERY_MIX = (
    (0.25, "whole title"),
    (0.25, "title prefix"),
    (0.20, "artist"),
    (0.10, "album"),
    (0.20, "one word of a title"),
)


def query_mix(engine: sa.Engine, count: int, seed: int = SEED) -> list[str]:
    """`count` queries following QUERY_MIX."""
    rng = random.Random(seed + 1)
    with engine.connect() as conn:
        sample = conn.execute(
            sa.text("SELECT title, artist, album FROM songs TABLESAMPLE SYSTEM (1) REPEATABLE (:seed) LIMIT :n"),
            {"seed": seed, "n": count},
        ).all()
    weights = [w for w, _ in QUERY_MIX]
    queries = []
    for title, artist, album in sample:
        kind = rng.choices([k for _, k in QUERY_MIX], weights)[0]
        if kind == "whole title":
            queries.append(title)
        elif kind == "title prefix":
            queries.append(title[: rng.randint(3, max(3, min(len(title), 12)))])
        elif kind == "artist":
            queries.append(artist)
        elif kind == "album":
            queries.append(album)
        else:
            queries.append(rng.choice([w for w in title.split() if len(w) >= 3] or [title]))
    return queries


def time_search(engine: sa.Engine, queries: list[str]) -> list[float]:
    for query in queries[:20]:  # warm the caches the way a running service would be warm
        search(query, engine=engine)
    timings = []
    for query in queries:
        started = time.perf_counter()
        search(query, engine=engine)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def time_seqscan(engine: sa.Engine, queries: list[str]) -> list[float]:
    statement = sa.text(
        "SELECT id, title, artist, album FROM songs WHERE title ILIKE :p OR artist ILIKE :p OR album ILIKE :p "
        "LIMIT 20"
    )
    timings = []
    with engine.connect() as conn:
        conn.execute(sa.text("SET enable_bitmapscan = off"))
        conn.execute(sa.text("SET enable_indexscan = off"))
        for query in queries:
            pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            started = time.perf_counter()
            conn.execute(statement, {"p": pattern}).all()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def _dead_redis_url() -> str:
    """A Redis URL on a loopback port where nothing listens (connections are refused at once)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def time_search_redis_down(url: str, queries: list[str]) -> tuple[list[float], list[float]]:
    """search() as `spotify-pipeline search` runs it (settings from the environment, the warehouse engine
    from DATABASE_URL) with REDIS_URL pointing at a dead port, and the same plus what `search --enrich` adds
    (queueing the unmatched results: the Redis queue fails, warns and returns 0). One engine is reused for
    all queries, as in the Redis-up measurement, so the two compare the query and not connection set-up.
    Returns (search timings, search + enqueue timings) in ms."""
    import logging

    import redis

    from spotify_pipeline.enrichment_queue import build_request_queue
    from spotify_pipeline.settings import Settings

    dead = _dead_redis_url()
    saved = {name: os.environ.get(name) for name in ("DATABASE_URL", "REDIS_URL")}
    queue_log = logging.getLogger("spotify_pipeline.enrichment_queue")
    saved_level = queue_log.level
    os.environ.update(DATABASE_URL=url, REDIS_URL=dead)
    queue_log.setLevel(logging.ERROR)  # one "queue unavailable" warning per query would flood the output
    try:
        settings = Settings.from_env()
        try:
            redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1).ping()
            raise RuntimeError(f"Redis answers on {settings.redis_url}: the Redis-down phase needs a dead port")
        except redis.ConnectionError:
            pass
        engine = create_engine(settings.database_url)
        queue = build_request_queue(settings)
        try:
            for query in queries[:20]:
                search(query, 20, engine=engine)
            plain, enrich = [], []
            for query in queries:
                started = time.perf_counter()
                search(query, 20, engine=engine)
                plain.append((time.perf_counter() - started) * 1000)
            for query in queries:
                started = time.perf_counter()
                results = search(query, 20, engine=engine)
                misses = [r.song_id for r in results if r.enrichment_status in ("unmatched", "stale")]
                if misses and queue.enqueue(misses, reason="search"):
                    raise RuntimeError("the request queue accepted songs with Redis down")
                enrich.append((time.perf_counter() - started) * 1000)
        finally:
            queue.close()
            engine.dispose()
    finally:
        queue_log.setLevel(saved_level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return plain, enrich


def run(quick: bool = False, songs: int | None = None, server_url: str | None = None) -> dict:
    songs = songs or (200_000 if quick else 1_000_000)
    queries_n = 200 if quick else 500
    with scratch_database("search", server_url) as url:
        engine = create_engine(url)
        try:
            migrate(engine)
            started = time.perf_counter()
            upsert_songs(engine, synthetic_songs(songs))
            load_s = time.perf_counter() - started
            # A live table is vacuumed and analyzed by autovacuum; do it now rather than wait for it.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE songs"))
            queries = query_mix(engine, queries_n)
            ours = time_search(engine, queries)
            # Right after the Redis-up pass, so both passes meet the same cache state.
            redis_down, redis_down_enrich = time_search_redis_down(url, queries)
            baseline = time_seqscan(engine, queries[: 40 if quick else 100])
        finally:
            engine.dispose()
    return {
        "songs": songs,
        "queries": len(queries),
        "load_s": round(load_s, 1),
        "p50_ms": round(statistics.median(ours), 2),
        "p95_ms": round(percentile(ours, 95), 2),
        "max_ms": round(max(ours), 2),
        "seqscan_p50_ms": round(statistics.median(baseline), 2),
        "seqscan_p95_ms": round(percentile(baseline, 95), 2),
        "seqscan_queries": len(baseline),
        "redis_down_p50_ms": round(statistics.median(redis_down), 2),
        "redis_down_p95_ms": round(percentile(redis_down, 95), 2),
        "redis_down_enrich_p95_ms": round(percentile(redis_down_enrich, 95), 2),
        "target_p95_ms": 5.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(quick=args.quick, songs=args.songs)
    print(json.dumps(result, indent=2))
    print(f"search p95 {result['p95_ms']} ms (target <= 5 ms) vs ILIKE seq scan p95 {result['seqscan_p95_ms']} ms; "
          f"Redis down p95 {result['redis_down_p95_ms']} ms")


if __name__ == "__main__":
    main()
