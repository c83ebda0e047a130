"""One contract, both `RateLimiter` implementations (the Redis one against a real Redis)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import pytest

from spotify_pipeline.spotify import (
    FakeClock,
    InProcessRateLimiter,
    RateLimiter,
    RateLimiterUnavailable,
    RedisRateLimiter,
    SpotifyRateLimited,
)
from spotify_pipeline.spotify.cache import redis_client

Factory = Callable[..., RateLimiter]


@pytest.fixture(params=["in-process", "redis"])
def backend(request, redis_url, redis_prefix) -> Callable[[float, FakeClock], Factory]:
    """backend(rate, clock) -> handle(): a new handle on ONE shared budget (Redis: a new connection)."""

    def make(rate: float, clock: FakeClock | None, **kw) -> Factory:
        if request.param == "in-process":
            shared = InProcessRateLimiter(rate, clock=clock, **kw)
            return lambda: shared
        return lambda: RedisRateLimiter(redis_client(redis_url), rate, prefix=redis_prefix, clock=clock, **kw)

    return make


def issue_times(limiter: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    times = []
    for _ in range(n):
        limiter.acquire()
        times.append(clock.time())
    return times


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window - 1e-6:  # half-open window, float-safe at epoch scale
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_requests_are_spaced_evenly_not_bursted(backend) -> None:
    clock = FakeClock()
    limiter = backend(60, clock)()  # one per second
    times = issue_times(limiter, clock, 6)
    gaps = [round(b - a, 6) for a, b in zip(times, times[1:], strict=False)]
    assert gaps == [1.0] * 5


def test_no_burst_after_idling(backend) -> None:
    clock = FakeClock()
    limiter = backend(60, clock)()
    issue_times(limiter, clock, 3)
    clock.advance(600)  # ten idle minutes do not bank a burst
    times = issue_times(limiter, clock, 4)
    assert [round(b - a, 6) for a, b in zip(times, times[1:], strict=False)] == [1.0] * 3


def test_budget_is_shared_by_every_handle(backend) -> None:
    clock = FakeClock()
    make = backend(120, clock)
    a, b = make(), make()
    times = []
    for handle in [a, b] * 10:
        handle.acquire()
        times.append(clock.time())
    # 120/min -> 0.5 s apart, whichever handle asked
    assert [round(y - x, 6) for x, y in zip(times, times[1:], strict=False)] == [0.5] * 19


def test_any_window_holds_at_most_the_rate(backend) -> None:
    clock = FakeClock()
    make = backend(600, clock)  # 10/s
    handles = [make(), make(), make()]
    rng = random.Random(3)
    times = []
    for _ in range(300):
        if rng.random() < 0.3:
            clock.advance(rng.uniform(0, 0.3))  # callers arrive irregularly
        rng.choice(handles).acquire()
        times.append(clock.time())
    assert max_in_window(times, 10.0) <= 100
    assert max_in_window(times, 1.0) <= 10


def test_saturating_callers_use_the_whole_budget(backend) -> None:
    clock = FakeClock()
    make = backend(600, clock)  # 10/s
    handles = [make(), make(), make(), make()]
    start = clock.time()
    times = [(h.acquire(), clock.time())[1] for _ in range(50) for h in handles]
    assert len(times) == 200
    assert times[-1] - start == pytest.approx(19.9, abs=1e-3)  # 200 requests in 20 slots of 0.1 s: no slot wasted


def test_headroom_keeps_a_fraction_unused(backend) -> None:
    clock = FakeClock()
    limiter = backend(60, clock, headroom=0.05)()
    times = issue_times(limiter, clock, 3)
    assert times[2] - times[1] == pytest.approx(60 / (60 * 0.95))


def test_penalty_box_makes_every_handle_wait(backend) -> None:
    clock = FakeClock()
    make = backend(6000, clock)
    a, b = make(), make()
    a.acquire()
    start = clock.time()
    a.penalize(30)
    assert b.blocked_for() == pytest.approx(30, abs=0.01)
    waited = b.acquire(max_block_s=120)
    assert waited == pytest.approx(30, abs=0.02)
    assert clock.time() - start >= 30
    assert a.blocked_for() == 0


def test_penalty_longer_than_accepted_raises_instead_of_sleeping(backend) -> None:
    clock = FakeClock()
    make = backend(6000, clock)
    make().penalize(3600)
    with pytest.raises(SpotifyRateLimited) as err:
        make().acquire(max_block_s=120)
    assert err.value.retry_after == pytest.approx(3600, abs=0.01)
    assert clock.sleeps == []


def test_shorter_penalty_does_not_shorten_a_longer_one(backend) -> None:
    clock = FakeClock()
    limiter = backend(6000, clock)()
    limiter.penalize(50)
    limiter.penalize(5)
    assert limiter.blocked_for() == pytest.approx(50, abs=0.01)


class PenaltyDuringSleep(FakeClock):
    """A fake clock on which a 429 arrives (``on_429``) halfway through the first sleep of a waiting caller."""

    def __init__(self) -> None:
        super().__init__()
        self.on_429: Callable[[], None] | None = None

    def sleep(self, seconds: float) -> None:
        arrive, self.on_429 = self.on_429, None
        if arrive is None:
            return super().sleep(seconds)
        super().sleep(seconds / 2)
        arrive()
        super().sleep(seconds / 2)


def test_a_slot_booked_before_a_429_waits_out_the_penalty(backend) -> None:
    clock = PenaltyDuringSleep()
    make = backend(60, clock)  # one per second: the second caller's slot is a second away
    first, second = make(), make()
    first.acquire()
    start = clock.time()
    clock.on_429 = lambda: first.penalize(30)  # another request's 429, while `second` sleeps for its slot
    waited = second.acquire(max_block_s=120)
    assert clock.time() >= start + 0.5 + 30  # not sent before the box, closed at +0.5 s for 30 s, opens
    assert waited == pytest.approx(30.5, abs=0.01)
    assert first.blocked_for() == 0
    third = make()
    third.acquire()
    assert clock.time() - start == pytest.approx(31.5, abs=0.01)  # and the budget's spacing still holds after


def test_a_penalty_met_at_the_slot_longer_than_accepted_raises(backend) -> None:
    clock = PenaltyDuringSleep()
    make = backend(60, clock)
    first, second = make(), make()
    first.acquire()
    clock.on_429 = lambda: first.penalize(3600)
    with pytest.raises(SpotifyRateLimited) as err:
        second.acquire(max_block_s=120)
    assert err.value.retry_after == pytest.approx(3600 - 0.5, abs=0.01)


# -- Redis-only behaviour -----------------------------------------------------------------------------------
def test_redis_keys_live_under_the_prefix(redis_url, redis_prefix, redis_conn) -> None:
    limiter = RedisRateLimiter(redis_client(redis_url), 60, prefix=redis_prefix, name="app")
    limiter.acquire()
    limiter.penalize(1)
    keys = {k.decode() for k in redis_conn.keys(f"{redis_prefix}*")}
    assert keys == {f"{redis_prefix}spotify:v1:limiter:app:tat", f"{redis_prefix}spotify:v1:limiter:app:blocked_until"}
    assert all(redis_conn.pttl(k) > 0 for k in keys)  # nothing is left behind forever


def test_redis_limiter_in_real_time_across_connections(redis_url, redis_prefix) -> None:
    """Threads with their own connections, server time: issue times stay spaced by the interval."""
    rate = 1200  # 20/s -> 50 ms apart
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        limiter = RedisRateLimiter(redis_client(redis_url), rate, prefix=redis_prefix)
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 8 <= len(stamps) <= 18  # ~0.6 s * 20/s, +1 for the first, +4 slots reserved at the deadline
    assert max_in_window(stamps, 0.25) <= 7  # 5 slots + scheduling jitter, never a burst of 4 threads x N


def test_unreachable_redis_fails_loudly(dead_redis_url) -> None:
    limiter = RedisRateLimiter(redis_client(dead_redis_url, connect_timeout_s=0.5), 60)
    with pytest.raises(RateLimiterUnavailable) as err:
        limiter.acquire()
    assert "SPOTIFY_LIMITER_FALLBACK=local" in str(err.value)
    with pytest.raises(RateLimiterUnavailable):
        limiter.penalize(5)


def test_unreachable_redis_with_local_fallback_limits_per_process(dead_redis_url, caplog) -> None:
    clock = FakeClock()
    limiter = RedisRateLimiter(
        redis_client(dead_redis_url, connect_timeout_s=0.5), 60, clock=clock, fallback="local"
    )
    with caplog.at_level(logging.WARNING, logger="spotify_pipeline.spotify"):
        times = issue_times(limiter, clock, 3)
    assert [round(b - a, 6) for a, b in zip(times, times[1:], strict=False)] == [1.0, 1.0]
    assert any("SPOTIFY_LIMITER_FALLBACK=local" in r.getMessage() for r in caplog.records)
