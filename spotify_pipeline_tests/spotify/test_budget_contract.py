"""One contract, every `RequestBudget` backend: in-process, the local SQLite ledger and Redis (a real Redis).

Each backend fixture hands out *handles* on one run's budget: for the shared ledgers each handle is a new
ledger object (a new connection) on the same run id, as every step process of a run builds its own.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from spotify_pipeline.spotify import (
    CappedRequestBudget,
    DayPool,
    FakeClock,
    InProcessRequestBudget,
    RedisRequestBudget,
    RequestBudget,
    RequestBudgetUnavailable,
    SpotifyClientConfig,
    SQLiteRequestBudget,
    open_request_budget,
)
from spotify_pipeline.spotify.budget import DAY_KEY_TTL_S, RUN_KEY_TTL_S, ledger_keys, sqlite_budget_path
from spotify_pipeline.spotify.cache import redis_client

APP = "app-under-test"
#: A day pool far larger than any run here: the run's own total is what limits.
ROOMY = DayPool(capacity=10**9, ceiling=10**9)

Handle = Callable[[], RequestBudget]


def _shared(kind: str, total: int, *, run_id: str, pool: DayPool | None, clock: FakeClock | None = None,
            where: str = "", prefix: str = "", fallback: str | None = None) -> RequestBudget:
    if kind == "sqlite":
        return SQLiteRequestBudget(where, total, app_key=APP, run_id=run_id, pool=pool, clock=clock, fallback=fallback)
    return RedisRequestBudget(
        redis_client(where), total, app_key=APP, run_id=run_id, pool=pool, prefix=prefix, clock=clock,
        fallback=fallback,
    )


@pytest.fixture(params=["in-process", "sqlite", "redis"])
def budget(request, tmp_path, redis_url, redis_prefix) -> Callable[[int], Handle]:
    """budget(total) -> handle(): a new handle on ONE run's budget of `total` requests."""

    def make(total: int) -> Handle:
        if request.param == "in-process":
            shared = InProcessRequestBudget(total)
            return lambda: shared
        where = str(tmp_path / "budget.db") if request.param == "sqlite" else redis_url
        return lambda: _shared(request.param, total, run_id="run-1", pool=ROOMY, where=where, prefix=redis_prefix)

    return make


@pytest.fixture(params=["sqlite", "redis"])
def shared(request, tmp_path, redis_url, redis_prefix) -> Callable[..., RequestBudget]:
    """shared(total, run_id=..., pool=..., clock=...) -> a ledger of the shared backend under test."""

    def make(total: int, **kw) -> RequestBudget:
        where = str(tmp_path / "budget.db") if request.param == "sqlite" else redis_url
        return _shared(request.param, total, where=where, prefix=redis_prefix, **kw)

    make.kind = request.param  # type: ignore[attr-defined]
    return make


# -- the contract ---------------------------------------------------------------------------------------------


def test_grants_what_is_left_and_never_more(budget) -> None:
    handle = budget(10)
    ledger = handle()
    assert (ledger.total, ledger.spent(), ledger.remaining()) == (10, 0, 10)
    assert ledger.try_spend() == 1
    assert ledger.try_spend(4) == 4
    assert (ledger.spent(), ledger.remaining()) == (5, 5)
    assert ledger.try_spend(7) == 5  # part of the ask: what is left
    assert ledger.try_spend() == 0 and ledger.try_spend(3) == 0
    assert (ledger.spent(), ledger.remaining()) == (10, 0)
    assert handle().spent() == 10  # every handle on the run sees the same counter


def test_asking_for_nothing_grants_nothing_and_bad_asks_are_refused(budget) -> None:
    ledger = budget(3)()
    assert ledger.try_spend(0) == 0 and ledger.spent() == 0
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError):
            ledger.try_spend(bad)  # type: ignore[arg-type]
    assert ledger.spent() == 0


def test_a_budget_of_zero_grants_nothing(budget) -> None:
    ledger = budget(0)()
    assert ledger.try_spend() == 0 and ledger.remaining() == 0


def test_threads_together_never_get_more_than_the_total(budget) -> None:
    handle = budget(500)
    granted: list[int] = []
    lock = threading.Lock()

    def spend() -> None:
        ledger, mine = handle(), 0
        while (grant := ledger.try_spend(3)) > 0:
            assert grant <= 3
            mine += grant
        with lock:
            granted.append(mine)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 500
    assert handle().spent() == 500 and handle().remaining() == 0


def test_a_capped_share_grants_at_most_its_cap_and_only_what_the_run_grants(budget) -> None:
    handle = budget(10)
    run = handle()
    share = CappedRequestBudget(run, 4)
    assert share.try_spend(3) == 3 and share.try_spend(3) == 1 and share.try_spend() == 0
    assert (share.spent(), share.remaining(), run.spent()) == (4, 0, 4)
    wide = CappedRequestBudget(run, 100)  # wider than what the run has left
    assert wide.remaining() == 6
    assert wide.try_spend(50) == 6 and run.remaining() == 0 and wide.remaining() == 0


# -- the shared ledgers ---------------------------------------------------------------------------------------


def _spend_all(kind: str, where: str, prefix: str, total: int, out: multiprocessing.Queue) -> None:
    ledger = _shared(kind, total, run_id="run-p", pool=ROOMY, where=where, prefix=prefix)
    granted = 0
    while (grant := ledger.try_spend(2)) > 0:
        granted += grant
    out.put(granted)


def test_step_processes_of_a_run_spend_its_budget_once(shared, tmp_path, redis_url, redis_prefix) -> None:
    where = str(tmp_path / "budget.db") if shared.kind == "sqlite" else redis_url
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = context.Queue()
    processes = [
        context.Process(target=_spend_all, args=(shared.kind, where, redis_prefix, 301, out)) for _ in range(4)
    ]
    for p in processes:
        p.start()
    granted = [out.get(timeout=60) for _ in processes]
    for p in processes:
        p.join(timeout=30)
    assert sum(granted) == 301  # four processes, one budget: never more, and none of it lost
    assert shared(301, run_id="run-p", pool=ROOMY).spent() == 301


def test_runs_have_their_own_budgets_but_share_the_days_pool(shared) -> None:
    pool = DayPool(capacity=100, ceiling=90)  # a scheduled run leaves 10 for on-demand runs
    first = shared(60, run_id="run-a", pool=pool)
    second = shared(60, run_id="run-b", pool=pool)
    assert first.try_spend(60) == 60
    assert second.remaining() == 30  # its own 60, but only 30 left below the ceiling today
    assert second.try_spend(60) == 30
    assert second.spent() == 30 and first.spent() == 60
    on_demand = shared(60, run_id="run-c", pool=DayPool(capacity=100, ceiling=100))
    assert on_demand.try_spend(60) == 10  # the reserve, and nothing beyond the app's day
    assert shared(60, run_id="run-d", pool=DayPool(capacity=100, ceiling=100)).remaining() == 0


def test_a_new_utc_day_brings_a_new_pool(shared) -> None:
    clock = FakeClock(dt.datetime(2026, 5, 1, 23, 59, tzinfo=dt.timezone.utc).timestamp())
    pool = DayPool(capacity=10, ceiling=10)
    late = shared(100, run_id="run-late", pool=pool, clock=clock)
    assert late.try_spend(50) == 10
    clock.advance(120)  # past midnight UTC
    assert late.remaining() == 10 and late.try_spend(50) == 10
    assert late.spent() == 20  # the run's own counter does not start again


def test_the_keys_expire_after_the_run_and_the_day(redis_url, redis_prefix) -> None:
    clock = FakeClock(dt.datetime(2026, 5, 1, 12, tzinfo=dt.timezone.utc).timestamp())
    ledger = _shared("redis", 5, run_id="run-ttl", pool=ROOMY, clock=clock, where=redis_url, prefix=redis_prefix)
    ledger.try_spend()
    run_key, day_key = ledger_keys(APP, "run-ttl", dt.date(2026, 5, 1), redis_prefix)
    conn = redis.Redis.from_url(redis_url)
    assert 0 < conn.ttl(run_key) <= RUN_KEY_TTL_S and 0 < conn.ttl(day_key) <= DAY_KEY_TTL_S
    assert int(conn.get(run_key)) == 1 and int(conn.get(day_key)) == 1


def test_an_unreachable_backend_fails_naming_it_unless_the_local_fallback_is_set(dead_redis_url, tmp_path) -> None:
    ledger = _shared("redis", 5, run_id="run-x", pool=ROOMY, where=dead_redis_url)
    with pytest.raises(RequestBudgetUnavailable) as err:
        ledger.try_spend()
    assert "Redis" in str(err.value) and "SPOTIFY_LIMITER_FALLBACK=local" in str(err.value)
    fallback = _shared("redis", 5, run_id="run-x", pool=ROOMY, where=dead_redis_url, fallback="local")
    assert fallback.try_spend(3) == 3 and fallback.try_spend(3) == 2  # per process, with what the run had left
    assert fallback.spent() == 5 and fallback.remaining() == 0
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(RequestBudgetUnavailable, match="request budget file"):
        SQLiteRequestBudget(tmp_path / "a-file" / "budget.db", 5, app_key=APP, run_id="r", pool=None)


def test_open_request_budget_picks_the_backend_of_the_cache(tmp_path, redis_url, redis_prefix) -> None:
    base = SpotifyClientConfig(client_id="cid", rate_limit_per_minute=100)
    assert isinstance(open_request_budget(base, 10, run_id="r"), InProcessRequestBudget)  # in-process cache
    local = open_request_budget(base.with_overrides(cache_path=str(tmp_path / "cache.db")), 10, run_id="r", reserve=0.1)
    assert isinstance(local, SQLiteRequestBudget) and local.path == tmp_path / "cache.budget.db"
    assert local.pool == DayPool(capacity=144_000, ceiling=129_600)
    shared = open_request_budget(
        base.with_overrides(redis_url=redis_url, redis_key_prefix=redis_prefix), 10, run_id="r"
    )
    assert isinstance(shared, RedisRequestBudget) and shared.pool == DayPool(capacity=144_000, ceiling=144_000)
    assert isinstance(open_request_budget(base.with_overrides(redis_url=redis_url), 10, run_id=None),
                      InProcessRequestBudget)  # a client used alone, outside a run
    assert sqlite_budget_path(Path("x/spotify_cache.db")) == Path("x/spotify_cache.budget.db")


def test_a_day_pool_is_the_rate_limit_times_the_minutes_of_a_day() -> None:
    assert DayPool.for_app(100) == DayPool(capacity=144_000, ceiling=144_000)
    assert DayPool.for_app(100, reserve=0.1).ceiling == 129_600
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError):
            DayPool.for_app(100, reserve=bad)
    with pytest.raises(ValueError):
        DayPool(capacity=10, ceiling=11)
