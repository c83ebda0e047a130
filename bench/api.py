"""API cost of the daily job as production runs it, counted by the emulator.

For each app mode, a fresh warehouse (SQLite, the sample catalogue: 1,000 songs of which 850 are on
Spotify) and a fresh Redis cache and limiter (scratch key prefix), `spotify_daily_refresh` runs through
Dagster with the multiprocess executor (every step in its own process, settings from the environment, as a
deployment runs it) against the emulator with its rate limit off; then the same job runs again on the same
day (a warm re-run within the cache TTLs). The emulator's own counters (`stats()`) are the anchor:

- ``{mode}_cold_requests``: every request of the cold run (token, searches, track calls, mode probe);
- ``{mode}_minimum``: the physical minimum of that run: its searches (the matcher's choice, not the client's)
  + the track calls the matched tracks need (batches of 50 in Extended Quota mode, one per track in
  Development Mode) + one token; the run may add one mode probe (the matcher needs the mode's search limit
  before any track call; in Development Mode it is a batch call answered 403);
- ``{mode}_track_calls`` / ``{mode}_tracks_matched``, ``{mode}_mode_probes``, ``{mode}_token_requests``;
- ``{mode}_warm_requests``: every request of the warm re-run (target 0);
- ``{mode}_usage_recorded``: the sum of `spotify_api_usage.requests` the two runs recorded, which must equal
  what the emulator saw (``{mode}_emulator_total``).

Run ``python -m bench.api``; `run(quick)` returns the dict (the figure is the same with ``quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.harness import redis_url, scratch_redis_prefix

JOB_NAME = "spotify_daily_refresh"
TOKEN_ENDPOINT = "/api/token"
MODES = ("extended", "development")


def daily_job() -> Any:
    """The daily job as a deployment loads it (resources from the environment): what each step process of
    the multiprocess executor reconstructs."""
    from spotify_pipeline.definitions import build_definitions

    return build_definitions().resolve_job_def(JOB_NAME)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_job(instance: Any) -> str:
    import dagster as dg

    from spotify_pipeline.defs.partitions import utc_today

    result = dg.execute_job(
        dg.reconstructable(daily_job),
        instance=instance,
        tags={"dagster/partition": utc_today().isoformat()},
        run_config={
            "execution": {"config": {"multiprocess": {"max_concurrent": 2}}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        },
    )
    if not result.success:
        raise RuntimeError(f"{JOB_NAME} failed (run {result.run_id})")
    return result.run_id


def _usage(engine: Any, run_ids: list[str]) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        total = conn.execute(
            sa.text("SELECT coalesce(sum(requests), 0) FROM spotify_api_usage WHERE run_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": run_ids},
        ).scalar_one()
    return int(total)


def _measure(mode: str, emulator: Any, url: str, workdir: Path) -> dict[str, Any]:
    import dagster as dg
    import sqlalchemy as sa

    from spotify_pipeline.warehouse import create_engine
    from spotify_pipeline.warehouse.catalog import load_catalog
    from spotify_pipeline.warehouse.migrations import migrate

    home = workdir / f"dagster-{mode}"
    home.mkdir()
    database_url = f"sqlite:///{workdir / f'{mode}.db'}"
    engine = create_engine(database_url)
    migrate(engine)
    load_catalog(engine)
    with scratch_redis_prefix(f"api-{mode}", url) as prefix, _environment({
        "DATABASE_URL": database_url,
        "REDIS_URL": url,
        "REDIS_KEY_PREFIX": prefix,
        "SPOTIFY_CLIENT_ID": emulator.client_id,
        "SPOTIFY_CLIENT_SECRET": emulator.client_secret,
        "SPOTIFY_API_BASE_URL": emulator.api_base_url,
        "SPOTIFY_ACCOUNTS_BASE_URL": emulator.accounts_base_url,
        "SPOTIFY_RATE_LIMIT_PER_MINUTE": "10000000",  # the figure counts requests; the limiter must not pace them
    }), dg.instance_for_test(
        temp_dir=str(home), overrides={"python_logs": {"python_log_level": "WARNING"}}
    ) as instance:
        emulator.configure(mode=mode)
        emulator.reset()
        cold_run = _run_job(instance)
        cold = emulator.stats()
        emulator.reset()
        warm_run = _run_job(instance)
        warm = emulator.stats()
        recorded = _usage(engine, [cold_run, warm_run])
    with engine.connect() as conn:
        matched = conn.execute(sa.text("SELECT count(DISTINCT track_id) FROM spotify_track_matches")).scalar_one()
    engine.dispose()
    by_endpoint: dict[str, int] = cold["by_endpoint"]
    track_calls = by_endpoint.get("/v1/tracks", 0) + by_endpoint.get("/v1/tracks/{id}", 0)
    probes = int(cold["by_endpoint_status"].get("/v1/tracks", {}).get("403", 0))
    searches = by_endpoint.get("/v1/search", 0)
    needed_track_calls = math.ceil(matched / 50) if mode == "extended" else matched
    for name, stats in (("cold", cold), ("warm", warm)):
        if stats["by_status"].get("429", 0):
            raise RuntimeError(f"{mode}: the emulator throttled the {name} run with its limit off")
    return {
        f"{mode}_cold_requests": cold["total_requests"],
        f"{mode}_minimum": searches + needed_track_calls + 1,
        f"{mode}_searches": searches,
        f"{mode}_track_calls": track_calls,
        f"{mode}_tracks_matched": matched,
        f"{mode}_mode_probes": probes,
        f"{mode}_token_requests": by_endpoint.get(TOKEN_ENDPOINT, 0),
        f"{mode}_warm_requests": warm["total_requests"],
        f"{mode}_usage_recorded": recorded,
        f"{mode}_emulator_total": cold["total_requests"] + warm["total_requests"],
    }


def run(quick: bool = False) -> dict[str, Any]:
    from spotify_pipeline.emulator.testing import run_emulator_process

    out: dict[str, Any] = {"executor": "multiprocess", "catalog_songs": 1000}
    url = redis_url()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp, run_emulator_process(window_limit=None) as emulator:
        for mode in MODES:
            out.update(_measure(mode, emulator, url, Path(tmp)))
    out["warm_rerun_requests"] = sum(out[f"{mode}_warm_requests"] for mode in MODES)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
