"""The `RequestQueue` contract, run against the Redis stream and the warehouse table (SQLite, PostgreSQL),
plus `spotify-pipeline search --enrich`."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner

from spotify_pipeline.cli import main
from spotify_pipeline.enrichment_queue import (
    STREAM_KEY,
    Claim,
    RedisRequestQueue,
    RequestQueue,
    RequestQueueUnavailable,
    WarehouseRequestQueue,
    build_request_queue,
)
from spotify_pipeline.settings import Settings
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import catalog_key, upsert_songs
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline_tests import servers

# Long enough that nothing expires by accident during a test, short enough to wait out.
SHORT_VISIBILITY_S = 0.3
MakeQueue = Callable[..., RequestQueue]


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(sqlite_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def shared_warehouses(
    tmp_path_factory: pytest.TempPathFactory, postgres_databases: servers.PostgresDatabases
) -> Iterator[dict[str, str]]:
    """One migrated SQLite and one migrated PostgreSQL warehouse for the contract tests of this module
    (migrating a fresh database per test would dominate the run time); each test empties the queue table."""
    with postgres_databases.database() as postgres_url:
        urls = {"sqlite": f"sqlite:///{tmp_path_factory.mktemp('queue') / 'warehouse.db'}", "postgres": postgres_url}
        for url in urls.values():
            engine = create_engine(url)
            migrate(engine)
            engine.dispose()
        yield urls


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def make_queue(request: pytest.FixtureRequest) -> Iterator[MakeQueue]:
    """Builds consumers of one shared, empty queue; each has its own connection(s), like a separate process."""
    made: list[RequestQueue] = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

        def build(visibility_timeout_s: float) -> RequestQueue:
            return RedisRequestQueue.from_url(url, prefix, visibility_timeout_s=visibility_timeout_s)
    else:
        database_url = request.getfixturevalue("shared_warehouses")[request.param]
        setup = create_engine(database_url)
        with setup.begin() as conn:
            conn.execute(sa.text("DELETE FROM spotify_enrichment_requests"))
        setup.dispose()

        def build(visibility_timeout_s: float) -> RequestQueue:
            return WarehouseRequestQueue(
                create_engine(database_url), visibility_timeout_s=visibility_timeout_s, owns_engine=True
            )

    def factory(visibility_timeout_s: float = 60.0) -> RequestQueue:
        queue = build(visibility_timeout_s)
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        queue.close()


# ------------------------------------------------------------------------------------------ contract


def test_enqueue_claim_ack_round_trip(make_queue: MakeQueue):
    queue = make_queue()
    assert isinstance(queue, RequestQueue)
    assert queue.enqueue([3, 1, 2, 1], reason="search") == 3  # one request per distinct song
    assert queue.pending_count() == 3

    claim = queue.claim(10)
    assert claim.song_ids == (1, 2, 3)
    assert len(claim.entry_ids) == 3 and len(set(claim.entry_ids)) == 3
    assert queue.pending_count() == 3  # claimed is not done
    assert not queue.claim(10)  # nothing else is claimable

    assert queue.ack(claim) == 3
    assert queue.pending_count() == 0
    assert not queue.claim(10)


def test_claims_in_queue_order_up_to_max_items(make_queue: MakeQueue):
    queue = make_queue()
    queue.enqueue([5, 4], reason="search")
    queue.enqueue([3, 2, 1], reason="search")
    batches = [queue.claim(2) for _ in range(4)]
    assert [b.song_ids for b in batches] == [(4, 5), (2, 3), (1,), ()]


def test_repeated_requests_for_one_song_are_separate_entries(make_queue: MakeQueue):
    queue = make_queue()
    queue.enqueue([7], reason="search")
    queue.enqueue([7], reason="search")
    claim = queue.claim(10)
    assert claim.song_ids == (7,)
    assert len(claim.entry_ids) == 2
    assert queue.ack(claim) == 2


def test_enqueue_validates_input(make_queue: MakeQueue):
    queue = make_queue()
    assert queue.enqueue([], reason="search") == 0
    with pytest.raises(TypeError):
        queue.enqueue(["12"], reason="search")  # type: ignore[list-item]
    with pytest.raises(TypeError):
        queue.enqueue([True], reason="search")
    with pytest.raises(ValueError):
        queue.enqueue([0], reason="search")
    with pytest.raises(ValueError):
        queue.enqueue([1], reason=" ")
    with pytest.raises(ValueError):
        queue.claim(0)
    assert queue.pending_count() == 0


def test_two_consumers_never_get_the_same_entry(make_queue: MakeQueue):
    first, second = make_queue(), make_queue()
    first.enqueue(range(1, 11), reason="search")
    a = first.claim(4)
    b = second.claim(100)
    assert a.song_ids == (1, 2, 3, 4)
    assert b.song_ids == (5, 6, 7, 8, 9, 10)
    assert not set(a.entry_ids) & set(b.entry_ids)


def test_two_concurrent_consumers_split_the_queue(make_queue: MakeQueue):
    consumers = [make_queue(), make_queue()]
    songs = list(range(1, 121))
    consumers[0].enqueue(songs, reason="search")
    got: list[list[Claim]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def drain(index: int) -> None:
        try:
            start.wait()
            while claim := consumers[index].claim(5):
                got[index].append(claim)
                consumers[index].ack(claim)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors
    entries = [e for claims in got for c in claims for e in c.entry_ids]
    assert len(entries) == len(set(entries)) == len(songs)  # every entry delivered exactly once
    assert sorted(s for claims in got for c in claims for s in c.song_ids) == songs
    assert consumers[0].pending_count() == 0


def test_unacknowledged_claim_is_claimable_again_after_the_visibility_timeout(make_queue: MakeQueue):
    crashed, survivor = make_queue(SHORT_VISIBILITY_S), make_queue(SHORT_VISIBILITY_S)
    crashed.enqueue([1, 2, 3], reason="search")
    lost = crashed.claim(10)  # ... and the consumer dies before `ack`
    assert lost.song_ids == (1, 2, 3)
    assert not survivor.claim(10)  # still within the visibility timeout
    time.sleep(SHORT_VISIBILITY_S + 0.15)

    again = survivor.claim(10)
    assert again.song_ids == lost.song_ids
    assert again.entry_ids == lost.entry_ids  # same entries: a run key derived from them is the same
    assert not crashed.claim(10)  # the take-over renewed the claim
    assert survivor.ack(again) == 3
    assert survivor.pending_count() == 0


def test_redelivered_entries_come_back_as_their_own_batch(make_queue: MakeQueue):
    queue = make_queue(SHORT_VISIBILITY_S)
    queue.enqueue([1, 2], reason="search")
    first = queue.claim(10)
    queue.enqueue([3], reason="search")  # a new request arrives while the first batch is in flight
    time.sleep(SHORT_VISIBILITY_S + 0.15)

    redelivered = queue.claim(10)
    assert redelivered.entry_ids == first.entry_ids  # not mixed with song 3
    fresh = queue.claim(10)
    assert fresh.song_ids == (3,)
    assert queue.ack(redelivered) + queue.ack(fresh) == 3
    assert queue.pending_count() == 0


def test_entries_can_be_acknowledged_by_id_from_another_consumer(make_queue: MakeQueue):
    """The sensor acknowledges a claim on a later tick, by the entry ids it remembered, maybe in another
    process."""
    claimer, acknowledger = make_queue(), make_queue()
    claimer.enqueue([1, 2, 3], reason="search")
    claim = claimer.claim(2)
    assert acknowledger.ack_entries(list(claim.entry_ids)) == 2
    assert acknowledger.ack_entries(list(claim.entry_ids)) == 0  # already gone: nothing happens
    assert claimer.pending_count() == 1
    assert claimer.claim(10).song_ids == (3,)


def test_a_released_claim_is_claimable_again_at_once(make_queue: MakeQueue):
    queue, other = make_queue(), make_queue()
    queue.enqueue([1, 2], reason="search")
    claim = queue.claim(10)
    queue.release(claim)
    again = other.claim(10)  # no waiting for the visibility timeout
    assert again.song_ids == (1, 2)
    assert other.ack(again) == 2
    assert queue.pending_count() == 0
    queue.release(queue.claim(10))  # releasing an empty claim does nothing


def test_ack_of_an_empty_or_foreign_claim(make_queue: MakeQueue):
    queue = make_queue()
    assert queue.ack(queue.claim(10)) == 0
    queue.enqueue([1], reason="search")
    with pytest.raises(ValueError):
        queue.ack(Claim(song_ids=(1,), entry_ids=("x",), handle=("another-queue", ("x",))))
    assert queue.pending_count() == 1


# ------------------------------------------------------------------------------------- Redis specifics


def _unused_redis_url() -> str:
    return f"redis://127.0.0.1:{servers.free_port()}/0"


def test_redis_down_enqueue_warns_and_returns_zero(caplog: pytest.LogCaptureFixture):
    queue = RedisRequestQueue.from_url(_unused_redis_url(), "down:")
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="spotify_pipeline.enrichment_queue"):
        assert queue.enqueue([1, 2], reason="search") == 0
    assert time.perf_counter() - started < 3
    assert any(
        r.levelno == logging.WARNING and "not queued" in r.getMessage() and "daily run" in r.getMessage()
        for r in caplog.records
    )
    # The consumer side does not pretend: it raises a clear error.
    with pytest.raises(RequestQueueUnavailable):
        queue.claim(10)
    with pytest.raises(RequestQueueUnavailable):
        queue.pending_count()
    queue.close()


def test_redis_keys_live_under_the_prefix(redis_url: str, redis_prefix: str):
    queue = RedisRequestQueue.from_url(redis_url, redis_prefix)
    queue.enqueue([1], reason="search")
    client = redis.Redis.from_url(redis_url)
    assert client.xlen(redis_prefix + STREAM_KEY) == 1
    assert queue.key == redis_prefix + STREAM_KEY
    queue.close()


def test_redis_queue_recovers_when_the_stream_was_deleted(redis_url: str, redis_prefix: str):
    queue = RedisRequestQueue.from_url(redis_url, redis_prefix)
    queue.enqueue([1], reason="search")
    queue.ack(queue.claim(10))  # the group exists now
    redis.Redis.from_url(redis_url).delete(queue.key)  # e.g. Redis restarted without persistence
    queue.enqueue([2], reason="search")
    assert queue.claim(10).song_ids == (2,)
    queue.close()


def test_redis_entry_trimmed_while_claimed_is_forgotten(redis_url: str, redis_prefix: str):
    queue = RedisRequestQueue.from_url(redis_url, redis_prefix, visibility_timeout_s=SHORT_VISIBILITY_S)
    client = redis.Redis.from_url(redis_url)
    queue.enqueue([1], reason="search")
    claim = queue.claim(10)
    client.xdel(queue.key, *claim.entry_ids)
    time.sleep(SHORT_VISIBILITY_S + 0.15)
    assert not queue.claim(10)
    assert client.xpending(queue.key, "spotify_enrichment")["pending"] == 0
    queue.close()


def test_redis_malformed_entry_is_claimed_but_not_run(redis_url: str, redis_prefix: str):
    queue = RedisRequestQueue.from_url(redis_url, redis_prefix)
    redis.Redis.from_url(redis_url).xadd(queue.key, {"reason": "no song id"})
    queue.enqueue([4], reason="search")
    claim = queue.claim(10)
    assert claim.song_ids == (4,)
    assert len(claim.entry_ids) == 2
    assert queue.ack(claim) == 2
    assert queue.pending_count() == 0
    queue.close()


def test_redis_consumers_of_departed_processes_are_pruned(redis_url: str, redis_prefix: str):
    departed = RedisRequestQueue.from_url(redis_url, redis_prefix, consumer="departed")
    departed.enqueue([1, 2], reason="search")
    holding = RedisRequestQueue.from_url(redis_url, redis_prefix, consumer="holding")
    departed.ack(departed.claim(1))  # holds nothing now
    assert holding.claim(1).song_ids == (2,)  # never acknowledged: must not be pruned
    current = RedisRequestQueue.from_url(redis_url, redis_prefix, consumer="current", consumer_max_idle_s=0.1)
    time.sleep(0.15)
    assert not current.claim(10)
    names = {c["name"] for c in redis.Redis.from_url(redis_url).xinfo_consumers(current.key, "spotify_enrichment")}
    assert b"holding" in names and b"departed" not in names
    for queue in (departed, holding, current):
        queue.close()


# --------------------------------------------------------------------------------- warehouse specifics


def test_warehouse_queue_not_migrated_enqueue_warns_and_returns_zero(
    database_url: str, caplog: pytest.LogCaptureFixture
):
    queue = WarehouseRequestQueue(create_engine(database_url), owns_engine=True)
    with caplog.at_level(logging.WARNING, logger="spotify_pipeline.enrichment_queue"):
        assert queue.enqueue([1], reason="search") == 0
    assert any("not queued" in r.getMessage() for r in caplog.records)
    with pytest.raises(RequestQueueUnavailable):
        queue.claim(1)
    queue.close()


def test_warehouse_claim_records_the_claim(migrated_engine: sa.Engine):
    queue = WarehouseRequestQueue(migrated_engine, visibility_timeout_s=SHORT_VISIBILITY_S)
    queue.enqueue([9], reason="search")
    queue.claim(1)
    time.sleep(SHORT_VISIBILITY_S + 0.15)
    queue.claim(1)
    with migrated_engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT song_id, reason, claimed_at, claim_token, attempts FROM spotify_enrichment_requests")
        ).one()
    assert (row.song_id, row.reason, row.attempts) == (9, "search", 2)
    assert row.claimed_at is not None and row.claim_token


def test_warehouse_queue_is_shared_across_processes(sqlite_url: str):
    engine = create_engine(sqlite_url)
    migrate(engine)
    script = (
        "import sys\n"
        "from spotify_pipeline.enrichment_queue import build_request_queue\n"
        "from spotify_pipeline.settings import Settings\n"
        "q = build_request_queue(Settings(database_url=sys.argv[1]))\n"
        "print(q.enqueue([11, 12], reason='search'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, sqlite_url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    queue = WarehouseRequestQueue(engine, owns_engine=True)
    assert queue.claim(10).song_ids == (11, 12)
    queue.close()


def test_factory_picks_redis_when_configured_else_the_warehouse(sqlite_url: str, redis_url: str, redis_prefix: str):
    settings = Settings(database_url=sqlite_url, redis_url=redis_url, redis_key_prefix=redis_prefix)
    with_redis = build_request_queue(settings)
    assert isinstance(with_redis, RedisRequestQueue)
    assert with_redis.key == redis_prefix + STREAM_KEY
    with_redis.close()
    local = build_request_queue(Settings(database_url=sqlite_url, redis_url=None))
    assert isinstance(local, WarehouseRequestQueue)
    local.close()


# ------------------------------------------------------------------------------ search --enrich (CLI)

SONGS = [
    ("Love Story", "Taylor Swift", "Fearless"),  # matched: not queued
    ("Lovely Day", "Bill Withers", "Menagerie"),  # stale: queued
    ("Crazy in Love", "Beyoncé", "Dangerously in Love"),  # unmatched: queued
    ("Halo", "Beyoncé", "I Am... Sasha Fierce"),  # not a result
]


def _seed(engine: sa.Engine) -> dict[str, int]:
    rows = [{"title": t, "artist": a, "album": al, "catalog_key": catalog_key(t, a, al, None)} for t, a, al in SONGS]
    upsert_songs(engine, rows)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE songs SET spotify_track_id = 'track1', spotify_synced_at = CURRENT_TIMESTAMP "
                "WHERE title = 'Love Story'"
            )
        )
        conn.execute(sa.text("UPDATE songs SET spotify_track_id = 'track2' WHERE title = 'Lovely Day'"))
        return dict(conn.execute(sa.text("SELECT title, id FROM songs")).all())


def _search(env: dict[str, str], *args: str):
    return CliRunner().invoke(main, ["search", "love", *args], env=env, catch_exceptions=False)


def test_search_enrich_queues_unmatched_and_stale_results(migrated_engine: sa.Engine, database_url: str):
    ids = _seed(migrated_engine)
    result = _search({"DATABASE_URL": database_url, "REDIS_URL": ""}, "--enrich")
    assert result.exit_code == 0, result.output
    assert "Love Story" in result.stdout and "unmatched" in result.stdout  # the results come first
    assert "queued 2 song(s) for enrichment" in result.stdout
    claim = WarehouseRequestQueue(migrated_engine).claim(10)
    assert claim.song_ids == tuple(sorted((ids["Lovely Day"], ids["Crazy in Love"])))


def test_search_without_enrich_queues_nothing(migrated_engine: sa.Engine, database_url: str):
    _seed(migrated_engine)
    result = _search({"DATABASE_URL": database_url, "REDIS_URL": ""})
    assert result.exit_code == 0, result.output
    assert "queued" not in result.output
    assert WarehouseRequestQueue(migrated_engine).pending_count() == 0


def test_search_enrich_json_uses_redis_and_keeps_stdout_json(
    sqlite_engine: sa.Engine, sqlite_url: str, redis_url: str, redis_prefix: str
):
    ids = _seed(sqlite_engine)
    env = {"DATABASE_URL": sqlite_url, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": redis_prefix}
    result = _search(env, "--json", "--enrich")
    assert result.exit_code == 0, result.output
    assert {r["title"] for r in json.loads(result.stdout)} == {"Love Story", "Lovely Day", "Crazy in Love"}
    assert "queued 2 song(s)" in result.stderr
    queue = RedisRequestQueue.from_url(redis_url, redis_prefix)
    assert queue.claim(10).song_ids == tuple(sorted((ids["Lovely Day"], ids["Crazy in Love"])))
    queue.close()
    assert WarehouseRequestQueue(sqlite_engine).pending_count() == 0  # Redis, not the table


def test_search_enrich_with_redis_down_still_answers(sqlite_engine: sa.Engine, sqlite_url: str):
    _seed(sqlite_engine)
    result = _search({"DATABASE_URL": sqlite_url, "REDIS_URL": _unused_redis_url()}, "--enrich")
    assert result.exit_code == 0, result.output
    assert "Crazy in Love" in result.stdout
    assert "queued" not in result.stdout
    assert "enrichment queue is unavailable, 2 song(s) not queued" in result.stderr
