"""Benchmark: does one Redis rate limiter keep several OS processes inside Spotify's budget?

Four worker processes (spawned, so nothing is shared but Redis) fetch distinct tracks from the offline
emulator as fast as their limiter lets them, for a fixed time. The emulator runs in its own process with a
rolling window of the same budget. Reported:

- ``utilization``: requests sent during the run / the budget for that time (1.0 = every slot used);
- ``peak_window_ratio``: the busiest window of ``window_s`` (10 s for a 20 s run: the issue's scaled 60 s
  window) / the budget of such a window (must stay <= 1.0);
- ``emulator_429s``: 429 answers the emulator sent (must be 0); the emulator's rolling window is set to the
  same scaled window and budget, so it independently refuses anything above the budget;
- ``naive_peak_window_ratio`` (and ``naive_emulator_429s``): the same four processes, each with its own
  in-process limiter of the full budget - what happens without a shared limiter.

Run ``python -m bench.limiter [--quick]``; `run(quick)` returns the dict.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
import uuid
from typing import Any

RATE_PER_MINUTE = 600
PROCESSES = 4
CATALOG_SIZE = 2_000


def _worker(spec: dict[str, Any], ids: list[str], out: Any) -> None:
    """One worker process: fetch `ids` one by one until the run ends; report send times and outcomes."""
    from spotify_pipeline.spotify import (
        InProcessRateLimiter,
        SpotifyClientConfig,
        SpotifyError,
        SpotifyRateLimited,
        build_client,
    )

    config = SpotifyClientConfig(**spec["config"])
    limiter = None if spec["shared"] else InProcessRateLimiter(config.rate_limit_per_minute, headroom=config.limiter_headroom)
    client = build_client(config, limiter=limiter)
    sent: list[float] = []
    acquire = client.transport.before_request
    assert acquire is not None

    def acquire_and_stamp() -> None:
        acquire()
        sent.append(time.time())

    client.transport.before_request = acquire_and_stamp
    client.transport.auth.token()  # the shared token, fetched once by whichever worker gets the lock first
    time.sleep(max(0.0, spec["start_at"] - time.time()))
    errors = 0
    it = iter(ids)
    while time.time() < spec["end_at"]:
        try:
            client.get_track(next(it))
        except StopIteration:
            break
        except SpotifyRateLimited as exc:  # naive workers: honour Retry-After on their own
            errors += 1
            time.sleep(max(0.0, min(exc.retry_after, spec["end_at"] - time.time())))
        except SpotifyError:
            errors += 1
    client.close()
    out.put({"sent": sent, "errors": errors})


def max_in_window(times: list[float], window_s: float) -> int:
    """The most timestamps in any half-open window [t, t + window_s)."""
    ordered = sorted(times)
    best = lo = 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window_s - 1e-6:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def measure(
    emulator: Any,
    *,
    redis_url: str,
    redis_prefix: str,
    shared: bool = True,
    processes: int = PROCESSES,
    rate_per_minute: int = RATE_PER_MINUTE,
    duration_s: float = 20.0,
    window_s: float | None = None,
    ids: list[str],
) -> dict[str, Any]:
    """Run `processes` workers against a running emulator handle; return the run's numbers."""
    window_s = window_s if window_s is not None else duration_s / 2
    emulator.reset()
    start_at = time.time() + 4.0  # every worker is up and holds the token before the clock starts
    end_at = start_at + duration_s
    spec_config = dict(
        client_id=emulator.client_id,
        client_secret=emulator.client_secret,
        api_base_url=emulator.api_base_url,
        accounts_base_url=emulator.accounts_base_url,
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        rate_limit_per_minute=rate_per_minute,
        app_mode="extended",
        # naive workers must not sleep through Spotify's Retry-After inside the client: they report it
        max_retry_after_s=120 if shared else 0.5,
    )
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    share = len(ids) // processes
    workers = [
        ctx.Process(
            target=_worker,
            args=(
                {"config": spec_config, "shared": shared, "start_at": start_at, "end_at": end_at},
                ids[i * share : (i + 1) * share],
                queue,
            ),
        )
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    results = [queue.get(timeout=duration_s + 120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    sent = sorted(t for r in results for t in r["sent"])
    during = [t for t in sent if start_at <= t < end_at]
    budget = rate_per_minute / 60.0 * duration_s
    window_budget = rate_per_minute / 60.0 * window_s
    stats = emulator.stats()
    return {
        "requests": len(sent),
        "requests_during_run": len(during),
        "utilization": round(len(during) / budget, 4),
        "peak_window": max_in_window(sent, window_s),
        "window_s": window_s,
        "window_budget": window_budget,
        "peak_window_ratio": round(max_in_window(sent, window_s) / window_budget, 4),
        "emulator_429s": int(stats["by_status"].get("429", 0)),
        "emulator_requests": {k: v for k, v in stats["by_endpoint"].items()},
        "worker_errors": sum(r["errors"] for r in results),
    }


def run(quick: bool = False, redis_url: str | None = None) -> dict[str, Any]:
    """Shared Redis limiter vs naive per-process limiters; 20 s each (6 s with ``quick``). `redis_url`
    defaults to REDIS_URL, else 127.0.0.1:6379."""
    import redis

    from spotify_pipeline.emulator.catalog import DEFAULT_SEED, Catalog
    from spotify_pipeline.emulator.testing import run_emulator_process
    from spotify_pipeline.settings import get_settings

    redis_url = redis_url or get_settings().redis_url or "redis://127.0.0.1:6379/0"
    duration = 6.0 if quick else 20.0
    # The emulator judges the scaled window itself: at most one window's budget in any rolling window of
    # duration / 2 (10 s and 100 requests for the full run; stricter than Spotify's 300 per 30 s).
    window_s = duration / 2
    window_limit = int(RATE_PER_MINUTE / 60 * window_s)
    ids = [t.id for t in Catalog(DEFAULT_SEED, CATALOG_SIZE).tracks]
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    conn = redis.Redis.from_url(redis_url)
    try:
        with run_emulator_process(
            mode="extended", catalog_size=CATALOG_SIZE, window_limit=window_limit, window_seconds=window_s
        ) as emu:
            shared = measure(emu, redis_url=redis_url, redis_prefix=prefix + "shared:", duration_s=duration, ids=ids)
            naive = measure(
                emu, redis_url=redis_url, redis_prefix=prefix + "naive:", shared=False, duration_s=duration, ids=ids
            )
    finally:
        keys = list(conn.scan_iter(f"{prefix}*"))
        if keys:
            conn.delete(*keys)
        conn.close()
    return {
        "utilization": shared["utilization"],
        "peak_window_ratio": shared["peak_window_ratio"],
        "emulator_429s": shared["emulator_429s"],
        "naive_peak_window_ratio": naive["peak_window_ratio"],
        "naive_emulator_429s": naive["emulator_429s"],
        "processes": PROCESSES,
        "rate_per_minute": RATE_PER_MINUTE,
        "duration_s": duration,
        "window_s": shared["window_s"],
        "shared": shared,
        "naive": naive,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 s runs instead of 20 s")
    args = parser.parse_args()
    result = run(quick=args.quick)
    print(json.dumps(result, indent=2))
